package snapxfer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/cairnkv/cairn/raft"
)

// Link carries the protocol's messages between endpoints, best effort:
// a chunk or ack may be lost, duplicated, delayed or reordered, and the
// protocol recovers. A carrier (memnet, the gRPC transport) implements it.
type Link interface {
	// SendChunk sends c to c.To. It must not keep c or its Data after it
	// returns (copy or encode them): the sender reuses the memory. It may
	// block for flow control, but returns once ctx ends. An error means
	// the chunk was not sent, for instance because the peer is known to be
	// unreachable.
	SendChunk(ctx context.Context, c *Chunk) error
	// SendAck sends a to a.To. It must not block.
	SendAck(a Ack)
}

// Handler is what a receiver hands a snapshot stream to: the receiving
// replica (*replica.Replica implements it).
type Handler interface {
	// StepSnapshot stages the snapshot data it reads from data and then
	// steps m. data yields the stream's bytes as chunks arrive in order;
	// it returns io.EOF only at the end of a stream whose checksum
	// matched, and an error (ErrStalled, ErrAborted, ErrSuperseded,
	// ErrChecksum, or ctx's) if the transfer breaks, in which case the
	// handler must discard what it staged. StepSnapshot must read data to
	// io.EOF before it acts on m, and returns nil once m is queued: that
	// is what the sender is told as success.
	StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error
}

// Endpoint is one node's end of the protocol: it sends snapshots to peers
// and receives theirs. A carrier hands it what arrives (HandleChunk,
// HandleAck) and carries what it sends (Link). It is safe for concurrent
// use.
//
// Each transfer in progress has one goroutine on each side: the sender's
// reads the snapshot and sends chunks; the receiver's runs the Handler,
// which reads the chunks. Nothing else starts goroutines.
type Endpoint struct {
	id      raft.NodeID
	link    Link
	handler Handler
	opts    Options
	logger  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // one per transfer goroutine
	nextID atomic.Uint64
	stats  counters

	mu struct {
		sync.Mutex
		closed bool
		out    map[TransferID]*outbound
		in     map[inKey]*inbound
		// byPeer is the inbound transfer from each sender. A sender has at
		// most one snapshot in flight to a receiver, so a new one from the
		// same sender supersedes the old.
		byPeer map[raft.NodeID]*inbound
		// finished remembers how recent inbound transfers ended, to answer
		// their stray chunks (a sender that missed the final ack resends).
		finished recent
	}
}

// New returns the endpoint of node id, which sends through link and hands
// incoming snapshots to h. Close it when done.
func New(id raft.NodeID, link Link, h Handler, opts Options) (*Endpoint, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if id == raft.None || link == nil || h == nil {
		return nil, fmt.Errorf("%w: New needs a node ID, a link and a handler", ErrInvalidOptions)
	}
	e := &Endpoint{
		id:      id,
		link:    link,
		handler: h,
		opts:    opts,
		logger:  opts.Logger.With(slog.Uint64("node", uint64(id))),
	}
	e.ctx, e.cancel = context.WithCancelCause(context.Background())
	e.nextID.Store(rand.Uint64())
	e.mu.out = make(map[TransferID]*outbound)
	e.mu.in = make(map[inKey]*inbound)
	e.mu.byPeer = make(map[raft.NodeID]*inbound)
	e.mu.finished = newRecent(finishedMemory)
	return e, nil
}

// Close abandons every transfer and waits for their goroutines. Senders
// report ErrClosed through done; receivers' handlers see their reader
// fail. Close may be called more than once.
func (e *Endpoint) Close() {
	e.mu.Lock()
	e.mu.closed = true
	e.mu.Unlock()
	e.cancel(ErrClosed)
	e.wg.Wait()
}

// startLocked runs fn on a new transfer goroutine, unless the endpoint
// is closed. The caller holds e.mu, so that Close cannot slip in between
// its check and the WaitGroup's count.
func (e *Endpoint) startLocked(fn func()) bool {
	if e.mu.closed {
		return false
	}
	e.wg.Go(fn)
	return true
}

// Stats are an endpoint's counters since it started.
type Stats struct {
	// Sender side.
	ChunksSent   uint64 // chunks handed to the link, resends included
	ChunksResent uint64 // of which resends
	Rewinds      uint64 // times a sender went back to its acknowledged offset
	SentOK       uint64 // transfers that succeeded
	SentFailed   uint64 // transfers that failed
	// Receiver side.
	ChunksAccepted uint64 // chunks accepted in order
	ChunksCorrupt  uint64 // chunks dropped for a bad CRC or size
	ChunksDup      uint64 // duplicates dropped
	ChunksGap      uint64 // chunks dropped because one before them was missing
	ChunksOverflow uint64 // chunks dropped because the transfer's queue was full
	Rejected       uint64 // transfers refused at once (busy, invalid)
	ReceivedOK     uint64 // transfers handed to the handler in full
	ReceivedFailed uint64 // inbound transfers that failed
}

type counters struct {
	chunksSent, chunksResent, rewinds, sentOK, sentFailed               atomic.Uint64
	accepted, corrupt, dup, gap, overflow, rejected, recvOK, recvFailed atomic.Uint64
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	c := &e.stats
	return Stats{
		ChunksSent: c.chunksSent.Load(), ChunksResent: c.chunksResent.Load(), Rewinds: c.rewinds.Load(),
		SentOK: c.sentOK.Load(), SentFailed: c.sentFailed.Load(),
		ChunksAccepted: c.accepted.Load(), ChunksCorrupt: c.corrupt.Load(), ChunksDup: c.dup.Load(),
		ChunksGap: c.gap.Load(), ChunksOverflow: c.overflow.Load(), Rejected: c.rejected.Load(),
		ReceivedOK: c.recvOK.Load(), ReceivedFailed: c.recvFailed.Load(),
	}
}

// finishedMemory is how many ended inbound transfers an endpoint
// remembers.
const finishedMemory = 64

// recent is a bounded memory of how inbound transfers ended: the oldest
// is forgotten first.
type recent struct {
	keys []inKey // ring, in insertion order
	next int
	acks map[inKey]Ack
}

func newRecent(n int) recent {
	return recent{keys: make([]inKey, 0, n), acks: make(map[inKey]Ack, n)}
}

func (r *recent) put(k inKey, a Ack) {
	if _, ok := r.acks[k]; !ok {
		if len(r.keys) < cap(r.keys) {
			r.keys = append(r.keys, k)
		} else {
			delete(r.acks, r.keys[r.next])
			r.keys[r.next] = k
			r.next = (r.next + 1) % len(r.keys)
		}
	}
	r.acks[k] = a
}

func (r *recent) get(k inKey) (Ack, bool) {
	a, ok := r.acks[k]
	return a, ok
}

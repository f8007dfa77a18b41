// Package memnet is an in-memory network for replicas, for tests: each
// node has an Endpoint that implements replica.Transport, and the Network
// can cut links to shape partitions (one-way ones too), and drop or damage
// single packets with a Filter, while the replicas run.
//
// It behaves like a real transport in the ways that matter to a replica:
// Send never blocks (a full queue drops the message and reports the peer
// unreachable), messages are copied as if encoded on a wire, each endpoint
// delivers from one goroutine of its own (no goroutine per message or per
// peer), and a snapshot travels the way the network transport carries it:
// as a stream of chunks and acknowledgements of the transport/snapxfer
// protocol, subject to the same cuts, partitions and filter as every other
// packet. So a test can lose, corrupt or stall a snapshot transfer and see
// it resumed, refused or abandoned. Each snapshot transfer has one
// goroutine on each side while it runs.
//
// Unlike the simulator (raft/rafttest), it is not deterministic: it runs
// on real goroutines and real time.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// Handler receives what the network delivers to a node; *replica.Replica
// implements it.
type Handler interface {
	// Step takes a message other than MsgSnap.
	Step(ctx context.Context, m raft.Message) error
	// StepSnapshot takes a MsgSnap and its data.
	StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error
	// ReportUnreachable is told (on the sending node) that a message to
	// peer was dropped. It must not block.
	ReportUnreachable(peer raft.NodeID)
}

// Errors a snapshot transfer's done callback may receive from memnet
// itself; the others are snapxfer's (ErrStalled, a *RejectedError, ...).
var (
	// ErrUnreachable means the link to the receiver is cut, or the
	// receiver has no endpoint or no handler attached.
	ErrUnreachable = errors.New("memnet: peer unreachable")
	// ErrQueueFull means the receiver's inbound queue was full.
	ErrQueueFull = errors.New("memnet: receiver queue full")
)

// DefaultQueueSize is the capacity of each endpoint's inbound queue.
const DefaultQueueSize = 4096

// Config configures a Network. The zero value gives the defaults.
type Config struct {
	// QueueSize is the capacity of each endpoint's inbound queue.
	// Default DefaultQueueSize.
	QueueSize int
	// Snapshots tunes the snapshot transfer protocol of every endpoint
	// (chunk size, window, timeouts, inbound limit); see
	// snapxfer.Options for its defaults, except that its log lines are
	// discarded unless Snapshots.Logger is set (memnet is for tests).
	Snapshots snapxfer.Options
}

// Validate fills in defaults and reports every problem it finds.
func (c *Config) Validate() error {
	var errs []error
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("memnet: QueueSize %d is negative", c.QueueSize))
	}
	if c.Snapshots.Logger == nil {
		c.Snapshots.Logger = slog.New(slog.DiscardHandler)
	}
	if err := c.Snapshots.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Packet is one thing the network carries from one node to another:
// exactly one of a Raft message, a snapshot chunk or a snapshot ack.
type Packet struct {
	From, To raft.NodeID
	Msg      *raft.Message
	Chunk    *snapxfer.Chunk
	Ack      *snapxfer.Ack
}

// Filter decides whether a packet is delivered (true) or silently lost
// (false). It is given the copy that would be delivered and may change it
// (damage a chunk's data, say), but must not keep it. It runs on the
// sending goroutine with no lock held, so it must be safe for concurrent
// use; it may change the network's links (Cut, Partition, ...).
type Filter func(p Packet) bool

// Network connects endpoints. The zero value is not usable; call New.
type Network struct {
	cfg    Config
	ctx    context.Context // cancelled by Close; ends deliveries
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per endpoint goroutine
	// chunkBufs recycles the memory of chunks in flight (*[]byte): a
	// receiver releases each chunk once it has written its data, so a
	// transfer reuses a few buffers instead of allocating one per chunk.
	chunkBufs sync.Pool

	mu struct {
		sync.Mutex
		closed    bool
		endpoints map[raft.NodeID]*Endpoint
		// cut holds the one-way links that are down.
		cut map[link]struct{}
		// isolated nodes can talk to nobody.
		isolated map[raft.NodeID]struct{}
		filter   Filter
	}
}

type link struct{ from, to raft.NodeID }

// New returns an empty Network with the default configuration. Close it
// when done.
func New() *Network {
	n, err := NewWithConfig(Config{})
	if err != nil {
		panic(err) // the defaults are valid
	}
	return n
}

// NewWithConfig returns an empty Network configured by cfg. Close it when
// done.
func NewWithConfig(cfg Config) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Network{cfg: cfg}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.endpoints = make(map[raft.NodeID]*Endpoint)
	n.mu.cut = make(map[link]struct{})
	n.mu.isolated = make(map[raft.NodeID]struct{})
	return n, nil
}

// Endpoint returns node id's endpoint, creating it (and its delivery
// goroutine) on first use. An endpoint outlives the replicas attached to
// it, so a restarted replica reuses its node's endpoint.
func (n *Network) Endpoint(id raft.NodeID) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.mu.endpoints[id]; e != nil {
		return e
	}
	e := &Endpoint{net: n, id: id, inbox: make(chan envelope, n.cfg.QueueSize)}
	xfer, err := snapxfer.New(id, xferLink{e}, xferHandler{e}, n.cfg.Snapshots)
	if err != nil {
		panic(fmt.Sprintf("memnet: %v", err)) // the options were validated by NewWithConfig
	}
	e.xfer = xfer
	n.mu.endpoints[id] = e
	if n.mu.closed {
		xfer.Close()
	} else {
		n.wg.Go(e.deliver)
	}
	return e
}

// Close ends every snapshot transfer (their senders are told ErrClosed),
// stops every endpoint's delivery goroutine and waits for them. Messages
// still queued are dropped. Close may be called more than once.
func (n *Network) Close() {
	n.mu.Lock()
	n.mu.closed = true
	eps := make([]*Endpoint, 0, len(n.mu.endpoints))
	for _, e := range n.mu.endpoints {
		eps = append(eps, e)
	}
	n.mu.Unlock()
	for _, e := range eps {
		e.xfer.Close()
	}
	n.cancel()
	n.wg.Wait()
}

// SetFilter makes f decide the fate of every packet sent from now on
// (after the cuts and partitions have had their say). nil delivers all.
func (n *Network) SetFilter(f Filter) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.filter = f
}

func (n *Network) filter() Filter {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.filter
}

// pass applies the filter to p.
func (n *Network) pass(p Packet) bool {
	f := n.filter()
	return f == nil || f(p)
}

// Disconnect cuts every link to and from id, until Connect(id).
func (n *Network) Disconnect(id raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.isolated[id] = struct{}{}
}

// Connect restores every link to and from id: it undoes Disconnect(id),
// and any Cut or Partition that involved id.
func (n *Network) Connect(id raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.mu.isolated, id)
	for l := range n.mu.cut {
		if l.from == id || l.to == id {
			delete(n.mu.cut, l)
		}
	}
}

// Cut cuts the one-way link from -> to: messages from `from` to `to` are
// dropped, while those from `to` to `from` still flow.
func (n *Network) Cut(from, to raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.cut[link{from, to}] = struct{}{}
}

// Partition cuts every link between nodes in different sides, both ways.
// Links within a side are left as they are, and so are links of nodes
// named in no side.
func (n *Network) Partition(sides ...[]raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, a := range sides {
		for j, b := range sides {
			if i == j {
				continue
			}
			for _, x := range a {
				for _, y := range b {
					n.mu.cut[link{x, y}] = struct{}{}
				}
			}
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.mu.cut)
	clear(n.mu.isolated)
}

// route returns the endpoint a message from `from` to `to` should go to,
// or nil if the link is down.
func (n *Network) route(from, to raft.NodeID) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed || !n.linkedLocked(from, to) {
		return nil
	}
	return n.mu.endpoints[to]
}

func (n *Network) linked(from, to raft.NodeID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.linkedLocked(from, to)
}

func (n *Network) linkedLocked(from, to raft.NodeID) bool {
	if _, ok := n.mu.isolated[from]; ok {
		return false
	}
	if _, ok := n.mu.isolated[to]; ok {
		return false
	}
	_, cut := n.mu.cut[link{from, to}]
	return !cut
}

// Endpoint is one node's attachment to the network. It implements
// replica.Transport for the node's replica, and delivers the node's
// inbound messages to the attached Handler from one goroutine.
type Endpoint struct {
	net   *Network
	id    raft.NodeID
	inbox chan envelope
	xfer  *snapxfer.Endpoint // the node's snapshot transfers, both ways

	mu struct {
		sync.Mutex
		h Handler
	}
}

// envelope is a packet in flight: a message, or a snapshot chunk or ack.
type envelope struct {
	from  raft.NodeID
	msg   raft.Message
	chunk *snapxfer.Chunk
	ack   *snapxfer.Ack
}

// Attach makes h the node's handler: inbound messages go to it, and it
// hears about unreachable peers. Attach(nil) detaches (a crashed node):
// messages to it are dropped.
func (e *Endpoint) Attach(h Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.h = h
}

func (e *Endpoint) handler() Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.h
}

// Send implements replica.Transport: it never blocks, and drops what it
// cannot queue, reporting the peer unreachable. What the filter drops is
// lost silently.
func (e *Endpoint) Send(msgs []raft.Message) {
	var unreachable []raft.NodeID
	for i := range msgs {
		m := &msgs[i]
		to := e.net.route(e.id, m.To)
		if to == nil {
			unreachable = append(unreachable, m.To)
			continue
		}
		c := snapxfer.CloneMessage(m)
		if !e.net.pass(Packet{From: e.id, To: m.To, Msg: &c}) {
			continue
		}
		if !to.offer(envelope{from: e.id, msg: c}) {
			unreachable = append(unreachable, m.To)
		}
	}
	if len(unreachable) == 0 {
		return
	}
	if h := e.handler(); h != nil {
		slices.Sort(unreachable)
		for _, id := range slices.Compact(unreachable) {
			h.ReportUnreachable(id)
		}
	}
}

// SendSnapshot implements replica.Transport: the snapshot is streamed to
// m.To in chunks by the node's snapxfer endpoint. done hears
// ErrUnreachable at once if m.To cannot be reached at all, and otherwise
// the transfer's outcome: nil, snapxfer.ErrStalled after the stall timeout
// without progress, a *snapxfer.RejectedError, or snapxfer.ErrClosed.
func (e *Endpoint) SendSnapshot(m raft.Message, data io.ReadCloser, done func(error)) {
	e.xfer.Send(m, data, done)
}

// SnapshotStats returns the counters of the node's snapshot transfers.
func (e *Endpoint) SnapshotStats() snapxfer.Stats { return e.xfer.Stats() }

// xferLink carries an endpoint's snapshot chunks and acks over the
// network, subject to its cuts and filter.
type xferLink struct{ e *Endpoint }

// SendChunk implements snapxfer.Link. It never blocks.
func (l xferLink) SendChunk(_ context.Context, c *snapxfer.Chunk) error {
	e := l.e
	to := e.net.route(e.id, c.To)
	if to == nil || to.handler() == nil {
		return fmt.Errorf("%w: %d -> %d", ErrUnreachable, e.id, c.To)
	}
	wire := e.net.wireChunk(c)
	if !e.net.pass(Packet{From: e.id, To: c.To, Chunk: wire}) {
		wire.Release()
		return nil // lost on the way
	}
	if !to.offer(envelope{from: e.id, chunk: wire}) {
		wire.Release()
		return fmt.Errorf("%w: %d", ErrQueueFull, c.To)
	}
	return nil
}

// wireChunk copies c as if it were encoded and decoded, into a buffer from
// the pool that its Release hook returns.
func (n *Network) wireChunk(c *snapxfer.Chunk) *snapxfer.Chunk {
	w := *c
	if c.Msg != nil {
		m := snapxfer.CloneMessage(c.Msg)
		w.Msg = &m
	}
	bp, _ := n.chunkBufs.Get().(*[]byte)
	if bp == nil || cap(*bp) < len(c.Data) {
		b := make([]byte, 0, len(c.Data))
		bp = &b
	}
	w.Data = append((*bp)[:0], c.Data...)
	w.Release = func() { n.chunkBufs.Put(bp) }
	return &w
}

// SendAck implements snapxfer.Link. It never blocks.
func (l xferLink) SendAck(a snapxfer.Ack) {
	e := l.e
	to := e.net.route(e.id, a.To)
	if to == nil || !e.net.pass(Packet{From: e.id, To: a.To, Ack: &a}) {
		return
	}
	to.offer(envelope{from: e.id, ack: &a})
}

// xferHandler hands an inbound snapshot stream to whichever handler is
// attached when the transfer starts.
type xferHandler struct{ e *Endpoint }

func (h xferHandler) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	hd := h.e.handler()
	if hd == nil {
		return fmt.Errorf("%w: node %d has no handler attached", ErrUnreachable, h.e.id)
	}
	return hd.StepSnapshot(ctx, m, data)
}

// offer queues env without blocking, reporting whether it fit.
func (e *Endpoint) offer(env envelope) bool {
	select {
	case e.inbox <- env:
		return true
	default:
		return false
	}
}

// deliver is the endpoint's goroutine: it hands queued messages to the
// handler, one at a time, until the network closes.
func (e *Endpoint) deliver() {
	ctx := e.net.ctx
	for {
		select {
		case <-ctx.Done():
			e.dropQueued()
			return
		case env := <-e.inbox:
			e.deliverOne(ctx, env)
		}
	}
}

func (e *Endpoint) deliverOne(ctx context.Context, env envelope) {
	h := e.handler()
	// The link is checked again on delivery, so that a partition made
	// while a packet is queued drops it, as a real network would. A node
	// with no handler (crashed) receives nothing.
	if h == nil || !e.net.linked(env.from, e.id) {
		if env.chunk != nil {
			env.chunk.Release()
		}
		return
	}
	switch {
	case env.chunk != nil:
		e.xfer.HandleChunk(env.chunk) // never blocks
	case env.ack != nil:
		e.xfer.HandleAck(*env.ack) // never blocks
	default:
		// Errors (a stopped replica, a message the core refuses) are
		// what a real network would lose too.
		_ = h.Step(ctx, env.msg)
	}
}

// dropQueued drops whatever is still queued when the network closes.
func (e *Endpoint) dropQueued() {
	for {
		select {
		case env := <-e.inbox:
			if env.chunk != nil {
				env.chunk.Release()
			}
		default:
			return
		}
	}
}

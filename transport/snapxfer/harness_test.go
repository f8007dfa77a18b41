package snapxfer_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Small chunks and fake time (testing/synctest) keep every scenario fast
// and its timing exact.
const (
	testChunk = 1024
	testWin   = 4
	testRTO   = 100 * time.Millisecond
	testStall = 2 * time.Second
)

func testOptions() snapxfer.Options {
	return snapxfer.Options{
		ChunkSize:         testChunk,
		Window:            testWin,
		RetransmitTimeout: testRTO,
		StallTimeout:      testStall,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

// verdict is what a fault function decides for one chunk or ack.
type verdict uint8

const (
	deliver verdict = iota
	drop
)

// network connects endpoints through links that apply test-chosen faults.
// Delivery is synchronous (HandleChunk and HandleAck never block), so a
// scenario is one causal chain that synctest can drive to quiescence.
type network struct {
	mu sync.Mutex
	// chunkFault may drop a chunk, change it (it gets the copy that would
	// be delivered), or return extra chunks to deliver after it (held
	// ones, duplicates). nil delivers everything.
	chunkFault func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk)
	// ackFault returns how many copies of an ack to deliver (0 drops it).
	ackFault func(a *snapxfer.Ack) int
	eps      map[raft.NodeID]*snapxfer.Endpoint
	// Observations.
	sentAt   map[uint64]int // chunk sends by offset (all transfers)
	maxAhead uint64         // largest (chunk end - acked offset) seen
	highEnd  map[snapxfer.TransferID]uint64
	highAck  map[snapxfer.TransferID]uint64
	acks     []snapxfer.Ack
	// Chunks handed to endpoints, and released by them (each must be,
	// exactly once, by the time the endpoints are closed).
	handed, released int
}

func newNetwork() *network {
	return &network{
		eps:     map[raft.NodeID]*snapxfer.Endpoint{},
		sentAt:  map[uint64]int{},
		highEnd: map[snapxfer.TransferID]uint64{},
		highAck: map[snapxfer.TransferID]uint64{},
	}
}

type link struct {
	n  *network
	id raft.NodeID
}

func (l link) SendChunk(_ context.Context, c *snapxfer.Chunk) error {
	n := l.n
	wire := c.Clone() // as if encoded: the sender may reuse c's memory
	n.mu.Lock()
	to := n.eps[c.To]
	if !c.Abort {
		n.sentAt[c.Offset]++
		if end := c.Offset + uint64(len(c.Data)); end > n.highEnd[c.ID] {
			n.highEnd[c.ID] = end
			n.maxAhead = max(n.maxAhead, end-n.highAck[c.ID])
		}
	}
	v, extra := deliver, []*snapxfer.Chunk(nil)
	if n.chunkFault != nil {
		v, extra = n.chunkFault(wire)
	}
	n.mu.Unlock()
	if to == nil {
		return errors.New("test: no such endpoint")
	}
	if v == deliver {
		n.hand(to, wire)
	}
	for _, x := range extra {
		n.hand(n.endpoint(x.To), x)
	}
	return nil
}

// hand delivers c to ep, as a carrier that recycles chunk memory would:
// with a Release hook that must be called once.
func (n *network) hand(ep *snapxfer.Endpoint, c *snapxfer.Chunk) {
	n.mu.Lock()
	n.handed++
	n.mu.Unlock()
	var once sync.Once
	c.Release = func() {
		called := true
		once.Do(func() { called = false })
		n.mu.Lock()
		defer n.mu.Unlock()
		if called {
			panic("chunk released twice")
		}
		n.released++
	}
	ep.HandleChunk(c)
}

func (l link) SendAck(a snapxfer.Ack) {
	n := l.n
	n.mu.Lock()
	to := n.eps[a.To]
	n.acks = append(n.acks, a)
	if a.Kind == snapxfer.AckProgress || a.Kind == snapxfer.AckResume {
		n.highAck[a.ID] = max(n.highAck[a.ID], a.Offset)
	}
	copies := 1
	if n.ackFault != nil {
		copies = n.ackFault(&a)
	}
	n.mu.Unlock()
	for range copies {
		if to != nil {
			to.HandleAck(a)
		}
	}
}

func (n *network) endpoint(id raft.NodeID) *snapxfer.Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.eps[id]
}

// add creates node id's endpoint with handler h.
func (n *network) add(t *testing.T, id raft.NodeID, h snapxfer.Handler, opts snapxfer.Options) *snapxfer.Endpoint {
	t.Helper()
	ep, err := snapxfer.New(id, link{n, id}, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.eps[id] = ep
	n.mu.Unlock()
	t.Cleanup(ep.Close)
	return ep
}

func (n *network) setChunkFault(f func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.chunkFault = f
}

func (n *network) setAckFault(f func(a *snapxfer.Ack) int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ackFault = f
}

func (n *network) sends(off uint64) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sentAt[off]
}

// received is one snapshot a handler staged.
type received struct {
	msg  raft.Message
	data []byte
}

// recorder is a Handler that stages snapshots in memory, as a replica
// stages them in its snapshot store: it reads to the end before it
// accepts the message, and discards what it read on an error.
type recorder struct {
	mu     sync.Mutex
	got    []received
	failed []error
	// gate, if set, is waited on before reading (a slow disk).
	gate chan struct{}
	// refuse, if set, is returned without reading.
	refuse error
}

func (r *recorder) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.refuse != nil {
		return r.refuse
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, data); err != nil {
		r.mu.Lock()
		r.failed = append(r.failed, err)
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.got = append(r.got, received{m, buf.Bytes()})
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshots() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *recorder) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.failed...)
}

func payload(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func snapMsg(from, to raft.NodeID, index raft.Index) raft.Message {
	return raft.Message{Type: raft.MsgSnap, From: from, To: to, Term: 3,
		Snapshot: &raft.SnapshotMeta{Index: index, Term: 2, ConfState: raft.NewConfState(1, 2, 3)}}
}

// send starts a transfer and returns a channel that receives its outcome.
func send(ep *snapxfer.Endpoint, m raft.Message, data []byte) <-chan error {
	done := make(chan error, 1)
	ep.Send(m, io.NopCloser(bytes.NewReader(data)), func(err error) { done <- err })
	return done
}

// pair sets up node 1 sending to node 2, with default test options.
func pair(t *testing.T) (*network, *snapxfer.Endpoint, *snapxfer.Endpoint, *recorder) {
	n := newNetwork()
	// Runs after the endpoints are closed (cleanups run last first).
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.handed != n.released {
			t.Errorf("%d chunks handed to endpoints, %d released", n.handed, n.released)
		}
	})
	rec := &recorder{}
	a := n.add(t, 1, &recorder{}, testOptions())
	b := n.add(t, 2, rec, testOptions())
	return n, a, b, rec
}

// checkReceived checks that the receiver staged exactly one snapshot:
// data, for message m.
func checkReceived(t *testing.T, rec *recorder, m raft.Message, data []byte) {
	t.Helper()
	got := rec.snapshots()
	if len(got) != 1 {
		t.Fatalf("handler staged %d snapshots, want 1", len(got))
	}
	if !bytes.Equal(got[0].data, data) {
		t.Fatalf("staged %d bytes that differ from the %d sent", len(got[0].data), len(data))
	}
	if raft.DescribeMessage(got[0].msg) != raft.DescribeMessage(m) || got[0].msg.Snapshot == m.Snapshot {
		t.Fatalf("staged message %s, want a copy of %s", raft.DescribeMessage(got[0].msg), raft.DescribeMessage(m))
	}
}

package replica_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

// gauge holds the latest value the run goroutine reported, and wakes
// whoever waits for a value (never blocking the reporter).
type gauge struct {
	mu      sync.Mutex
	v       int
	changed chan struct{}
}

func newGauge() *gauge { return &gauge{changed: make(chan struct{})} }

func (g *gauge) set(v int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v != g.v {
		g.v = v
		close(g.changed)
		g.changed = make(chan struct{})
	}
}

// await waits until the value is want.
func (g *gauge) await(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	for {
		g.mu.Lock()
		v, changed := g.v, g.changed
		g.mu.Unlock()
		if v == want {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("value is %d, want %d: %v", v, want, ctx.Err())
		}
	}
}

// A caller that gives up waiting for an index leaves nothing behind in the
// wait registry, however far ahead the index; the waiters that stay are
// still released in order.
func TestCancelledWaitersLeaveTheRegistry(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 1, nil)
	r := c.r(c.waitLeader(ctx))
	waits := newGauge()
	if err := r.ObserveWaits(ctx, waits.set); err != nil {
		t.Fatal(err)
	}

	// Far ahead: without removal these would stay forever.
	const far = 100
	short, cancel := context.WithCancel(ctx)
	errc := make(chan error, far)
	for i := range far {
		go func() { errc <- r.WaitApplied(short, 1<<40+raft.Index(i)) }()
	}
	waits.await(t, ctx, far)
	cancel()
	for range far {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v", err)
		}
	}
	waits.await(t, ctx, 0)

	// Interleaved: every other waiter gives up; the others are released
	// as the log reaches them, from the middle of the heap.
	_, last := c.propose(ctx, "a=1")
	short, cancel = context.WithCancel(ctx)
	defer cancel()
	const n = 20
	results := make([]chan error, n)
	for i := range n {
		wctx := ctx
		if i%2 == 1 {
			wctx = short
		}
		results[i] = make(chan error, 1)
		go func() { results[i] <- r.WaitApplied(wctx, last+1+raft.Index(i)) }()
	}
	waits.await(t, ctx, n)
	cancel()
	for i := 1; i < n; i += 2 {
		if err := <-results[i]; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	waits.await(t, ctx, n/2)
	for i := range n {
		if _, err := r.Propose(ctx, []byte("b=1")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := <-results[i]; err != nil {
				t.Fatalf("waiter %d: %v", i, err)
			}
		}
	}
	waits.await(t, ctx, 0)
}

// TryStep queues a message when the inbound queue has room, and otherwise
// drops it at once instead of blocking; it never queues a MsgSnap, nor
// anything for a stopped replica.
func TestTryStepNeverBlocks(t *testing.T) {
	ctx := testContext(t)
	const queue = 4
	c := newCluster(t, 1, func(cfg *replica.Config) { cfg.MaxStepBatch = queue })
	id := c.waitLeader(ctx)
	r := c.r(id)
	// Without a term: the core drops it, changing nothing.
	m := raft.Message{Type: raft.MsgHeartbeat, From: 2, To: id}

	release := r.Block()
	for i := range queue {
		if !r.TryStep(m) {
			t.Fatalf("message %d not queued into a queue of %d", i, queue)
		}
	}
	if r.TryStep(m) {
		t.Fatal("TryStep queued into a full queue")
	}
	if r.TryStep(raft.Message{Type: raft.MsgSnap, From: 2, To: id, Term: 1, Snapshot: &raft.SnapshotMeta{Index: 1, Term: 1}}) {
		t.Fatal("TryStep queued a MsgSnap")
	}
	release()
	// The run goroutine drains the queue: a blocking Step gets in.
	if err := r.Step(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Propose(ctx, []byte("a=1")); err != nil {
		t.Fatal(err)
	}
	c.stop(id)
	if r.TryStep(m) {
		t.Fatal("TryStep queued into a stopped replica")
	}
}

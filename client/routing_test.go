package client

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client/internal/fakekv"
)

// A follower's NOT_LEADER hint sends the client to the leader, which it
// then remembers; when leadership moves, the old leader's hint moves it.
func TestLeaderRedirect(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetLeader(3)
	c := newClient(t, cl.Endpoints(), nil)

	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(callsOf(cl.Calls(), "OpenSession")); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("OpenSession went to nodes %v, want [1 3] (redirected)", got)
	}
	if got := nodesOf(callsOf(cl.Calls(), "Put")); !slices.Equal(got, []uint64{3}) {
		t.Errorf("Put went to nodes %v, want [3] (the cached leader)", got)
	}
	if r, err := c.Get(ctx, []byte("a")); err != nil || r.Header.Node != 3 {
		t.Fatalf("Get = %+v, %v; want an answer from node 3", r, err)
	}

	cl.SetLeader(2)
	if _, err := c.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(callsOf(cl.Calls(), "Put")); !slices.Equal(got, []uint64{3, 3, 2}) {
		t.Errorf("Puts went to nodes %v, want [3 3 2]", got)
	}

	// A hint naming only the leader's id is resolved from the node ids
	// seen in earlier answers.
	cl.SetLeader(3)
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Node == 2 {
			return fakekv.Action{Err: (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_NOT_LEADER, LeaderId: 3}).Err()}
		}
		return fakekv.Action{}
	})
	if _, err := c.Put(ctx, []byte("c"), []byte("3")); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(callsOf(cl.Calls(), "Put")); !slices.Equal(got, []uint64{3, 3, 2, 2, 3}) {
		t.Errorf("Puts went to nodes %v, want [3 3 2 2 3]", got)
	}
	assertExactlyOnce(t, cl)
}

// A node that is down is skipped: the client moves to the next endpoint.
func TestEndpointRotationWhenNodeDown(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.Stop(1)
	cl.SetLeader(2)
	c := newClient(t, cl.Endpoints(), nil)

	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := c.router.leader(); got != cl.Addr(2) {
		t.Errorf("leader cached as %q, want node 2 %q", got, cl.Addr(2))
	}

	// The leader goes down and node 3 takes over.
	cl.Stop(2)
	cl.SetLeader(3)
	if _, err := c.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := c.router.leader(); got != cl.Addr(3) {
		t.Errorf("leader cached as %q, want node 3 %q", got, cl.Addr(3))
	}
	for _, call := range cl.Calls() {
		if call.Node == 1 {
			t.Errorf("a stopped node answered: %+v", call)
		}
	}

	// Node 1 comes back; reads spread over the live nodes.
	if err := cl.Restart(1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("a"), WithConsistency(Serializable)); err != nil {
		t.Fatal(err)
	}
	assertExactlyOnce(t, cl)
}

// When no node knows a leader, the client keeps trying, with backoff,
// until one emerges.
func TestNoLeaderKnown(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetLeader(0)
	var calls atomic.Int32
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if calls.Add(1) == 5 {
			cl.SetLeader(2) // an election ends
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := c.router.leader(); got != cl.Addr(2) {
		t.Errorf("leader cached as %q, want node 2", got)
	}
}

// Serializable reads go to any node, round robin; linearizable and lease
// reads to the leader; the level travels on the wire.
func TestReadRouting(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	c := newClient(t, cl.Endpoints(), nil)
	for range 3 {
		if _, err := c.Get(ctx, []byte("k"), WithConsistency(Serializable)); !errors.Is(err, ErrKeyNotFound) {
			t.Fatal(err)
		}
	}
	for _, cons := range []Consistency{Lease, Linearizable} {
		if _, err := c.Get(ctx, []byte("k"), WithConsistency(cons)); !errors.Is(err, ErrKeyNotFound) {
			t.Fatal(err)
		}
	}
	gets := callsOf(cl.Calls(), "Get")
	if got := nodesOf(gets); !slices.Equal(got, []uint64{1, 2, 3, 1, 1}) {
		t.Errorf("gets went to %v, want [1 2 3 1 1]", got)
	}
	want := []kvpb.Consistency{kvpb.Consistency_SERIALIZABLE, kvpb.Consistency_SERIALIZABLE, kvpb.Consistency_SERIALIZABLE, kvpb.Consistency_LEASE, kvpb.Consistency_LINEARIZABLE}
	for i, g := range gets {
		if g.Consistency != want[i] {
			t.Errorf("get %d consistency %v, want %v", i, g.Consistency, want[i])
		}
	}
}

// The caller's deadline bounds a call with all its retries: a write cut
// short after it was sent has an unknown outcome; a read just gives up.
func TestContextDeadlineHonored(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	hold := make(chan struct{})
	defer close(hold)
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Put" || call.Method == "Get" {
			return fakekv.Action{Block: hold}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), func(cfg *Config) { cfg.AttemptTimeout = time.Minute })
	if _, err := c.sessions.get(ctx); err != nil { // open the session first
		t.Fatal(err)
	}

	start := time.Now()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := c.Put(short, []byte("a"), []byte("1"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("put past its deadline = %v, want DeadlineExceeded, ErrOutcomeUnknown, ErrUnavailable", err)
	}
	var unknown *OutcomeUnknownError
	if !errors.As(err, &unknown) || unknown.Seq != 1 {
		t.Errorf("error = %+v, want seq 1", unknown)
	}

	short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.Get(short, []byte("a"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("get past its deadline = %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	// Generous: the point is that the minute-long attempt timeout did not
	// hold the calls.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("calls took %v", d)
	}

	// A context already done fails at once, unsent: not unknown.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Put(done, []byte("b"), []byte("1")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put with a canceled context = %v", err)
	}
}

// A node that hangs is given up on after AttemptTimeout and the write
// retried with its seq: applied once.
func TestAttemptTimeoutRetries(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Put" && call.Attempt == 1 {
			return fakekv.Action{Block: make(chan struct{})} // never released: until the attempt's deadline
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), func(cfg *Config) { cfg.AttemptTimeout = 50 * time.Millisecond })
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if n := len(callsOf(cl.Calls(), "Put")); n < 2 {
		t.Errorf("%d put attempts, want a retry", n)
	}
	if n := len(cl.Executions()); n != 1 {
		t.Errorf("%d executions, want 1", n)
	}
}

// With every node down, MaxAttempts ends the call; nothing was sent that
// could have applied, so a write is unavailable, not unknown.
func TestMaxAttempts(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	for id := uint64(1); id <= 3; id++ {
		cl.Stop(id)
	}
	c := newClient(t, cl.Endpoints(), func(cfg *Config) { cfg.Retry.MaxAttempts = 3 })
	if _, err := c.Get(ctx, []byte("a")); !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("get = %v, want ErrUnavailable", err)
	}
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put = %v, want ErrUnavailable (no session could be opened)", err)
	}
}

// Close fails the calls in flight, closes the session on the server, and
// fails later calls.
func TestClose(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	arrived := make(chan struct{}, 1)
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Put" {
			signal(arrived, struct{}{})
			return fakekv.Action{Block: make(chan struct{})}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, []byte("a"), []byte("1"))
		done <- err
	}()
	await(t, ctx, arrived, "the put")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put in flight at Close = %v, want ErrClosed and ErrOutcomeUnknown", err)
	}
	if s := cl.Sessions(); len(s) != 0 {
		t.Errorf("sessions after Close = %v, want none", s)
	}
	if _, err := c.Get(ctx, []byte("a")); !errors.Is(err, ErrClosed) {
		t.Errorf("get after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); !errors.Is(err, ErrClosed) {
		t.Errorf("put after Close = %v, want ErrClosed", err)
	}
}

package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client/internal/fakekv"
)

// A retry after a lost reply returns the original result, and the write
// is applied once: an Append would show it twice.
func TestRetryAfterDroppedReplyReturnsOriginalResult(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Append" && call.Attempt == 1 {
			return fakekv.Action{DropReply: true}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)

	r1, err := c.Append(ctx, []byte("k"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Append(ctx, []byte("k"), []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := cl.Value("k"); string(v) != "xy" {
		t.Fatalf("value = %q, want %q", v, "xy")
	}
	execs := cl.Executions()
	if len(execs) != 2 {
		t.Fatalf("executions = %+v, want 2", execs)
	}
	// The results are the originals: those of the executions whose replies
	// were lost, returned from the session's cache.
	if r1.Length != 1 || r1.Version != Version(execs[0].Index) || r1.Header.AppliedIndex != Index(execs[0].Index) {
		t.Errorf("first append = %+v, want length 1 at %d", r1, execs[0].Index)
	}
	if r2.Length != 2 || r2.Version != Version(execs[1].Index) {
		t.Errorf("second append = %+v, want length 2 at %d", r2, execs[1].Index)
	}
	// A lost reply looks like a lost leader: the client may try another
	// node, which sends it back. Every attempt carries the write's seq.
	var seqs []uint64
	for _, call := range callsOf(cl.Calls(), "Append") {
		if call.Session != execs[0].Session {
			t.Errorf("append on session %d, want %d", call.Session, execs[0].Session)
		}
		if len(seqs) == 0 || seqs[len(seqs)-1] != call.Seq {
			seqs = append(seqs, call.Seq)
		}
	}
	if !slices.Equal(seqs, []uint64{1, 2}) {
		t.Errorf("append attempts carried seqs %v, want 1s then 2s", seqs)
	}
	assertExactlyOnce(t, cl)
}

// Many writers at once, through lost replies, refusals and redirects:
// every append lands exactly once and in each writer's order.
func TestConcurrentWritersExactlyOnce(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	tooMany := (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_TOO_MANY_PENDING, Message: "fake"}).Err()
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method != "Append" {
			return fakekv.Action{}
		}
		switch {
		case call.Seq%3 == 0 && call.Attempt == 1:
			return fakekv.Action{DropReply: true}
		case call.Seq%5 == 0 && call.Attempt <= 2:
			return fakekv.Action{Err: tooMany}
		case call.Seq%7 == 0 && call.Attempt == 1:
			return fakekv.Action{Err: cl.NotLeader(0)}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)

	const writers, perWriter, keys = 8, 40, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			key := []byte(fmt.Sprintf("key%d", w%keys))
			for i := range perWriter {
				if _, err := c.Append(ctx, key, []byte(fmt.Sprintf("w%d.%d;", w, i))); err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	next := make([]int, writers)
	for k := range keys {
		v, _, _ := cl.Value(fmt.Sprintf("key%d", k))
		for part := range strings.SplitSeq(strings.TrimSuffix(string(v), ";"), ";") {
			var w, i int
			if _, err := fmt.Sscanf(part, "w%d.%d", &w, &i); err != nil {
				t.Fatalf("key%d: bad part %q", k, part)
			}
			if i != next[w] {
				t.Fatalf("key%d: writer %d's append %d where %d was due: %q", k, w, i, next[w], v)
			}
			next[w]++
		}
	}
	for w, n := range next {
		if n != perWriter {
			t.Errorf("writer %d: %d appends landed, want %d", w, n, perWriter)
		}
	}
	if n := len(cl.Executions()); n != writers*perWriter {
		t.Errorf("%d executions, want %d", n, writers*perWriter)
	}
	assertExactlyOnce(t, cl)
	if s := cl.Sessions(); len(s) != 1 {
		t.Errorf("sessions = %v, want one", s)
	}
}

// The lowest unacknowledged seq each request carries is the oldest seq
// still in flight, however the others completed around it.
func TestLowestUnackedOutOfOrderCompletions(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	arrived := make(chan uint64, 8)
	release := map[uint64]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method != "Put" {
			return fakekv.Action{}
		}
		signal(arrived, call.Seq)
		return fakekv.Action{Block: release[call.Seq]} // nil for the others: no block
	})
	c := newClient(t, cl.Endpoints(), nil)

	done := make(chan error, 2)
	put := func(key string) { _, err := c.Put(ctx, []byte(key), []byte("v")); done <- err }
	go put("a") // seq 1
	if s := await(t, ctx, arrived, "seq 1"); s != 1 {
		t.Fatalf("first put got seq %d", s)
	}
	go put("b") // seq 2
	if s := await(t, ctx, arrived, "seq 2"); s != 2 {
		t.Fatalf("second put got seq %d", s)
	}
	lowest := func(key string) uint64 {
		t.Helper()
		if _, err := c.Put(ctx, []byte(key), []byte("v")); err != nil {
			t.Fatal(err)
		}
		<-arrived
		for _, call := range callsOf(cl.Calls(), "Put") {
			if string(call.Key) == key {
				return call.LowestUnacked
			}
		}
		t.Fatalf("no call for %q", key)
		return 0
	}
	if got := lowest("c"); got != 1 { // seq 3; 1 and 2 in flight
		t.Errorf("seq 3 carried lowest unacked %d, want 1", got)
	}
	close(release[2])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := lowest("d"); got != 1 { // seq 4; 2 and 3 done, 1 in flight
		t.Errorf("seq 4 carried lowest unacked %d, want 1", got)
	}
	close(release[1])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := lowest("e"); got != 5 { // seq 5; all before done
		t.Errorf("seq 5 carried lowest unacked %d, want 5", got)
	}
	// The server has forgotten every result but the last.
	if p := cl.Pending(cl.Sessions()[0]); p != 1 {
		t.Errorf("server keeps %d results, want 1", p)
	}
}

// An attempt executed and its reply lost; then the session expired, so
// the retry meets SESSION_EXPIRED. The write may have applied (it did),
// and the server can no longer say: the outcome is unknown, and the
// client must not run it again on a new session. The next write gets a
// fresh session.
func TestSessionExpiredAfterLostReplyIsOutcomeUnknown(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Append" && string(call.Key) == "x" {
			switch call.Attempt {
			case 1:
				return fakekv.Action{DropReply: true}
			case 2:
				cl.ExpireSession(call.Session) // before the retry is handled
			}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)

	_, err := c.Append(ctx, []byte("x"), []byte("1"))
	var unknown *OutcomeUnknownError
	if !errors.As(err, &unknown) || !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("append = %v, want an OutcomeUnknownError matching ErrSessionExpired", err)
	}
	first := cl.Executions()[0].Session
	if unknown.Session != SessionID(first) || unknown.Seq != 1 || unknown.Op != "append" {
		t.Errorf("error = %+v, want session %d seq 1", unknown, first)
	}

	if _, err := c.Append(ctx, []byte("y"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	execs := cl.Executions()
	if len(execs) != 2 || execs[1].Session == first || execs[1].Seq != 1 {
		t.Fatalf("executions = %+v, want x once on session %d, then y as seq 1 of a new session", execs, first)
	}
	if v, _, _ := cl.Value("x"); string(v) != "1" {
		t.Errorf("x = %q, want applied once", v)
	}
	// x was never sent on the new session.
	for _, call := range callsOf(cl.Calls(), "Append") {
		if string(call.Key) == "x" && call.Session != first {
			t.Errorf("x retried on session %d", call.Session)
		}
	}
}

// A write that meets SESSION_EXPIRED having never possibly executed is
// rerun on a new session, invisibly; one that keeps meeting it gives up
// with ErrSessionExpired, not "unknown".
func TestSessionExpiredBeforeExecution(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	var expiredOnce atomic.Bool
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Put" && (string(call.Key) == "always" || (string(call.Key) == "x" && expiredOnce.CompareAndSwap(false, true))) {
			cl.ExpireSession(call.Session)
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)

	r, err := c.Put(ctx, []byte("x"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	execs := cl.Executions()
	if len(execs) != 1 || Version(execs[0].Index) != r.Version {
		t.Fatalf("executions = %+v, want one", execs)
	}
	puts := callsOf(cl.Calls(), "Put")
	if len(puts) != 2 || puts[0].Session == puts[1].Session || puts[1].Seq != 1 {
		t.Errorf("puts = %+v, want seq 1 of one session, then seq 1 of another", puts)
	}

	_, err = c.Put(ctx, []byte("always"), []byte("1"))
	if !errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put = %v, want ErrSessionExpired (and not unknown)", err)
	}
	if n := len(cl.Executions()); n != 1 {
		t.Errorf("%d executions, want 1", n)
	}
}

// The client keeps its session alive, acknowledging results as it goes,
// and notices when the server has expired it.
func TestKeepAlive(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{Limits: fakekv.Limits{SessionTTL: 30 * time.Millisecond}})
	keepAlives := make(chan fakekv.Call, 16)
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "KeepAlive" {
			signal(keepAlives, call)
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)

	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	first := cl.Sessions()[0]
	for {
		ka := await(t, ctx, keepAlives, "a keep-alive acknowledging seq 1")
		if ka.Session != first {
			t.Fatalf("keep-alive for session %d, want %d", ka.Session, first)
		}
		if ka.LowestUnacked == 2 {
			break
		}
	}
	// The hook sees a call before it is handled; keep-alives go one at a
	// time, so once the next one arrives, that one has been handled.
	await(t, ctx, keepAlives, "the next keep-alive")
	if p := cl.Pending(first); p != 0 {
		t.Errorf("server keeps %d results after the keep-alive acknowledged them", p)
	}

	// Expire the session on the server; the next keep-alive notices, and
	// ends the client's session.
	s, err := c.sessions.get(ctx)
	if err != nil || s.id != SessionID(first) {
		t.Fatalf("client session = %v, %v; want %d", s, err, first)
	}
	cl.ExpireSession(first)
	select {
	case <-s.done:
	case <-ctx.Done():
		t.Fatal("the client did not notice its session's expiry")
	}
	// So the next write goes straight to a new session.
	if _, err := c.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	for _, call := range callsOf(cl.Calls(), "Put") {
		if string(call.Key) == "b" && call.Session == first {
			t.Errorf("b sent on the expired session: %+v", call)
		}
	}
	assertExactlyOnce(t, cl)
}

// TOO_MANY_PENDING is retried with the same seq; MaxInflight keeps the
// window of seqs within bounds, so a write waits for room rather than
// overrunning the server.
func TestPendingLimits(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	tooMany := (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_TOO_MANY_PENDING, Message: "fake"}).Err()
	arrived := make(chan uint64, 4)
	release := make(chan struct{})
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		switch string(call.Key) {
		case "busy":
			if call.Attempt <= 2 {
				return fakekv.Action{Err: tooMany}
			}
		case "slow":
			signal(arrived, call.Seq)
			return fakekv.Action{Block: release}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), func(cfg *Config) { cfg.MaxInflight = 2 })

	if _, err := c.Put(ctx, []byte("busy"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	puts := callsOf(cl.Calls(), "Put")
	if len(puts) != 3 || puts[2].Seq != 1 {
		t.Fatalf("puts = %+v, want seq 1 three times", puts)
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, []byte("slow"), []byte("2")) // seq 2, held
		done <- err
	}()
	await(t, ctx, arrived, "the slow put")
	if _, err := c.Put(ctx, []byte("quick"), []byte("3")); err != nil { // seq 3: window [2, 4)
		t.Fatal(err)
	}
	// The window [2, 4) is full until seq 2 completes: a put waits, and
	// gives up unsent, so not "unknown".
	short, cancel := contextWithTimeout(ctx, 50*time.Millisecond)
	_, err := c.Put(short, []byte("waits"), []byte("4"))
	cancel()
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put on a full window = %v, want ErrUnavailable, not unknown", err)
	}
	for _, call := range cl.Calls() {
		if string(call.Key) == "waits" {
			t.Fatalf("a put was sent beyond the window: %+v", call)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("room"), []byte("5")); err != nil {
		t.Fatal(err)
	}
	assertExactlyOnce(t, cl)
}

// A reply lost across a leader change: the retry reaches the new leader,
// which answers from the (replicated) session cache.
func TestRetryAcrossLeaderChange(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Append" && call.Attempt == 1 {
			cl.SetLeader(2) // applied by the old leader, which then steps down
			return fakekv.Action{DropReply: true}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)
	r, err := c.Append(ctx, []byte("k"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	execs := cl.Executions()
	if len(execs) != 1 || r.Version != Version(execs[0].Index) || r.Length != 1 {
		t.Fatalf("append = %+v, executions %+v; want the original result", r, execs)
	}
	if r.Header.Node != 2 {
		t.Errorf("answered by node %d, want the new leader 2", r.Header.Node)
	}
}

// Final answers on a write: those saying "not executed" are returned as
// they are; those that say nothing about execution make it unknown.
func TestWriteFinalErrors(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	var answer atomic.Value // of error
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Put" {
			return fakekv.Action{Err: answer.Load().(error)}
		}
		return fakekv.Action{}
	})
	c := newClient(t, cl.Endpoints(), nil)
	for _, tc := range []struct {
		err     error
		unknown bool
	}{
		{status.Error(codes.Internal, "bug"), true},
		{status.Error(codes.Unknown, "?"), true},
		{(&kvpb.ErrorDetail{Code: kvpb.ErrorCode_STALE_SEQUENCE, Message: "stale"}).Err(), true},
		{status.Error(codes.Unimplemented, "no"), false},
		{status.Error(codes.PermissionDenied, "no"), false},
		{(&kvpb.ErrorDetail{Code: kvpb.ErrorCode_MALFORMED, Message: "bad"}).Err(), false},
	} {
		answer.Store(tc.err)
		_, err := c.Put(ctx, []byte("k"), []byte("v"))
		if got := errors.Is(err, ErrOutcomeUnknown); got != tc.unknown || err == nil {
			t.Errorf("put answered %v = %v; unknown %v, want %v", tc.err, err, got, tc.unknown)
		}
		if s, ok := status.FromError(err); !tc.unknown && status.Code(tc.err) != codes.InvalidArgument && (!ok || s.Code() != status.Code(tc.err)) {
			t.Errorf("put answered %v = %v; the status is not in the chain", tc.err, err)
		}
	}
}

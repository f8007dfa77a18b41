package kv

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

func appendReq(h *kvpb.WriteHeader, k, s string) *kvpb.AppendRequest {
	return &kvpb.AppendRequest{Header: h, Key: []byte(k), Suffix: []byte(s)}
}

// cachedResults counts the results the engine keeps for session id.
func cachedResults(t *testing.T, sm *StateMachine, id uint64) int {
	t.Helper()
	lo, hi := resultSpan(id, 0, 0)
	it, err := sm.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func TestSessionOpenIDIsIndex(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	l.put("x", "y")
	resp := l.ok(&kvpb.OpenSessionRequest{}).(*kvpb.OpenSessionResponse)
	if resp.GetSessionId() != 2 || resp.GetTtlMs() != DefaultLimits.SessionTTL.Milliseconds() {
		t.Fatalf("open: %v", resp)
	}
}

func TestExactlyOnce(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	s := l.open()

	first := l.do(appendReq(hdr(s, 1, 1), "log", "a"))
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first: %+v", first)
	}
	// Many in flight, arriving out of order; then retries of each.
	r3 := l.do(appendReq(hdr(s, 3, 1), "log", "c"))
	r2 := l.do(appendReq(hdr(s, 2, 1), "log", "b"))
	for _, tc := range []struct {
		seq  uint64
		orig *Result
		s    string
	}{{1, first, "a"}, {3, r3, "c"}, {2, r2, "b"}} {
		dup := l.do(appendReq(hdr(s, tc.seq, 1), "log", tc.s))
		if !dup.Duplicate || !proto.Equal(dup.Response, tc.orig.Response) {
			t.Fatalf("retry of seq %d: %+v, want the original %v", tc.seq, dup, tc.orig.Response)
		}
	}
	if v, _, _ := get(t, sm, "log"); v != "acb" {
		t.Fatalf("log = %q, want each append once: acb", v)
	}
	// The original result is returned even for a retry whose body differs
	// (the seq names the request).
	dup := l.do(appendReq(hdr(s, 2, 1), "log", "DIFFERENT"))
	if !dup.Duplicate || dup.Response.(*kvpb.AppendResponse).GetLength() != 3 {
		t.Fatalf("retry with another body: %+v", dup)
	}
	if v, _, _ := get(t, sm, "log"); v != "acb" {
		t.Fatalf("log = %q", v)
	}
	// Failures are outcomes too, cached like any result.
	l.ok(&kvpb.Limits{MaxValueSize: 5})
	failed := l.do(appendReq(hdr(s, 4, 1), "log", "xyz"))
	wantCode(t, failed.Err, ErrValueTooLarge)
	l.ok(&kvpb.Limits{})
	again := l.do(appendReq(hdr(s, 4, 1), "log", "xyz"))
	if !again.Duplicate {
		t.Fatalf("retry of a failed seq re-executed: %+v", again)
	}
	wantCode(t, again.Err, ErrValueTooLarge)
	if v, _, _ := get(t, sm, "log"); v != "acb" {
		t.Fatalf("log = %q", v)
	}

	// Acknowledging prunes; an acknowledged seq is refused, not re-run.
	if n := cachedResults(t, sm, s); n != 4 {
		t.Fatalf("%d cached results, want 4", n)
	}
	l.do(appendReq(hdr(s, 5, 3), "log", "d")) // acks 1 and 2
	if n := cachedResults(t, sm, s); n != 3 {
		t.Fatalf("%d cached results after ack, want 3 (seqs 3, 4, 5)", n)
	}
	stale := l.do(appendReq(hdr(s, 2, 3), "log", "b"))
	wantCode(t, stale.Err, ErrStaleSequence)
	// A retry carrying an older ack does not un-acknowledge.
	stale = l.do(appendReq(hdr(s, 1, 1), "log", "a"))
	wantCode(t, stale.Err, ErrStaleSequence)
	l.ok(&kvpb.KeepAliveRequest{SessionId: s, LowestUnackedSeq: 6})
	if n := cachedResults(t, sm, s); n != 0 {
		t.Fatalf("%d cached results after acking all, want 0", n)
	}
	if v, _, _ := get(t, sm, "log"); v != "acbd" {
		t.Fatalf("log = %q", v)
	}
	if rec := sm.sessions.get(s); rec.GetPending() != 0 || rec.GetLowestUnackedSeq() != 6 {
		t.Fatalf("session record %v", rec)
	}
}

func TestSessionExpiry(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	l.ok(&kvpb.Limits{SessionTtlMs: 10000})
	a, b := l.open(), l.open()

	// Keep a alive across 3 TTLs; let b idle.
	for range 6 {
		l.now = l.now.Add(5 * time.Second)
		l.ok(&kvpb.KeepAliveRequest{SessionId: a})
	}
	r := l.do(sput(hdr(b, 1, 1), "k", "v"))
	wantCode(t, r.Err, ErrSessionExpired)
	if _, _, found := get(t, sm, "k"); found {
		t.Fatal("a write on an expired session was executed")
	}
	if r.Err.(*Error).Detail().GetCode().GRPCCode().String() != "FailedPrecondition" {
		t.Fatalf("expired maps to %v", r.Err.(*Error).Detail().GetCode().GRPCCode())
	}
	l.ok(sput(hdr(a, 1, 1), "k", "v"))

	// Exactly the TTL idle is alive; a nanosecond more is expired.
	l.now = l.now.Add(10 * time.Second)
	l.ok(&kvpb.KeepAliveRequest{SessionId: a})
	l.now = l.now.Add(10*time.Second + 1)
	r = l.do(&kvpb.KeepAliveRequest{SessionId: a})
	wantCode(t, r.Err, ErrSessionExpired)
	if sm.sessions.len() != 0 {
		t.Fatalf("%d sessions left", sm.sessions.len())
	}
	// Expiry dropped the cached results too.
	if n := cachedResults(t, sm, a); n != 0 {
		t.Fatalf("%d cached results of an expired session", n)
	}

	// The clock never goes back: a command stamped earlier (a new leader
	// with a slow clock) does not revive anything or rewind expiry.
	c := l.open()
	l.now = l.now.Add(-time.Hour)
	l.ok(put("x", "y"))
	if sm.meta.GetClockUnixNano() < l.now.Add(time.Hour).UnixNano() {
		t.Fatal("the log clock went back")
	}
	l.now = l.now.Add(time.Hour + 11*time.Second)
	r = l.do(&kvpb.KeepAliveRequest{SessionId: c})
	wantCode(t, r.Err, ErrSessionExpired)

	// Unknown and closed sessions are refused alike.
	d := l.open()
	l.ok(&kvpb.CloseSessionRequest{SessionId: d})
	l.ok(&kvpb.CloseSessionRequest{SessionId: d}) // idempotent
	wantCode(t, l.do(sput(hdr(d, 1, 1), "k", "w")).Err, ErrSessionExpired)
	wantCode(t, l.do(sput(hdr(12345, 1, 1), "k", "w")).Err, ErrSessionExpired)
	if v, _, _ := get(t, sm, "k"); v != "v" {
		t.Fatalf("k = %q", v)
	}
}

// sput is a put in a session.
func sput(h *kvpb.WriteHeader, k, v string) *kvpb.PutRequest {
	return &kvpb.PutRequest{Header: h, Key: []byte(k), Value: []byte(v)}
}

func TestSessionCaps(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	l.ok(&kvpb.Limits{MaxSessions: 2, MaxPendingPerSession: 3, SessionTtlMs: 1000})

	a := l.open()
	l.open()
	r := l.do(&kvpb.OpenSessionRequest{})
	wantCode(t, r.Err, ErrTooManySessions)
	if e := r.Err.(*Error); e.Limit != "max_sessions" || e.LimitValue != 2 || e.Actual != 2 {
		t.Fatalf("too many sessions: %+v", e)
	}
	if e := r.Err.(*Error); e.Detail().GetCode().GRPCCode().String() != "ResourceExhausted" {
		t.Fatalf("maps to %v", e.Detail().GetCode().GRPCCode())
	}

	// Three results pending fill the window; a fourth new seq is refused,
	// not executed and not cached, and results are never dropped for it.
	for seq := uint64(1); seq <= 3; seq++ {
		l.ok(appendReq(hdr(a, seq, 1), "log", "x"))
	}
	r = l.do(appendReq(hdr(a, 4, 1), "log", "y"))
	wantCode(t, r.Err, ErrTooManyPending)
	if e := r.Err.(*Error); e.Limit != "max_pending_per_session" || e.LimitValue != 3 {
		t.Fatalf("too many pending: %+v", e)
	}
	if v, _, _ := get(t, sm, "log"); v != "xxx" {
		t.Fatalf("log = %q", v)
	}
	// Retries of pending seqs still answer from the cache.
	if dup := l.do(appendReq(hdr(a, 2, 1), "log", "x")); !dup.Duplicate {
		t.Fatalf("retry while full: %+v", dup)
	}
	// Acknowledging makes room; the same seq 4 then executes once.
	r = l.do(appendReq(hdr(a, 4, 3), "log", "y"))
	if r.Err != nil || r.Duplicate {
		t.Fatalf("seq 4 after ack: %+v", r)
	}
	if v, _, _ := get(t, sm, "log"); v != "xxxy" {
		t.Fatalf("log = %q", v)
	}

	// An expired session frees its slot.
	l.now = l.now.Add(2 * time.Second)
	l.open()
	if sm.sessions.len() != 1 {
		t.Fatalf("%d sessions, want 1", sm.sessions.len())
	}
}

// Unsessioned writes are plain at-least-once: applied once per delivery.
func TestNoSession(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	l.ok(appendReq(nil, "log", "a"))
	r := l.do(appendReq(nil, "log", "a"))
	if r.Duplicate || r.Err != nil {
		t.Fatalf("%+v", r)
	}
	if v, _, _ := get(t, sm, "log"); v != "aa" {
		t.Fatalf("log = %q", v)
	}
}

package kv

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// t0 is the log clock's start in tests.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func openMem(t testing.TB, fs vfs.FS, mod ...func(*Config)) *StateMachine {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	cfg := Config{Dir: "kv", FS: fs, CacheSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)}
	for _, m := range mod {
		m(&cfg)
	}
	sm, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return sm
}

// testLog feeds a state machine entries the way a replica would: one term,
// consecutive indexes, commands stamped with a clock the test moves.
type testLog struct {
	t     testing.TB
	sm    *StateMachine
	index raft.Index
	now   time.Time
}

func newLog(t testing.TB, sm *StateMachine) *testLog {
	return &testLog{t: t, sm: sm, index: sm.AppliedIndex(), now: t0}
}

// entry makes the next entry proposing req (a request or a *kvpb.Command).
func (l *testLog) entry(req proto.Message) raft.Entry {
	l.t.Helper()
	cmd, ok := req.(*kvpb.Command)
	if !ok {
		var err error
		if cmd, err = NewCommand(req, l.now); err != nil {
			l.t.Fatalf("NewCommand: %v", err)
		}
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		l.t.Fatalf("EncodeCommand: %v", err)
	}
	return l.raw(data)
}

func (l *testLog) raw(data []byte) raft.Entry {
	l.index++
	return raft.Entry{Term: 1, Index: l.index, Type: raft.EntryNormal, Data: data}
}

// do applies one request as one entry and returns its result.
func (l *testLog) do(req proto.Message) *Result {
	l.t.Helper()
	return l.applyOne(l.entry(req))
}

func (l *testLog) applyOne(e raft.Entry) *Result {
	l.t.Helper()
	res, err := l.sm.Apply([]raft.Entry{e})
	if err != nil {
		l.t.Fatalf("Apply: %v", err)
	}
	r, _ := res[0].(*Result)
	if r == nil {
		l.t.Fatalf("Apply returned %v, want a *Result", res[0])
	}
	return r
}

// ok applies req and fails the test unless it succeeded.
func (l *testLog) ok(req proto.Message) proto.Message {
	l.t.Helper()
	r := l.do(req)
	if r.Err != nil {
		l.t.Fatalf("%T: %v", req, r.Err)
	}
	return r.Response
}

func (l *testLog) open() uint64 {
	l.t.Helper()
	return l.ok(&kvpb.OpenSessionRequest{}).(*kvpb.OpenSessionResponse).GetSessionId()
}

func hdr(session, seq, ack uint64) *kvpb.WriteHeader {
	return &kvpb.WriteHeader{SessionId: session, Seq: seq, LowestUnackedSeq: ack}
}

func put(k, v string) *kvpb.PutRequest {
	return &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)}
}

func (l *testLog) put(k, v string) *kvpb.PutResponse {
	l.t.Helper()
	return l.ok(put(k, v)).(*kvpb.PutResponse)
}

// get reads k and returns its value and version ("", 0 when absent).
func get(t testing.TB, sm *StateMachine, k string) (string, uint64, bool) {
	t.Helper()
	resp, err := sm.Get([]byte(k))
	if err != nil {
		t.Fatalf("Get(%q): %v", k, err)
	}
	return string(resp.GetKv().GetValue()), resp.GetKv().GetVersion(), resp.GetFound()
}

// dump is the engine's whole contents, for comparing engines.
func dump(t testing.TB, sm *StateMachine) []string {
	t.Helper()
	it, err := sm.db.NewIter(&pebble.IterOptions{LowerBound: []byte{0}, UpperBound: keyspaceEnd})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		out = append(out, fmt.Sprintf("%q=%x", it.Key(), it.Value()))
	}
	return out
}

// dataDump is the user data only, as key=value@version lines.
func dataDump(t testing.TB, sm *StateMachine) []string {
	t.Helper()
	resp, err := sm.Scan(&kvpb.ScanRequest{Limit: DefaultMaxScanLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.GetKvs() {
		out = append(out, fmt.Sprintf("%s=%s@%d", kv.GetKey(), kv.GetValue(), kv.GetVersion()))
	}
	return out
}

func equalDumps(t testing.TB, what string, a, b []string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d keys vs %d keys", what, len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%s: first difference at %d:\n%s\n%s", what, i, a[i], b[i])
		}
	}
}

func wantCode(t testing.TB, err error, sentinel *Error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel.Code)
	}
	e, ok := err.(*Error)
	if !ok || e.Code != sentinel.Code {
		t.Fatalf("got %v (%T), want code %v", err, err, sentinel.Code)
	}
}

// resultString describes a result deterministically, for comparing runs.
func resultString(r any) string {
	res, _ := r.(*Result)
	if res == nil {
		return "<nil>"
	}
	if res.Err != nil {
		return fmt.Sprintf("err %v dup=%v", res.Err.(*Error).Detail(), res.Duplicate)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res.Response)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%T %x dup=%v", res.Response, b, res.Duplicate)
}

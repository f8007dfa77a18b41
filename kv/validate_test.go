package kv

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// Every bad command fails with its code, names the limit it broke, and
// applies nothing: only the applied index moves.
func TestValidation(t *testing.T) {
	big := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	cmd := func(m proto.Message) *kvpb.Command {
		c, err := NewCommand(m, t0)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name  string
		entry func(l *testLog) raft.Entry
		want  *Error
		limit string
	}{
		{"empty key", func(l *testLog) raft.Entry { return l.entry(put("", "v")) }, ErrEmptyKey, ""},
		{"key too large", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.PutRequest{Key: big(4097), Value: []byte("v")})
		}, ErrKeyTooLarge, "max_key_size"},
		{"largest key", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.DeleteRequest{Key: big(4096)})
		}, nil, ""},
		{"value too large", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.PutRequest{Key: []byte("k"), Value: big(1<<20 + 1)})
		}, ErrValueTooLarge, "max_value_size"},
		{"cas new value too large", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.CompareAndSwapRequest{Key: []byte("k"), Expected: &kvpb.CompareAndSwapRequest_ExpectedVersion{}, NewValue: big(1<<20 + 1)})
		}, ErrValueTooLarge, "max_value_size"},
		{"request too large", func(l *testLog) raft.Entry {
			ops := make([]*kvpb.BatchOp, 5)
			for i := range ops {
				ops[i] = &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("k"), Value: big(1 << 20)}}}
			}
			return l.entry(&kvpb.BatchRequest{Ops: ops})
		}, ErrRequestTooLarge, "max_request_size"},
		{"undecodable", func(l *testLog) raft.Entry { return l.raw([]byte{commandFormatProto, 0xff, 0xff}) }, ErrMalformed, ""},
		{"unknown format", func(l *testLog) raft.Entry { return l.raw([]byte{7}) }, ErrMalformed, ""},
		{"empty entry", func(l *testLog) raft.Entry { return l.raw(nil) }, ErrMalformed, ""},
		{"no operation", func(l *testLog) raft.Entry { return l.entry(&kvpb.Command{}) }, ErrMalformed, ""},
		{"header inside the command", func(l *testLog) raft.Entry {
			c := cmd(put("k", "v"))
			c.GetPut().Header = &kvpb.WriteHeader{}
			return l.entry(c)
		}, ErrMalformed, ""},
		{"seq without session", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.PutRequest{Header: hdr(0, 1, 0), Key: []byte("k")})
		}, ErrMalformed, ""},
		{"session without seq", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.PutRequest{Header: hdr(5, 0, 0), Key: []byte("k")})
		}, ErrMalformed, ""},
		{"cas without condition", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.CompareAndSwapRequest{Key: []byte("k"), NewValue: []byte("v")})
		}, ErrMalformed, ""},
		{"cas delete with a value", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.CompareAndSwapRequest{Key: []byte("k"), Expected: &kvpb.CompareAndSwapRequest_ExpectedVersion{}, NewValue: []byte("v"), Delete: true})
		}, ErrMalformed, ""},
		{"bad limits", func(l *testLog) raft.Entry {
			return l.entry(&kvpb.Limits{MaxKeySize: 1 << 30})
		}, ErrMalformed, ""},
		{"keep-alive without id", func(l *testLog) raft.Entry { return l.entry(&kvpb.KeepAliveRequest{}) }, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := openMem(t, nil)
			defer sm.Close()
			l := newLog(t, sm)
			l.put("k", "original")
			before := dataDump(t, sm)
			r := l.applyOne(tt.entry(l))
			if tt.want == nil {
				if r.Err != nil {
					t.Fatalf("unexpected error %v", r.Err)
				}
				return
			}
			wantCode(t, r.Err, tt.want)
			if e := r.Err.(*Error); tt.limit != "" && (e.Limit != tt.limit || !strings.Contains(e.Message, tt.limit) || e.Actual <= e.LimitValue) {
				t.Fatalf("error does not name limit %s: %+v", tt.limit, e)
			}
			if sm.AppliedIndex() != l.index {
				t.Fatalf("applied index %d, want %d", sm.AppliedIndex(), l.index)
			}
			equalDumps(t, "data", before, dataDump(t, sm))
			if d := r.Err.(*Error).Detail(); d.GetCode().GRPCCode().String() != "InvalidArgument" {
				t.Fatalf("%v maps to %v", d.GetCode(), d.GetCode().GRPCCode())
			}
		})
	}
}

// The server-side checks agree with Apply's.
func TestCheckCommandMatchesApply(t *testing.T) {
	lim := DefaultLimits
	c, _ := NewCommand(&kvpb.PutRequest{Key: []byte("k"), Value: make([]byte, 1<<20+1)}, t0)
	data, _ := EncodeCommand(c)
	err := lim.CheckCommand(c, len(data))
	wantCode(t, err, ErrRequestTooLarge.withCode(kvpb.ErrorCode_VALUE_TOO_LARGE))

	c, _ = NewCommand(&kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}, t0)
	data, _ = EncodeCommand(c)
	if err := lim.CheckCommand(c, len(data)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, lim.CheckCommand(c, 4<<20+1), ErrRequestTooLarge)
	wantCode(t, lim.CheckGet(&kvpb.GetRequest{}), ErrEmptyKey)
	wantCode(t, lim.CheckScan(&kvpb.ScanRequest{End: make([]byte, 4097)}), ErrKeyTooLarge)
	if _, err := NewCommand(&kvpb.GetRequest{}, t0); err == nil {
		t.Fatal("NewCommand accepted a read")
	}
}

func (e *Error) withCode(c kvpb.ErrorCode) *Error { e2 := *e; e2.Code = c; return &e2 }

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits.Validate(); err != nil {
		t.Fatal(err)
	}
	err := Limits{}.Validate()
	wantCode(t, err, ErrMalformed)
	for _, name := range []string{"max_key_size", "max_request_size", "max_value_size", "session_ttl", "max_sessions", "max_pending_per_session"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Validate of zero limits does not report %s: %v", name, err)
		}
	}
	if got := LimitsFromProto(nil); got != DefaultLimits {
		t.Fatalf("LimitsFromProto(nil) = %+v", got)
	}
	if got := LimitsFromProto(DefaultLimits.Proto()); got != DefaultLimits {
		t.Fatalf("round trip = %+v", got)
	}
}

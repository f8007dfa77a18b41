package server_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// dialKV returns a raw KV client of addr, closed at cleanup.
func dialKV(t *testing.T, addr string) kvpb.KVClient {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kvpb.NewKVClient(cc)
}

// TestBadInput sends every kind of over-limit and malformed request and
// checks that each is answered INVALID_ARGUMENT with the right code (and,
// for a limit, its name), and that nothing reaches the log.
func TestBadInput(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	lim := kv.DefaultLimits
	big := func(n uint64) []byte { return bytes.Repeat([]byte{'x'}, int(n)) }

	// Through the client, whose session is opened by a good write first.
	cl := c.Client()
	if _, err := cl.Put(ctx, []byte("ok"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		want  error
		limit string
	}{
		{"empty key", func() error { _, err := cl.Put(ctx, nil, []byte("v")); return err }, client.ErrEmptyKey, ""},
		{"key too large", func() error { _, err := cl.Put(ctx, big(lim.MaxKeySize+1), nil); return err }, client.ErrKeyTooLarge, "max_key_size"},
		{"value too large", func() error { _, err := cl.Put(ctx, []byte("k"), big(lim.MaxValueSize+1)); return err }, client.ErrValueTooLarge, "max_value_size"},
		{"get key too large", func() error { _, err := cl.Get(ctx, big(lim.MaxKeySize+1)); return err }, client.ErrKeyTooLarge, "max_key_size"},
		{"request too large", func() error {
			b := client.NewBatch()
			for i := range 5 {
				b.Put([]byte{'b', byte(i)}, big(lim.MaxValueSize-1024))
			}
			_, err := cl.Batch(ctx, b)
			return err
		}, client.ErrRequestTooLarge, "max_request_size"},
	} {
		err := tc.call()
		var ia *client.InvalidArgumentError
		if !errors.Is(err, tc.want) || !errors.As(err, &ia) || ia.Limit != tc.limit {
			t.Errorf("client %s: %v (limit %q), want %v naming %q", tc.name, err, limitOf(ia), tc.want, tc.limit)
		}
	}

	// Raw requests, for what the client never sends.
	kvc := dialKV(t, c.ClientAddr(lead))
	appliedBefore := appliedIndexes(ctx, t, c)
	for _, tc := range []struct {
		name  string
		call  func() error
		code  kvpb.ErrorCode
		limit string
	}{
		{"put empty key", func() error { _, err := kvc.Put(ctx, &kvpb.PutRequest{Value: []byte("v")}); return err }, kvpb.ErrorCode_EMPTY_KEY, ""},
		{"put key too large", func() error {
			_, err := kvc.Put(ctx, &kvpb.PutRequest{Key: big(lim.MaxKeySize + 1)})
			return err
		}, kvpb.ErrorCode_KEY_TOO_LARGE, "max_key_size"},
		{"put value too large", func() error {
			_, err := kvc.Put(ctx, &kvpb.PutRequest{Key: []byte("k"), Value: big(lim.MaxValueSize + 1)})
			return err
		}, kvpb.ErrorCode_VALUE_TOO_LARGE, "max_value_size"},
		{"delete empty key", func() error { _, err := kvc.Delete(ctx, &kvpb.DeleteRequest{}); return err }, kvpb.ErrorCode_EMPTY_KEY, ""},
		{"cas without a condition", func() error {
			_, err := kvc.CompareAndSwap(ctx, &kvpb.CompareAndSwapRequest{Key: []byte("k"), NewValue: []byte("v")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"cas with delete and a value", func() error {
			_, err := kvc.CompareAndSwap(ctx, &kvpb.CompareAndSwapRequest{Key: []byte("k"),
				Expected: &kvpb.CompareAndSwapRequest_ExpectedVersion{ExpectedVersion: 0}, NewValue: []byte("v"), Delete: true})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"cas expected value too large", func() error {
			_, err := kvc.CompareAndSwap(ctx, &kvpb.CompareAndSwapRequest{Key: []byte("k"),
				Expected: &kvpb.CompareAndSwapRequest_ExpectedValue{ExpectedValue: big(lim.MaxValueSize + 1)}})
			return err
		}, kvpb.ErrorCode_VALUE_TOO_LARGE, "max_value_size"},
		{"cas new value too large", func() error {
			_, err := kvc.CompareAndSwap(ctx, &kvpb.CompareAndSwapRequest{Key: []byte("k"),
				Expected: &kvpb.CompareAndSwapRequest_ExpectedVersion{}, NewValue: big(lim.MaxValueSize + 1)})
			return err
		}, kvpb.ErrorCode_VALUE_TOO_LARGE, "max_value_size"},
		{"append empty key", func() error { _, err := kvc.Append(ctx, &kvpb.AppendRequest{Suffix: []byte("s")}); return err }, kvpb.ErrorCode_EMPTY_KEY, ""},
		{"append suffix too large", func() error {
			_, err := kvc.Append(ctx, &kvpb.AppendRequest{Key: []byte("k"), Suffix: big(lim.MaxValueSize + 1)})
			return err
		}, kvpb.ErrorCode_VALUE_TOO_LARGE, "max_value_size"},
		{"empty batch", func() error { _, err := kvc.Batch(ctx, &kvpb.BatchRequest{}); return err }, kvpb.ErrorCode_MALFORMED, ""},
		{"batch op without an operation", func() error {
			_, err := kvc.Batch(ctx, &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{{}}})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"batch op with a header", func() error {
			_, err := kvc.Batch(ctx, &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{
				Header: &kvpb.WriteHeader{}, Key: []byte("k")}}}}})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"batch op key too large", func() error {
			_, err := kvc.Batch(ctx, &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{
				{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("k")}}},
				{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: big(lim.MaxKeySize + 1)}}},
			}})
			return err
		}, kvpb.ErrorCode_KEY_TOO_LARGE, "max_key_size"},
		{"batch too large", func() error {
			req := &kvpb.BatchRequest{}
			for i := range 5 {
				req.Ops = append(req.Ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte{byte('a' + i)}, Value: big(lim.MaxValueSize - 1024)}}})
			}
			_, err := kvc.Batch(ctx, req)
			return err
		}, kvpb.ErrorCode_REQUEST_TOO_LARGE, "max_request_size"},
		{"seq without a session", func() error {
			_, err := kvc.Put(ctx, &kvpb.PutRequest{Header: &kvpb.WriteHeader{Seq: 1}, Key: []byte("k")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"session without a seq", func() error {
			_, err := kvc.Put(ctx, &kvpb.PutRequest{Header: &kvpb.WriteHeader{SessionId: 3}, Key: []byte("k")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"unknown group", func() error {
			_, err := kvc.Put(ctx, &kvpb.PutRequest{Header: &kvpb.WriteHeader{GroupId: 99}, Key: []byte("k")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"keep-alive without a session", func() error { _, err := kvc.KeepAlive(ctx, &kvpb.KeepAliveRequest{}); return err }, kvpb.ErrorCode_MALFORMED, ""},
		{"close without a session", func() error { _, err := kvc.CloseSession(ctx, &kvpb.CloseSessionRequest{}); return err }, kvpb.ErrorCode_MALFORMED, ""},
		{"get empty key", func() error { _, err := kvc.Get(ctx, &kvpb.GetRequest{}); return err }, kvpb.ErrorCode_EMPTY_KEY, ""},
		{"get key too large", func() error { _, err := kvc.Get(ctx, &kvpb.GetRequest{Key: big(lim.MaxKeySize + 1)}); return err }, kvpb.ErrorCode_KEY_TOO_LARGE, "max_key_size"},
		{"get unknown consistency", func() error {
			_, err := kvc.Get(ctx, &kvpb.GetRequest{Header: &kvpb.ReadHeader{Consistency: 99}, Key: []byte("k")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
		{"scan start too large", func() error { _, err := kvc.Scan(ctx, &kvpb.ScanRequest{Start: big(lim.MaxKeySize + 1)}); return err }, kvpb.ErrorCode_KEY_TOO_LARGE, "max_key_size"},
		{"scan end too large", func() error { _, err := kvc.Scan(ctx, &kvpb.ScanRequest{End: big(lim.MaxKeySize + 1)}); return err }, kvpb.ErrorCode_KEY_TOO_LARGE, "max_key_size"},
		{"scan forged continuation", func() error {
			_, err := kvc.Scan(ctx, &kvpb.ScanRequest{Start: []byte("a"), End: []byte("b"), Continuation: []byte("zz")})
			return err
		}, kvpb.ErrorCode_MALFORMED, ""},
	} {
		err := tc.call()
		d := kvpb.DetailOf(err)
		if status.Code(err) != codes.InvalidArgument || d.GetCode() != tc.code || d.GetLimit() != tc.limit ||
			(tc.limit != "" && (!strings.Contains(d.GetMessage(), tc.limit) || d.GetActual() <= d.GetLimitValue())) {
			t.Errorf("%s: %v (detail %v), want INVALID_ARGUMENT %v naming limit %q", tc.name, err, d, tc.code, tc.limit)
		}
	}

	// Far over the request limit: gRPC refuses it before reading it.
	huge := &kvpb.BatchRequest{}
	for i := range 9 {
		huge.Ops = append(huge.Ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte{byte('a' + i)}, Value: big(lim.MaxValueSize)}}})
	}
	if _, err := kvc.Batch(ctx, huge); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 9 MiB request: %v, want RESOURCE_EXHAUSTED from gRPC's receive limit", err)
	}

	// Nothing reached any log.
	if after := appliedIndexes(ctx, t, c); !equalMaps(after, appliedBefore) {
		t.Errorf("bad requests moved applied indexes from %v to %v", appliedBefore, after)
	}

	// An append that would grow a value past the limit is the one check
	// that needs the state: it is refused when applied, to no effect.
	if _, err := cl.Put(ctx, []byte("full"), big(lim.MaxValueSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Append(ctx, []byte("full"), []byte("x")); !errors.Is(err, client.ErrValueTooLarge) {
		t.Fatalf("append past the value limit: %v", err)
	}
	if got, err := cl.Get(ctx, []byte("full")); err != nil || uint64(len(got.Value)) != lim.MaxValueSize {
		t.Fatalf("after a refused append: %d bytes, %v", len(got.Value), err)
	}
}

func limitOf(e *client.InvalidArgumentError) string {
	if e == nil {
		return ""
	}
	return e.Limit
}

// appliedIndexes waits until every running node has applied the leader's
// commit index (a linearizable read on each), and returns their applied
// indexes.
func appliedIndexes(ctx context.Context, t *testing.T, c *testcluster.Cluster) map[raft.NodeID]raft.Index {
	t.Helper()
	out := map[raft.NodeID]raft.Index{}
	for _, id := range c.Running() {
		r := c.Node(id).Replica(server.DefaultGroup)
		if _, err := r.ReadIndex(ctx); err != nil {
			t.Fatalf("node %d: read index: %v", id, err)
		}
		out[id] = c.Node(id).StateMachine(server.DefaultGroup).AppliedIndex()
	}
	return out
}

func equalMaps[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

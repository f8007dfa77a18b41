package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/server"
)

// TestOperations runs every operation through the real client against a
// real 3-node cluster and checks the results and response headers.
func TestOperations(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()

	put, err := cl.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if put.Version == 0 || put.PrevVersion != 0 {
		t.Fatalf("put: version %d prev %d, want a version and no previous one", put.Version, put.PrevVersion)
	}
	if h := put.Header; h.Node != client.NodeID(lead) || h.Group != client.GroupID(server.DefaultGroup) ||
		h.AppliedIndex != client.Index(put.Version) || h.Term == 0 {
		t.Fatalf("put header %+v: want node %d (the leader), group %d, applied index = version %d, a term",
			h, lead, server.DefaultGroup, put.Version)
	}

	got, err := cl.Get(ctx, []byte("a"))
	if err != nil || string(got.Value) != "1" || got.Version != put.Version {
		t.Fatalf("get a = %+v, %v; want 1 at version %d", got, err, put.Version)
	}
	if got.Header.Node == 0 || got.Header.AppliedIndex < client.Index(put.Version) || got.Header.Term == 0 {
		t.Fatalf("get header %+v: want a node, applied index >= %d, a term", got.Header, put.Version)
	}
	for _, cons := range []client.Consistency{client.Linearizable, client.Lease, client.Serializable} {
		// Serializable reads go to any node, possibly a follower that has
		// not applied the put yet; a linearizable read first makes sure.
		if _, err := cl.Get(ctx, []byte("a")); err != nil {
			t.Fatal(err)
		}
		for range len(c.IDs()) {
			got, err := cl.Get(ctx, []byte("a"), client.WithConsistency(cons))
			if err != nil {
				t.Fatalf("get %v: %v", cons, err)
			}
			if cons != client.Serializable && string(got.Value) != "1" {
				t.Fatalf("get %v = %q, want 1", cons, got.Value)
			}
		}
	}
	// A follower refuses a write before proposing it, naming the leader
	// and its client address.
	follower := others(c.IDs(), lead)[0]
	_, err = dialKV(t, c.ClientAddr(follower)).Put(ctx, &kvpb.PutRequest{Key: []byte("a"), Value: []byte("f")})
	if d := kvpb.DetailOf(err); status.Code(err) != codes.Unavailable || d.GetCode() != kvpb.ErrorCode_NOT_LEADER ||
		d.GetLeaderId() != uint64(lead) || d.GetLeaderAddress() != c.ClientAddr(lead) {
		t.Fatalf("put on follower %d: %v (detail %v), want NOT_LEADER naming node %d at %s", follower, err, d, lead, c.ClientAddr(lead))
	}

	if _, err := cl.Get(ctx, []byte("missing")); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("get missing: %v, want ErrKeyNotFound", err)
	}

	// Compare-and-swap on value and on version; a failure reports the
	// current state.
	cas, err := cl.CompareAndSwap(ctx, []byte("a"), client.IfValue([]byte("1")), []byte("2"))
	if err != nil || cas.Version <= put.Version {
		t.Fatalf("cas on value: %+v, %v", cas, err)
	}
	_, err = cl.CompareAndSwap(ctx, []byte("a"), client.IfVersion(put.Version), []byte("3"))
	var casErr *client.CASFailedError
	if !errors.As(err, &casErr) || casErr.Current == nil || string(casErr.Current.Value) != "2" || casErr.Current.Version != cas.Version {
		t.Fatalf("cas on stale version: %v, want CASFailedError at 2/%d", err, cas.Version)
	}
	if _, err := cl.CompareAndSwap(ctx, []byte("new"), client.IfAbsent(), []byte("x")); err != nil {
		t.Fatalf("cas if absent: %v", err)
	}
	if _, err := cl.CompareAndDelete(ctx, []byte("new"), client.IfValue([]byte("x"))); err != nil {
		t.Fatalf("compare and delete: %v", err)
	}

	// Append.
	for i, part := range []string{"x", "yz", "w"} {
		app, err := cl.Append(ctx, []byte("log"), []byte(part))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if want := []uint64{1, 3, 4}[i]; app.Length != want {
			t.Fatalf("append %d: length %d, want %d", i, app.Length, want)
		}
	}
	if got, err := cl.Get(ctx, []byte("log")); err != nil || string(got.Value) != "xyzw" {
		t.Fatalf("get log = %+v, %v; want xyzw", got, err)
	}

	// Batch: atomic, all or nothing.
	b := client.NewBatch().
		Put([]byte("b1"), []byte("v1")).
		Put([]byte("b2"), []byte("v2")).
		Append([]byte("log"), []byte("!")).
		Delete([]byte("a"))
	res, err := cl.Batch(ctx, b)
	if err != nil || len(res.Results) != 4 {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	if _, err := cl.Get(ctx, []byte("a")); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("get a after the batch deleted it: %v", err)
	}
	failing := client.NewBatch().
		Put([]byte("b3"), []byte("v3")).
		CompareAndSwap([]byte("b1"), client.IfValue([]byte("wrong")), []byte("v"))
	if _, err := cl.Batch(ctx, failing); !errors.Is(err, client.ErrCASFailed) {
		t.Fatalf("failing batch: %v, want ErrCASFailed", err)
	}
	if _, err := cl.Get(ctx, []byte("b3")); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("a failed batch applied its put: %v", err)
	}

	// Delete.
	del, err := cl.Delete(ctx, []byte("b2"))
	if err != nil || !del.Deleted {
		t.Fatalf("delete: %+v, %v", del, err)
	}

	// Scan, in pages and whole.
	for i := range 25 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "s/%02d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	page, err := cl.Scan(ctx, []byte("s/"), []byte("s0"), 10)
	if err != nil || len(page.KVs) != 10 || len(page.Continuation) == 0 || string(page.KVs[0].Key) != "s/00" {
		t.Fatalf("scan page: %d kvs, continuation %q, %v", len(page.KVs), page.Continuation, err)
	}
	var keys [][]byte
	for kv, err := range cl.ScanAll(ctx, []byte("s/"), []byte("s0"), client.WithPageSize(7)) {
		if err != nil {
			t.Fatalf("scan all: %v", err)
		}
		keys = append(keys, kv.Key)
	}
	if len(keys) != 25 {
		t.Fatalf("scan all: %d keys, want 25", len(keys))
	}
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Fatalf("scan all out of order: %q then %q", keys[i-1], keys[i])
		}
	}
}

package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// TestMinorityPartition cuts the leader off from the others: neither it
// nor any node of the minority completes a write or serves a linearizable
// read, while the majority elects a leader and goes on. When the
// partition heals, the minority catches up and the write it never
// completed is not there.
func TestMinorityPartition(t *testing.T) {
	c, oldLead := startCluster(t, testcluster.Options{Nodes: 5})
	ctx := testContext(t)
	cl := c.Client()
	if _, err := cl.Put(ctx, []byte("k"), []byte("before")); err != nil {
		t.Fatal(err)
	}
	// Make sure every node has applied it before the cut, so that the
	// minority's serializable reads below have something to show.
	appliedIndexes(ctx, t, c)

	minority := []raft.NodeID{oldLead, others(c.IDs(), oldLead)[0]}
	majority := others(others(c.IDs(), oldLead), minority[1])
	c.Partition(minority, majority)

	c.WaitLeader(ctx, server.DefaultGroup, majority...)
	majorityClient := c.ClientOf(endpointsOf(c, majority))
	if _, err := majorityClient.Put(ctx, []byte("k"), []byte("majority")); err != nil {
		t.Fatalf("majority write: %v", err)
	}

	// Raw requests to each node of the minority, each with a deadline of
	// several election timeouts: a write must never complete, nor a
	// linearizable read; a serializable read is served, stale.
	short := time.Second
	for _, id := range minority {
		kvc := dialKV(t, c.ClientAddr(id))
		wctx, cancel := context.WithTimeout(ctx, short)
		_, err := kvc.Put(wctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("minority")})
		cancel()
		if err == nil {
			t.Fatalf("node %d in the minority completed a write", id)
		}
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
			t.Fatalf("node %d: minority write: %v, want DEADLINE_EXCEEDED or UNAVAILABLE", id, err)
		}
		rctx, cancel := context.WithTimeout(ctx, short)
		_, err = kvc.Get(rctx, &kvpb.GetRequest{Key: []byte("k")})
		cancel()
		if err == nil {
			t.Fatalf("node %d in the minority served a linearizable read", id)
		}
		got, err := kvc.Get(ctx, &kvpb.GetRequest{Key: []byte("k"), Header: &kvpb.ReadHeader{Consistency: kvpb.Consistency_SERIALIZABLE}})
		if err != nil || string(got.GetKv().GetValue()) != "before" {
			t.Fatalf("node %d: serializable read in the minority: %v, %v; want the stale value", id, got, err)
		}
		if got.GetHeader().GetNodeId() != uint64(id) {
			t.Fatalf("node %d answered with header %v", id, got.GetHeader())
		}
	}
	// The client, given only the minority's endpoints, gives up.
	minorityClient := c.ClientOf(endpointsOf(c, minority), func(cfg *client.Config) {
		cfg.AttemptTimeout = 200 * time.Millisecond
		cfg.RequestTimeout = time.Second
	})
	if _, err := minorityClient.Put(ctx, []byte("k2"), []byte("minority")); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("client write to the minority: %v, want ErrUnavailable", err)
	}
	if _, err := minorityClient.Get(ctx, []byte("k")); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("client read from the minority: %v, want ErrUnavailable", err)
	}

	c.Heal()
	last, err := majorityClient.Put(ctx, []byte("k3"), []byte("healed"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range minority {
		c.WaitApplied(ctx, id, server.DefaultGroup, raft.Index(last.Header.AppliedIndex))
		sm := c.Node(id).StateMachine(server.DefaultGroup)
		if got, err := sm.Get([]byte("k")); err != nil || string(got.GetKv().GetValue()) != "majority" {
			t.Fatalf("node %d after healing: k = %v, %v; want the majority's write", id, got, err)
		}
		if got, err := sm.Get([]byte("k2")); err != nil || got.GetFound() {
			t.Fatalf("node %d after healing: the minority's unacknowledged write k2 is there: %v, %v", id, got, err)
		}
	}
}

func endpointsOf(c *testcluster.Cluster, ids []raft.NodeID) []string {
	var eps []string
	for _, id := range ids {
		eps = append(eps, c.ClientAddr(id))
	}
	return eps
}

package server_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// Every test stops what it starts; goleak fails the package otherwise.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testContext is a context for one test step: generous, so that a slow
// race-enabled run on two cores does not fail on time, yet bounded.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startCluster starts a 3-node cluster and waits for a leader.
func startCluster(t *testing.T, opts testcluster.Options) (*testcluster.Cluster, raft.NodeID) {
	t.Helper()
	c := testcluster.Start(t, opts)
	lead := c.WaitLeader(testContext(t), server.DefaultGroup)
	return c, lead
}

// others returns the IDs of ids other than id.
func others(ids []raft.NodeID, id raft.NodeID) []raft.NodeID {
	var out []raft.NodeID
	for _, o := range ids {
		if o != id {
			out = append(out, o)
		}
	}
	return out
}

package server_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// TestLeaderFailover stops the leader (as a crash: no hand-off) and checks
// that writes go on at a new leader, and that the old leader, restarted,
// catches up with what it missed.
func TestLeaderFailover(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()

	for i := range 10 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(lead)
	var last *client.PutResult
	for i := range 10 {
		var err error
		if last, err = cl.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("after")); err != nil {
			t.Fatalf("put after the leader stopped: %v", err)
		}
	}
	newLead := c.WaitLeader(ctx, server.DefaultGroup)
	if newLead == lead {
		t.Fatalf("node %d still leads after it stopped", lead)
	}
	if last.Header.Node == client.NodeID(lead) || last.Header.Node == 0 {
		t.Fatalf("the last put was answered by node %d; node %d is stopped", last.Header.Node, lead)
	}

	c.Restart(lead)
	c.WaitApplied(ctx, lead, server.DefaultGroup, raft.Index(last.Header.AppliedIndex))
	sm := c.Node(lead).StateMachine(server.DefaultGroup)
	for i := range 10 {
		got, err := sm.Get(fmt.Appendf(nil, "k%d", i))
		if err != nil || string(got.GetKv().GetValue()) != "after" {
			t.Fatalf("restarted node: k%d = %v, %v; want after", i, got, err)
		}
	}
}

// TestRestartCatchesUpBySnapshot stops a follower, writes enough that the
// others compact their logs past what it has, and checks that it catches
// up by a snapshot when restarted, and that logs stay bounded.
func TestRestartCatchesUpBySnapshot(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.SnapshotEvery = 20
		cfg.CompactionMargin = 5
	}})
	ctx := testContext(t)
	cl := c.Client()
	follower := others(c.IDs(), lead)[0]
	c.Stop(follower)

	var last *client.PutResult
	for i := range 120 {
		var err error
		if last, err = cl.Put(ctx, fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.Node(lead).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gs := st.GetGroups()[0]
	if gs.GetSnapshotIndex() == 0 || gs.GetFirstIndex() <= 2 || gs.GetSnapshotBytes() == 0 {
		t.Fatalf("leader status %v: want a snapshot and a compacted log", gs)
	}
	if n := gs.GetLastIndex() - gs.GetFirstIndex(); n > 20+5+10 {
		t.Fatalf("leader keeps %d entries; the policy bounds it near 25", n)
	}

	c.Restart(follower)
	c.WaitApplied(ctx, follower, server.DefaultGroup, raft.Index(last.Header.AppliedIndex))
	sm := c.Node(follower).StateMachine(server.DefaultGroup)
	for i := range 120 {
		got, err := sm.Get(fmt.Appendf(nil, "k%03d", i))
		if err != nil || string(got.GetKv().GetValue()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("caught-up follower: k%03d = %v, %v", i, got, err)
		}
	}
	fst, err := c.Node(follower).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fg := fst.GetGroups()[0]; fg.GetSnapshotIndex() == 0 {
		t.Fatalf("follower status %v: it should have installed a snapshot", fg)
	}
}

// TestWholeClusterRestart stops every node and starts them again: the data
// is there, from each node's own disk, and the cluster serves writes.
func TestWholeClusterRestart(t *testing.T) {
	c, _ := startCluster(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.SnapshotEvery = 30
		cfg.CompactionMargin = 5
	}})
	ctx := testContext(t)
	cl := c.Client()
	for i := range 50 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "k%02d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	applied := map[raft.NodeID]uint64{}
	for _, id := range c.IDs() {
		applied[id] = uint64(c.Node(id).StateMachine(server.DefaultGroup).AppliedIndex())
		c.Stop(id)
	}
	for _, id := range c.IDs() {
		c.Restart(id)
		// The engine is where it was: nothing was lost or rebuilt.
		if got := uint64(c.Node(id).StateMachine(server.DefaultGroup).AppliedIndex()); got < applied[id] {
			t.Fatalf("node %d restarted at applied index %d, below the %d it had", id, got, applied[id])
		}
	}
	c.WaitLeader(ctx, server.DefaultGroup)
	for i := range 50 {
		got, err := cl.Get(ctx, fmt.Appendf(nil, "k%02d", i))
		if err != nil || string(got.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("after restart: k%02d = %+v, %v", i, got, err)
		}
	}
	if _, err := cl.Put(ctx, []byte("after"), []byte("restart")); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
}

// TestShutdownHandsOffLeadership shuts the leader down gracefully: another
// node takes over and writes go on.
func TestShutdownHandsOffLeadership(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	if _, err := cl.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.Shutdown(lead)
	newLead := c.WaitLeader(ctx, server.DefaultGroup)
	if newLead == lead {
		t.Fatalf("node %d leads after its shutdown", lead)
	}
	if _, err := cl.Put(ctx, []byte("k"), []byte("v2")); err != nil {
		t.Fatalf("put after shutdown: %v", err)
	}
	st, err := c.Node(newLead).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.GetGroups()[0].GetRole(); r != adminpb.Role_LEADER {
		t.Fatalf("new leader's status says %v", r)
	}
}

// TestWipedNodeRejoins wipes a follower's data directory (the repair path
// for damaged data) and restarts it with Join: it starts empty, without
// bootstrapping, and catches up from the others by a snapshot.
func TestWipedNodeRejoins(t *testing.T) {
	join := map[raft.NodeID]bool{}
	c, lead := startCluster(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.Join = join[cfg.NodeID]
		cfg.SnapshotEvery = 20
		cfg.CompactionMargin = 5
	}})
	ctx := testContext(t)
	cl := c.Client()
	put := func(n int) *client.PutResult {
		var last *client.PutResult
		for i := range n {
			var err error
			if last, err = cl.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		return last
	}
	put(10)
	follower := others(c.IDs(), lead)[0]
	c.Stop(follower)
	// The others compact their logs past what the follower had: the
	// leader must send it a snapshot. (Were the entries still in the
	// leader's log, the rejoin would stall: see TestWipedNodeRejoinsFromLog.)
	put(60)
	if err := os.RemoveAll(c.DataDir(follower)); err != nil {
		t.Fatal(err)
	}
	join[follower] = true
	c.Restart(follower)
	last := put(5)
	c.WaitApplied(ctx, follower, server.DefaultGroup, raft.Index(last.Header.AppliedIndex))
	sm := c.Node(follower).StateMachine(server.DefaultGroup)
	for i := range 60 {
		if got, err := sm.Get(fmt.Appendf(nil, "k%d", i)); err != nil || !got.GetFound() {
			t.Fatalf("rejoined node: k%d = %v, %v", i, got, err)
		}
	}
}

// TestWipedNodeRejoinsFromLog is TestWipedNodeRejoins when the leader
// still holds every entry the wiped follower had acknowledged. It stalls
// today: the leader keeps the follower's old Progress.Match and never
// probes below it (raft's MaybeDecrTo keeps Next above Match), so the
// follower rejects the same append forever. Skipped until the raft core
// treats a rejection hint below Match as a follower that lost its log.
func TestWipedNodeRejoinsFromLog(t *testing.T) {
	join := map[raft.NodeID]bool{}
	c, lead := startCluster(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.Join = join[cfg.NodeID]
	}})
	ctx := testContext(t)
	cl := c.Client()
	for i := range 10 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	follower := others(c.IDs(), lead)[0]
	c.Stop(follower)
	if err := os.RemoveAll(c.DataDir(follower)); err != nil {
		t.Fatal(err)
	}
	join[follower] = true
	c.Restart(follower)
	last, err := cl.Put(ctx, []byte("last"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(ctx, follower, server.DefaultGroup, raft.Index(last.Header.AppliedIndex))
}

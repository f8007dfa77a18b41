package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/storage/vfs"
)

// These tests drive the storage failpoints (vfs.Faulty under every
// group's log and snapshot files) through the Admin service, as a chaos
// runner does, and check what clients see.

var (
	fullDisk    = &adminpb.DiskFaults{NoSpace: true}
	healthyDisk = &adminpb.DiskFaults{}
)

// setDiskFaults sets node id's storage failpoints through the Admin
// service and checks that the answer echoes them.
func setDiskFaults(ctx context.Context, t *testing.T, c *testcluster.Cluster, id raft.NodeID, d *adminpb.DiskFaults) {
	t.Helper()
	resp, err := dialAdmin(t, c.ClientAddr(id)).SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: d})
	if err != nil {
		t.Fatalf("node %d: set disk faults %v: %v", id, d, err)
	}
	if !proto.Equal(resp.GetFaults(), d) {
		t.Fatalf("node %d: set disk faults %v: answered %v", id, d, resp.GetFaults())
	}
}

// ackLog records acknowledged writes: key to value, and the highest
// index at which one applied.
type ackLog struct {
	kvs  map[string]string
	last raft.Index
}

func newAckLog() *ackLog { return &ackLog{kvs: map[string]string{}} }

// put writes key=value through cl, which must succeed, and records it.
func (a *ackLog) put(ctx context.Context, t *testing.T, cl *client.Client, key, value string) *client.PutResult {
	t.Helper()
	res, err := cl.Put(ctx, []byte(key), []byte(value))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	a.kvs[key] = value
	a.last = max(a.last, raft.Index(res.Header.AppliedIndex))
	return res
}

// check reads every acknowledged write back: through cl (linearizable),
// and from every node's state machine once it has applied the last of
// them.
func (a *ackLog) check(ctx context.Context, t *testing.T, c *testcluster.Cluster, cl *client.Client) {
	t.Helper()
	for k, v := range a.kvs {
		got, err := cl.Get(ctx, []byte(k))
		if err != nil || string(got.Value) != v {
			t.Fatalf("linearizable read of acknowledged %s: %v, %v; want %q", k, got, err, v)
		}
	}
	for _, id := range c.IDs() {
		c.WaitApplied(ctx, id, server.DefaultGroup, a.last)
		sm := c.Node(id).StateMachine(server.DefaultGroup)
		for k, v := range a.kvs {
			got, err := sm.Get([]byte(k))
			if err != nil || string(got.GetKv().GetValue()) != v {
				t.Fatalf("node %d: acknowledged %s = %v, %v; want %q", id, k, got, err, v)
			}
		}
	}
}

// checkNoneStopped fails the test if a node failed or a replica stopped:
// a full or slow disk must do neither.
func checkNoneStopped(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	for _, id := range c.IDs() {
		n := c.Node(id)
		select {
		case <-n.Fatal():
			t.Fatalf("node %d failed: %v", id, n.Err())
		case <-n.Replica(server.DefaultGroup).Done():
			t.Fatalf("node %d: the replica stopped: %v", id, n.Replica(server.DefaultGroup).Err())
		default:
		}
	}
}

// lastIndex is the last index of node id's log, as its Status reports it
// (what its WAL holds).
func lastIndex(ctx context.Context, t *testing.T, c *testcluster.Cluster, id raft.NodeID) raft.Index {
	t.Helper()
	st, err := c.Node(id).Status(ctx)
	if err != nil {
		t.Fatalf("node %d: status: %v", id, err)
	}
	return raft.Index(st.GetGroups()[0].GetLastIndex())
}

// waitNotLeading waits until node id no longer believes it leads.
func waitNotLeading(ctx context.Context, t *testing.T, c *testcluster.Cluster, id raft.NodeID) {
	t.Helper()
	for {
		st, changed := c.Node(id).Replica(server.DefaultGroup).Leader()
		if st.Role != raft.Leader {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("node %d still leads: %+v", id, st)
		}
	}
}

// TestDiskFullLeader fills the leader's disk. Its followers can still
// write, so they commit what it holds; it hands them its leadership
// (replica's "Disk failures"), and clients' writes go on at the new
// leader: the client library retries the one write caught at the full
// leader, with the same session and seq, after its attempt timeout. No
// node stops, the full node's log takes nothing, and once space is freed
// it catches up: every acknowledged write is readable everywhere.
func TestDiskFullLeader(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	acked := newAckLog()
	for i := range 5 {
		acked.put(ctx, t, cl, fmt.Sprintf("before%d", i), "v")
	}
	setDiskFaults(ctx, t, c, lead, fullDisk)
	held := lastIndex(ctx, t, c, lead) // nothing more reaches its log
	if d := c.Node(lead).DiskFaults(); d != (vfs.DiskFaults{NoSpace: true}) {
		t.Fatalf("Node.DiskFaults() = %v", d)
	}
	for i := range 10 {
		res := acked.put(ctx, t, cl, fmt.Sprintf("during%d", i), "v")
		// Applying a write takes writing it: the full node cannot have
		// answered.
		if res.Header.Node == client.NodeID(lead) {
			t.Fatalf("write during%d was answered by node %d, whose disk is full", i, lead)
		}
	}
	waitNotLeading(ctx, t, c, lead)
	if got := lastIndex(ctx, t, c, lead); got != held {
		t.Fatalf("the full node's log went from index %d to %d: the failpoint missed the WAL", held, got)
	}
	if acked.last <= held {
		t.Fatalf("writes applied up to %d, not past what the full node holds (%d)", acked.last, held)
	}
	checkNoneStopped(t, c)

	setDiskFaults(ctx, t, c, lead, healthyDisk)
	for i := range 5 {
		acked.put(ctx, t, cl, fmt.Sprintf("after%d", i), "v")
	}
	acked.check(ctx, t, c, cl)
	checkNoneStopped(t, c)
}

// TestDiskFullEverywhere fills every node's disk. The leader keeps its
// leadership (no election can complete: no node can record a vote) and
// refuses writes; nothing is acknowledged, serializable reads still
// answer on every node, and once space is freed everything recovers.
//
// What a client sees: the first write, which the leader took into its
// core before its disk showed full, is held (it commits once space is
// freed); the leader refuses every later attempt before it enters the
// log, with UNAVAILABLE "the leader's disk is full; the write was not
// applied" (server/kvservice.go). The client library counts UNAVAILABLE
// as "may have executed", retries until the call's deadline, and then
// fails with an *OutcomeUnknownError matching ErrUnavailable. That is not
// excess caution: the refusal speaks for one attempt only, and a retry of
// the held write gets it too, though that write applies once space is
// freed. A definitive "not applied" answer here would be a lie the
// check after healing catches.
func TestDiskFullEverywhere(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	acked := newAckLog()
	for i := range 5 {
		acked.put(ctx, t, cl, fmt.Sprintf("before%d", i), "v")
	}
	for _, id := range c.IDs() {
		c.WaitApplied(ctx, id, server.DefaultGroup, acked.last)
	}
	held := map[raft.NodeID]raft.Index{}
	for _, id := range c.IDs() {
		setDiskFaults(ctx, t, c, id, fullDisk)
		held[id] = lastIndex(ctx, t, c, id) // nothing more reaches its log
	}

	// No write is acknowledged. A write refused for certain (not one
	// whose outcome is unknown) must never apply, even after healing.
	var refused []string
	for i := range 2 {
		k := fmt.Sprintf("during%d", i)
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := cl.Put(wctx, []byte(k), []byte("v"))
		cancel()
		if err == nil {
			t.Fatalf("write %s acknowledged by node %d with every disk full", k, res.Header.Node)
		}
		if !errors.Is(err, client.ErrOutcomeUnknown) {
			refused = append(refused, k) // must never apply
			continue
		}
		if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write %s with every disk full: %v; want an outcome unknown after the deadline", k, err)
		}
	}
	// The leader's own answer: the write never entered the log.
	_, err := dialKV(t, c.ClientAddr(lead)).OpenSession(ctx, &kvpb.OpenSessionRequest{})
	if d := kvpb.DetailOf(err); status.Code(err) != codes.Unavailable || d.GetCode() != kvpb.ErrorCode_UNAVAILABLE ||
		!strings.Contains(d.GetMessage(), "disk is full") {
		t.Fatalf("the full leader's answer to a write: %v; want UNAVAILABLE saying its disk is full", err)
	}

	// Serializable reads still answer, on every node.
	for _, id := range c.IDs() {
		rc := c.ClientOf([]string{c.ClientAddr(id)})
		for k, v := range acked.kvs {
			got, err := rc.Get(ctx, []byte(k), client.WithConsistency(client.Serializable))
			if err != nil || string(got.Value) != v {
				t.Fatalf("node %d: serializable read of %s with every disk full: %v, %v", id, k, got, err)
			}
		}
	}
	if now := c.WaitLeader(ctx, server.DefaultGroup); now != lead {
		t.Fatalf("leadership moved from %d to %d while every disk was full", lead, now)
	}
	for _, id := range c.IDs() {
		if got := lastIndex(ctx, t, c, id); got != held[id] {
			t.Fatalf("node %d: log went from %d to %d with its disk full", id, held[id], got)
		}
	}
	checkNoneStopped(t, c)

	for _, id := range c.IDs() {
		setDiskFaults(ctx, t, c, id, healthyDisk)
	}
	for i := range 5 {
		acked.put(ctx, t, cl, fmt.Sprintf("after%d", i), "v")
	}
	acked.check(ctx, t, c, cl)
	for _, k := range refused {
		if got, err := cl.Get(ctx, []byte(k)); !errors.Is(err, client.ErrKeyNotFound) {
			t.Fatalf("write %s was reported not applied, yet reads %v, %v", k, got, err)
		}
	}
	checkNoneStopped(t, c)
}

// TestDiskSlowLeader slows the leader's syncs: writes still succeed, and
// each takes at least the delay (the leader applies an entry only after
// its own synced write of it returns). Only the lower bound is asserted.
func TestDiskSlowLeader(t *testing.T) {
	const delay = 100 * time.Millisecond
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	acked := newAckLog()
	acked.put(ctx, t, cl, "before", "v")

	setDiskFaults(ctx, t, c, lead, &adminpb.DiskFaults{SyncDelayMs: uint32(delay / time.Millisecond)})
	for i := range 5 {
		start := time.Now()
		acked.put(ctx, t, cl, fmt.Sprintf("slow%d", i), "v")
		if d := time.Since(start); d < delay {
			t.Fatalf("write slow%d took %v with the leader's syncs delayed %v", i, d, delay)
		}
	}
	checkNoneStopped(t, c)

	setDiskFaults(ctx, t, c, lead, healthyDisk)
	acked.put(ctx, t, cl, "after", "v")
	acked.check(ctx, t, c, cl)
}

// TestAdminSetDiskFaults checks SetDiskFaults' answers: the faults in
// force, INVALID_ARGUMENT for a delay over the limit (nothing changes),
// what Status reports, and FAILED_PRECONDITION (as SetFaults) on a node
// without fault injection.
func TestAdminSetDiskFaults(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 1})
	ctx := testContext(t)
	adm := dialAdmin(t, c.ClientAddr(1))
	statusFaults := func() *adminpb.DiskFaults {
		t.Helper()
		st, err := adm.Status(ctx, &adminpb.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetDiskFaults()
	}
	if d := statusFaults(); d != nil {
		t.Fatalf("a fresh node reports disk faults %v", d)
	}

	want := &adminpb.DiskFaults{WriteDelayMs: 5, SyncDelayMs: 7, NoSpace: true}
	setDiskFaults(ctx, t, c, 1, want)
	if d := statusFaults(); !proto.Equal(d, want) {
		t.Fatalf("status reports %v; set %v", d, want)
	}
	if d := c.Node(1).DiskFaults(); d != (vfs.DiskFaults{WriteDelay: 5 * time.Millisecond, SyncDelay: 7 * time.Millisecond, NoSpace: true}) {
		t.Fatalf("Node.DiskFaults() = %v", d)
	}

	// Over the limit: refused, and nothing changes.
	limit := uint32(server.MaxDiskFaultDelay / time.Millisecond)
	for _, bad := range []*adminpb.DiskFaults{{WriteDelayMs: limit + 1}, {SyncDelayMs: 1 << 31}} {
		_, err := adm.SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "MaxDiskFaultDelay") {
			t.Fatalf("disk faults %v: %v; want INVALID_ARGUMENT naming the limit", bad, err)
		}
	}
	if err := c.Node(1).SetDiskFaults(vfs.DiskFaults{SyncDelay: -time.Second}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a negative delay: %v; want INVALID_ARGUMENT", err)
	}
	if d := statusFaults(); !proto.Equal(d, want) {
		t.Fatalf("after refused changes, status reports %v; want %v still", d, want)
	}

	// A sub-millisecond delay is reported rounded up, never as none.
	if err := c.Node(1).SetDiskFaults(vfs.DiskFaults{SyncDelay: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	if d := statusFaults(); !proto.Equal(d, &adminpb.DiskFaults{SyncDelayMs: 1}) {
		t.Fatalf("a 1µs sync delay is reported as %v", d)
	}
	setDiskFaults(ctx, t, c, 1, healthyDisk)
	if d := statusFaults(); d != nil {
		t.Fatalf("a healed node reports disk faults %v", d)
	}

	// Without fault injection: refused, with SetFaults' message.
	plain := testcluster.Start(t, testcluster.Options{Nodes: 1, Configure: func(cfg *server.Config) {
		cfg.EnableFaultInjection = false
	}})
	padm := dialAdmin(t, plain.ClientAddr(1))
	_, err := padm.SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: fullDisk})
	_, ferr := padm.SetFaults(ctx, &adminpb.SetFaultsRequest{})
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != status.Convert(ferr).Message() {
		t.Fatalf("set disk faults without fault injection: %v; want FAILED_PRECONDITION as SetFaults' %v", err, ferr)
	}
	if err := plain.Node(1).SetDiskFaults(vfs.DiskFaults{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Node.SetDiskFaults without fault injection: %v", err)
	}
	st, err := padm.Status(ctx, &adminpb.StatusRequest{})
	if err != nil || st.GetDiskFaults() != nil || st.GetFaultInjection() {
		t.Fatalf("status without fault injection: %v, %v", st, err)
	}
}

// TestStatusSlowDisk: a node whose disk takes seconds per fsync still
// answers Status promptly, with its replica's last published view marked
// busy, instead of waiting for the fsync to end.
func TestStatusSlowDisk(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	if _, err := cl.Put(ctx, []byte("before"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	setDiskFaults(ctx, t, c, lead, &adminpb.DiskFaults{SyncDelayMs: 3000})
	// A write makes the leader's goroutine fsync, for three seconds.
	done := make(chan error, 1)
	go func() {
		_, err := cl.Put(ctx, []byte("during"), []byte("v"))
		done <- err
	}()
	adm := dialAdmin(t, c.ClientAddr(lead))
	busy := false
	for deadline := time.Now().Add(10 * time.Second); !busy && time.Now().Before(deadline); {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := adm.Status(sctx, &adminpb.StatusRequest{})
		cancel()
		if err != nil {
			t.Fatalf("Status of the node with a slow disk: %v (it must answer within its bound)", err)
		}
		g := st.GetGroups()[0]
		if strings.HasPrefix(g.GetError(), "busy:") {
			busy = true
			if g.GetTerm() == 0 || g.GetRole() == adminpb.Role_ROLE_UNSPECIFIED || g.GetAppliedIndex() == 0 {
				t.Fatalf("the busy view lacks the published role, term or applied index: %v", g)
			}
			t.Logf("busy view: %v", g)
		}
	}
	if !busy {
		t.Fatal("Status never reported the replica busy while its fsyncs took three seconds")
	}
	setDiskFaults(ctx, t, c, lead, healthyDisk)
	if err := <-done; err != nil {
		t.Fatalf("the write during the slow fsync: %v", err)
	}
	st, err := adm.Status(ctx, &adminpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if e := st.GetGroups()[0].GetError(); e != "" {
		t.Fatalf("after healing, Status still says %q", e)
	}
}

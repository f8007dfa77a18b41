package server_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

func dialAdmin(t *testing.T, addr string) adminpb.AdminClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return adminpb.NewAdminClient(cc)
}

// TestAdminStatus checks what every node reports about itself and its
// group.
func TestAdminStatus(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	put, err := cl.Put(ctx, []byte("k"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	appliedIndexes(ctx, t, c)
	for _, id := range c.IDs() {
		st, err := dialAdmin(t, c.ClientAddr(id)).Status(ctx, &adminpb.StatusRequest{})
		if err != nil {
			t.Fatalf("node %d: status: %v", id, err)
		}
		if st.GetNodeId() != uint64(id) || st.GetClusterId() != 1 || st.GetClientAddress() != c.ClientAddr(id) ||
			st.GetPeerAddress() != c.Peers()[id].PeerAddr || !st.GetFaultInjection() || len(st.GetGroups()) != 1 {
			t.Fatalf("node %d: status %v", id, st)
		}
		g := st.GetGroups()[0]
		wantRole := adminpb.Role_FOLLOWER
		if id == lead {
			wantRole = adminpb.Role_LEADER
		}
		if g.GetGroupId() != uint64(server.DefaultGroup) || g.GetRole() != wantRole || g.GetLeaderId() != uint64(lead) ||
			g.GetLeaderAddress() != c.ClientAddr(lead) || g.GetTerm() == 0 ||
			g.GetCommitIndex() < uint64(put.Header.AppliedIndex) || g.GetAppliedIndex() < uint64(put.Header.AppliedIndex) ||
			g.GetLastIndex() < g.GetCommitIndex() || g.GetFirstIndex() == 0 || g.GetLogBytes() == 0 || g.GetLogSegments() == 0 ||
			fmt.Sprint(g.GetVoters()) != "[1 2 3]" {
			t.Fatalf("node %d: group status %v", id, g)
		}
	}
}

// TestAdminSetFaults cuts a follower off with the Admin service's fault
// rules and heals it, and checks that a node without fault injection
// refuses.
func TestAdminSetFaults(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	cl := c.Client()
	follower := others(c.IDs(), lead)[0]

	// Cut the follower off, both ways, on its side only.
	var rules []*adminpb.FaultRule
	for _, dir := range []adminpb.Direction{adminpb.Direction_OUTBOUND, adminpb.Direction_INBOUND} {
		rules = append(rules, &adminpb.FaultRule{Peer: 0, Direction: dir, Loss: 1})
	}
	adm := dialAdmin(t, c.ClientAddr(follower))
	resp, err := adm.SetFaults(ctx, &adminpb.SetFaultsRequest{Rules: rules})
	if err != nil || len(resp.GetRules()) != 2 {
		t.Fatalf("set faults: %v, %v", resp, err)
	}
	put, err := cl.Put(ctx, []byte("k"), []byte("while cut"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Node(follower).StateMachine(server.DefaultGroup).Get([]byte("k")); got.GetFound() {
		t.Fatalf("the cut follower applied a write")
	}
	st, err := adm.Status(ctx, &adminpb.StatusRequest{})
	if err != nil || len(st.GetFaults()) != 2 {
		t.Fatalf("status faults: %v, %v", st.GetFaults(), err)
	}

	// Bad rules change nothing.
	for _, bad := range [][]*adminpb.FaultRule{
		{{Peer: 1}},
		{{Peer: 1, Direction: adminpb.Direction_INBOUND, Loss: 2}},
		{{Peer: 1, Direction: adminpb.Direction_INBOUND}, {Peer: 1, Direction: adminpb.Direction_INBOUND}},
	} {
		if _, err := adm.SetFaults(ctx, &adminpb.SetFaultsRequest{Rules: bad}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad rules %v: %v, want INVALID_ARGUMENT", bad, err)
		}
	}

	if _, err := adm.SetFaults(ctx, &adminpb.SetFaultsRequest{}); err != nil {
		t.Fatalf("heal: %v", err)
	}
	c.WaitApplied(ctx, follower, server.DefaultGroup, raft.Index(put.Header.AppliedIndex))

	// A node without fault injection refuses.
	plain := testcluster.Start(t, testcluster.Options{Nodes: 1, Configure: func(cfg *server.Config) {
		cfg.EnableFaultInjection = false
	}})
	_, err = dialAdmin(t, plain.ClientAddr(1)).SetFaults(ctx, &adminpb.SetFaultsRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("set faults without fault injection: %v, want FAILED_PRECONDITION", err)
	}
}

// TestAdminSetLimits changes the group's limits through the Admin
// service: every replica then judges requests by the new limits.
func TestAdminSetLimits(t *testing.T) {
	c, lead := startCluster(t, testcluster.Options{})
	ctx := testContext(t)
	follower := others(c.IDs(), lead)[0]

	// A follower refuses, naming the leader.
	_, err := dialAdmin(t, c.ClientAddr(follower)).SetLimits(ctx, &adminpb.SetLimitsRequest{MaxKeySize: 8})
	if d := kvpb.DetailOf(err); d.GetCode() != kvpb.ErrorCode_NOT_LEADER || d.GetLeaderAddress() != c.ClientAddr(lead) {
		t.Fatalf("set limits on a follower: %v", err)
	}
	// Invalid limits are refused.
	_, err = dialAdmin(t, c.ClientAddr(lead)).SetLimits(ctx, &adminpb.SetLimitsRequest{MaxKeySize: 1 << 30})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid limits: %v", err)
	}
	resp, err := dialAdmin(t, c.ClientAddr(lead)).SetLimits(ctx, &adminpb.SetLimitsRequest{MaxKeySize: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.IDs() {
		c.WaitApplied(ctx, id, server.DefaultGroup, raft.Index(resp.GetAppliedIndex()))
		if got := c.Node(id).StateMachine(server.DefaultGroup).Limits().MaxKeySize; got != 8 {
			t.Fatalf("node %d: max_key_size %d, want 8", id, got)
		}
	}
	cl := c.Client()
	_, err = cl.Put(ctx, []byte("123456789"), nil)
	var ia *client.InvalidArgumentError
	if !errors.As(err, &ia) || ia.Limit != "max_key_size" || ia.LimitValue != 8 {
		t.Fatalf("put of a 9-byte key: %v", err)
	}
}

// TestInitialLimits starts a cluster whose nodes are configured with
// initial limits: the first leader gives them to the group.
func TestInitialLimits(t *testing.T) {
	want := kv.DefaultLimits
	want.MaxKeySize = 16
	c, lead := startCluster(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.InitialLimits = &want
	}})
	ctx := testContext(t)
	r := c.Node(lead).Replica(server.DefaultGroup)
	sm := c.Node(lead).StateMachine(server.DefaultGroup)
	// The leader proposes them once it has applied its term's first entry;
	// wait for each entry it applies until they are in force.
	for sm.Limits() != want {
		if err := r.WaitApplied(ctx, sm.AppliedIndex()+1); err != nil {
			t.Fatalf("waiting for the initial limits: %v (limits %+v)", err, sm.Limits())
		}
	}
}

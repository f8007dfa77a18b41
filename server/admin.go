package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// adminService is the Admin gRPC service.
type adminService struct {
	adminpb.UnimplementedAdminServer
	n *Node
}

func (s *adminService) Status(ctx context.Context, _ *adminpb.StatusRequest) (*adminpb.StatusResponse, error) {
	return s.n.Status(ctx)
}

func (s *adminService) SetFaults(_ context.Context, req *adminpb.SetFaultsRequest) (*adminpb.SetFaultsResponse, error) {
	rules, err := s.n.SetFaults(req.GetRules())
	if err != nil {
		return nil, err
	}
	return &adminpb.SetFaultsResponse{Rules: rules}, nil
}

func (s *adminService) SetDiskFaults(_ context.Context, req *adminpb.SetDiskFaultsRequest) (*adminpb.SetDiskFaultsResponse, error) {
	f := req.GetFaults()
	d := vfs.DiskFaults{
		WriteDelay: time.Duration(f.GetWriteDelayMs()) * time.Millisecond,
		SyncDelay:  time.Duration(f.GetSyncDelayMs()) * time.Millisecond,
		NoSpace:    f.GetNoSpace(),
	}
	if err := s.n.SetDiskFaults(d); err != nil {
		return nil, err
	}
	return &adminpb.SetDiskFaultsResponse{Faults: diskFaultsProto(s.n.DiskFaults())}, nil
}

func (s *adminService) SetLimits(ctx context.Context, req *adminpb.SetLimitsRequest) (*adminpb.SetLimitsResponse, error) {
	g, err := s.n.route(req.GetGroupId())
	if err != nil {
		return nil, err
	}
	lim := kv.LimitsFromProto(&kvpb.Limits{
		MaxKeySize:           req.GetMaxKeySize(),
		MaxValueSize:         req.GetMaxValueSize(),
		MaxRequestSize:       req.GetMaxRequestSize(),
		SessionTtlMs:         req.GetSessionTtlMs(),
		MaxSessions:          req.GetMaxSessions(),
		MaxPendingPerSession: req.GetMaxPendingPerSession(),
	})
	index, err := s.n.setLimits(ctx, g, lim)
	if err != nil {
		return nil, err
	}
	return &adminpb.SetLimitsResponse{NodeId: uint64(s.n.cfg.NodeID), GroupId: uint64(g.spec.id), AppliedIndex: uint64(index)}, nil
}

// setLimits proposes lim as g's limits and returns the index at which they
// took effect. Errors are gRPC statuses.
func (n *Node) setLimits(ctx context.Context, g *group, lim kv.Limits) (raft.Index, error) {
	if err := lim.Validate(); err != nil {
		return 0, kvStatus(err)
	}
	if _, err := n.propose(ctx, g, lim.Proto()); err != nil {
		return 0, err
	}
	return g.sm.AppliedIndex(), nil
}

// Status reports the node and every group replica it hosts, as the Admin
// service's Status does. It needs no leader: it says what this node knows.
func (n *Node) Status(ctx context.Context) (*adminpb.StatusResponse, error) {
	resp := &adminpb.StatusResponse{
		NodeId:         uint64(n.cfg.NodeID),
		ClusterId:      n.cfg.ClusterID,
		PeerAddress:    n.cfg.Peers[n.cfg.NodeID].PeerAddr,
		ClientAddress:  n.cfg.Peers[n.cfg.NodeID].ClientAddr,
		Version:        version(),
		FaultInjection: n.faults != nil,
	}
	n.admin.Lock()
	for _, r := range n.admin.rules {
		resp.Faults = append(resp.Faults, proto.CloneOf(r))
	}
	if d := n.DiskFaults(); !d.IsZero() {
		resp.DiskFaults = diskFaultsProto(d)
	}
	n.admin.Unlock()
	for _, id := range n.Groups() {
		gs, err := n.groupStatus(ctx, n.byID[id])
		if err != nil {
			return nil, err
		}
		resp.Groups = append(resp.Groups, gs)
	}
	return resp, nil
}

// statusWait bounds how long Status waits for a replica's goroutine, which
// a slow disk can hold in an fsync for seconds: past it, Status reports
// what the replica last published (GroupStatus.error starts with
// busyReplica), so that an operator can still see a node whose disk is
// slow.
const statusWait = 500 * time.Millisecond

// busyReplica starts GroupStatus.error when Status reported a busy
// replica's last published view.
const busyReplica = "busy"

func (n *Node) groupStatus(ctx context.Context, g *group) (*adminpb.GroupStatus, error) {
	gs := &adminpb.GroupStatus{
		GroupId:  uint64(g.spec.id),
		StartKey: g.spec.start,
		EndKey:   g.spec.end,
	}
	rctx, cancel := context.WithTimeout(ctx, statusWait)
	st, err := g.r.Status(rctx)
	cancel()
	busy := false
	switch {
	case err == nil:
		gs.Role = roleProto(st.Role)
		gs.Term = uint64(st.Term)
		gs.LeaderId = uint64(st.Lead)
		gs.LeaderAddress = n.leaderAddr(st.Lead)
		gs.CommitIndex = uint64(st.Commit)
		gs.AppliedIndex = uint64(st.Applied)
		for _, v := range st.Config.Voters {
			gs.Voters = append(gs.Voters, uint64(v))
		}
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case rctx.Err() != nil:
		// The replica's goroutine is held up, typically in an fsync of a
		// slow disk: report its last published view rather than wait.
		busy = true
		ls, _ := g.r.Leader()
		gs.Role = roleProto(ls.Role)
		gs.Term = uint64(ls.Term)
		gs.LeaderId = uint64(ls.Lead)
		gs.LeaderAddress = n.leaderAddr(ls.Lead)
		gs.AppliedIndex = uint64(g.sm.AppliedIndex())
		gs.Error = fmt.Sprintf("%s: the replica did not answer within %v (is its disk slow?); role, term and leader are its last published view, applied index its state machine's; commit index, voters and log size are unknown",
			busyReplica, statusWait)
	default:
		// The replica stopped: say why, and what the disk holds.
		gs.Role = adminpb.Role_STOPPED
		gs.AppliedIndex = uint64(g.sm.AppliedIndex())
		if cause := g.r.Err(); cause != nil {
			gs.Error = cause.Error()
		} else {
			gs.Error = err.Error()
		}
	}
	if first, err := g.disk.Log.FirstIndex(); err == nil {
		gs.FirstIndex = uint64(first)
	}
	if last, err := g.disk.Log.LastIndex(); err == nil {
		gs.LastIndex = uint64(last)
	}
	if !busy { // Segments waits for the log's writer, which the busy replica may be
		for _, path := range g.disk.Log.Segments() {
			gs.LogSegments++
			if fi, err := os.Stat(path); err == nil {
				gs.LogBytes += uint64(fi.Size())
			}
		}
	}
	if meta, err := g.disk.Log.Snapshot(); err == nil && !meta.IsEmpty() {
		gs.SnapshotIndex, gs.SnapshotTerm = uint64(meta.Index), uint64(meta.Term)
		for _, info := range g.disk.Snapshots.Store().List() {
			if info.Index == meta.Index && info.Term == meta.Term {
				if fi, err := os.Stat(info.Path); err == nil {
					gs.SnapshotBytes = uint64(fi.Size())
				}
			}
		}
	}
	return gs, nil
}

func roleProto(r raft.Role) adminpb.Role {
	switch r {
	case raft.Follower:
		return adminpb.Role_FOLLOWER
	case raft.PreCandidate:
		return adminpb.Role_PRE_CANDIDATE
	case raft.Candidate:
		return adminpb.Role_CANDIDATE
	case raft.Leader:
		return adminpb.Role_LEADER
	}
	return adminpb.Role_ROLE_UNSPECIFIED
}

// SetFaults replaces every fault rule of the node's peer transport with
// rules (none: heal), as the Admin service's SetFaults does, and returns
// the rules in force. It fails with FAILED_PRECONDITION unless fault
// injection is enabled, and with INVALID_ARGUMENT for a bad rule (then
// nothing changes).
func (n *Node) SetFaults(rules []*adminpb.FaultRule) ([]*adminpb.FaultRule, error) {
	if n.faults == nil {
		return nil, errFaultInjectionDisabled()
	}
	type key struct {
		peer uint64
		dir  adminpb.Direction
	}
	seen := map[key]bool{}
	converted := make([]grpcnet.Rule, len(rules))
	dirs := make([]grpcnet.Direction, len(rules))
	for i, r := range rules {
		k := key{r.GetPeer(), r.GetDirection()}
		switch {
		case r.GetDirection() != adminpb.Direction_OUTBOUND && r.GetDirection() != adminpb.Direction_INBOUND:
			return nil, status.Errorf(codes.InvalidArgument, "server: fault rule %d: direction must be OUTBOUND or INBOUND", i)
		case r.GetLoss() < 0 || r.GetLoss() > 1 || r.GetDuplicate() < 0 || r.GetDuplicate() > 1:
			return nil, status.Errorf(codes.InvalidArgument, "server: fault rule %d: loss and duplicate are probabilities, in [0, 1]", i)
		case seen[k]:
			return nil, status.Errorf(codes.InvalidArgument, "server: fault rule %d: a second rule for peer %d %v", i, k.peer, k.dir)
		}
		seen[k] = true
		dirs[i] = grpcnet.Outbound
		if r.GetDirection() == adminpb.Direction_INBOUND {
			dirs[i] = grpcnet.Inbound
		}
		converted[i] = grpcnet.Rule{
			Loss:      r.GetLoss(),
			Duplicate: r.GetDuplicate(),
			Delay:     time.Duration(r.GetDelayMs()) * time.Millisecond,
			Jitter:    time.Duration(r.GetJitterMs()) * time.Millisecond,
		}
	}
	// Serialized, so that two calls never interleave their rules. Faults
	// takes only its own short lock.
	n.admin.Lock()
	defer n.admin.Unlock()
	n.faults.Heal()
	n.admin.rules = n.admin.rules[:0]
	for i, r := range rules {
		n.faults.Set(raft.NodeID(r.GetPeer()), dirs[i], converted[i])
		n.admin.rules = append(n.admin.rules, proto.CloneOf(r))
	}
	n.logger.Info("fault rules replaced", "rules", fmt.Sprint(n.admin.rules))
	out := make([]*adminpb.FaultRule, len(n.admin.rules))
	for i, r := range n.admin.rules {
		out[i] = proto.CloneOf(r)
	}
	return out, nil
}

// errFaultInjectionDisabled is SetFaults' and SetDiskFaults' answer on a
// node started without fault injection.
func errFaultInjectionDisabled() error {
	return status.Error(codes.FailedPrecondition,
		"server: fault injection is disabled on this node; start it with --enable-fault-injection (tests and chaos runs only)")
}

// MaxDiskFaultDelay is the longest write or sync delay SetDiskFaults
// accepts. A delayed call holds its group's run goroutine (and a stopping
// node) that long, so a typo of a few zeros must not wedge a node for
// hours.
const MaxDiskFaultDelay = 10 * time.Second

// SetDiskFaults replaces the storage failpoints of the node's Raft logs
// and snapshot files (zero: a healthy disk), as the Admin service's
// SetDiskFaults does, and logs the new ones. Every group on the node
// shares them, and they apply to files already open and to calls waiting
// out a delay (vfs.Faulty). The state machine's engine is not affected.
//
// It fails with FAILED_PRECONDITION unless fault injection is enabled,
// and with INVALID_ARGUMENT for a negative delay or one over
// MaxDiskFaultDelay (then nothing changes). The errors are gRPC statuses.
//
// What a full disk does to the groups is the replica's business (replica's
// doc, "Disk failures", and doc.go here): nothing is lost and no replica
// stops; a full leader refuses new writes with replica.ErrNoSpace, and
// hands its leadership to a follower once the followers have committed
// what it holds; everything resumes once space is freed.
func (n *Node) SetDiskFaults(d vfs.DiskFaults) error {
	if n.disk == nil {
		return errFaultInjectionDisabled()
	}
	for _, c := range []struct {
		name  string
		delay time.Duration
	}{{"write_delay", d.WriteDelay}, {"sync_delay", d.SyncDelay}} {
		if c.delay < 0 || c.delay > MaxDiskFaultDelay {
			return status.Errorf(codes.InvalidArgument, "server: disk faults: %s %v is outside [0, %v] (MaxDiskFaultDelay)", c.name, c.delay, MaxDiskFaultDelay)
		}
	}
	// Serialized with SetFaults, so that the log lines follow the order
	// in which the faults took effect.
	n.admin.Lock()
	defer n.admin.Unlock()
	n.disk.Set(d)
	n.logger.Warn("disk faults replaced: the groups' logs and snapshot files now see them", "disk_faults", d.String())
	return nil
}

// diskFaultsProto is d on the wire. A delay is rounded up to whole
// milliseconds, so that a non-zero one never reads as none.
func diskFaultsProto(d vfs.DiskFaults) *adminpb.DiskFaults {
	ms := func(t time.Duration) uint32 { return uint32((t + time.Millisecond - 1) / time.Millisecond) }
	return &adminpb.DiskFaults{WriteDelayMs: ms(d.WriteDelay), SyncDelayMs: ms(d.SyncDelay), NoSpace: d.NoSpace}
}

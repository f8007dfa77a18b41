package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

// kvService is the KV gRPC service. Its handlers run on gRPC's
// goroutines and only wait: on a replica's futures, reads and applied
// index, never on a lock of theirs.
//
// A write is checked against the group's replicated limits, turned into a
// kv command stamped with this node's wall clock (only a leader's proposal
// enters the log, so the stamp is a leader's), and proposed; the answer is
// the state machine's result. A read waits for the consistency level it
// asks for, then reads the local state machine.
type kvService struct {
	kvpb.UnimplementedKVServer
	n *Node
}

func (s *kvService) Get(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	g, err := s.n.route(req.GetHeader().GetGroupId(), req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := g.sm.Limits().CheckGet(req); err != nil {
		return nil, kvStatus(err)
	}
	if err := s.n.readBarrier(ctx, g, req.GetHeader().GetConsistency()); err != nil {
		return nil, err
	}
	resp, err := g.sm.Get(req.GetKey())
	if err != nil {
		return nil, kvStatus(err)
	}
	s.n.stamp(g, resp)
	return resp, nil
}

func (s *kvService) Scan(ctx context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	// A scan is served by the group of its start key. With one group
	// over the whole key space that is the whole range; a scan across
	// groups (continuing in the next one) comes with the placement work.
	g, err := s.n.route(req.GetHeader().GetGroupId(), req.GetStart())
	if err != nil {
		return nil, err
	}
	if err := g.sm.Limits().CheckScan(req); err != nil {
		return nil, kvStatus(err)
	}
	if err := s.n.readBarrier(ctx, g, req.GetHeader().GetConsistency()); err != nil {
		return nil, err
	}
	resp, err := g.sm.Scan(req)
	if err != nil {
		return nil, kvStatus(err)
	}
	s.n.stamp(g, resp)
	return resp, nil
}

func (s *kvService) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	return write[*kvpb.PutResponse](ctx, s.n, req.GetHeader().GetGroupId(), req, req.GetKey())
}

func (s *kvService) Delete(ctx context.Context, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	return write[*kvpb.DeleteResponse](ctx, s.n, req.GetHeader().GetGroupId(), req, req.GetKey())
}

func (s *kvService) CompareAndSwap(ctx context.Context, req *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	return write[*kvpb.CompareAndSwapResponse](ctx, s.n, req.GetHeader().GetGroupId(), req, req.GetKey())
}

func (s *kvService) Append(ctx context.Context, req *kvpb.AppendRequest) (*kvpb.AppendResponse, error) {
	return write[*kvpb.AppendResponse](ctx, s.n, req.GetHeader().GetGroupId(), req, req.GetKey())
}

func (s *kvService) Batch(ctx context.Context, req *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	keys := make([][]byte, 0, len(req.GetOps()))
	for _, op := range req.GetOps() {
		switch o := op.GetOp().(type) {
		case *kvpb.BatchOp_Put:
			keys = append(keys, o.Put.GetKey())
		case *kvpb.BatchOp_Delete:
			keys = append(keys, o.Delete.GetKey())
		case *kvpb.BatchOp_CompareAndSwap:
			keys = append(keys, o.CompareAndSwap.GetKey())
		case *kvpb.BatchOp_Append:
			keys = append(keys, o.Append.GetKey())
		}
	}
	return write[*kvpb.BatchResponse](ctx, s.n, req.GetHeader().GetGroupId(), req, keys...)
}

func (s *kvService) OpenSession(ctx context.Context, req *kvpb.OpenSessionRequest) (*kvpb.OpenSessionResponse, error) {
	return write[*kvpb.OpenSessionResponse](ctx, s.n, req.GetGroupId(), req)
}

func (s *kvService) KeepAlive(ctx context.Context, req *kvpb.KeepAliveRequest) (*kvpb.KeepAliveResponse, error) {
	return write[*kvpb.KeepAliveResponse](ctx, s.n, req.GetGroupId(), req)
}

func (s *kvService) CloseSession(ctx context.Context, req *kvpb.CloseSessionRequest) (*kvpb.CloseSessionResponse, error) {
	return write[*kvpb.CloseSessionResponse](ctx, s.n, req.GetGroupId(), req)
}

// write proposes req (a write or session request) to the group that owns
// keys (or groupID) and returns the state machine's response, of type T.
func write[T proto.Message](ctx context.Context, n *Node, groupID uint64, req proto.Message, keys ...[]byte) (T, error) {
	var zero T
	g, err := n.route(groupID, keys...)
	if err != nil {
		return zero, err
	}
	m, err := n.propose(ctx, g, req)
	if err != nil {
		return zero, err
	}
	resp, ok := m.(T)
	if !ok {
		return zero, status.Errorf(codes.Internal, "server: bug: %T answered with %T", req, m)
	}
	n.stamp(g, resp)
	return resp, nil
}

// propose checks req against g's limits, proposes it as a kv command and
// waits for its result. Errors are gRPC statuses (see proposeStatus).
func (n *Node) propose(ctx context.Context, g *group, req proto.Message) (proto.Message, error) {
	cmd, err := kv.NewCommand(req, time.Now())
	if err != nil {
		return nil, kvStatus(err)
	}
	data, err := kv.EncodeCommand(cmd)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "server: encode command: %v", err)
	}
	// Nothing that breaks a limit or is malformed reaches the log.
	if err := g.sm.Limits().CheckCommand(cmd, len(data)); err != nil {
		return nil, kvStatus(err)
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	p := g.r.ProposeAsync(ctx, data)
	res, err := p.Wait(ctx)
	if err != nil {
		return nil, n.proposeStatus(g, p, err)
	}
	r, ok := res.(*kv.Result)
	if !ok || r == nil {
		// Apply skips only entries it had applied before a restart, which
		// no proposal of this run can be.
		return nil, unavailable("the write's entry was applied without a result; its outcome is unknown")
	}
	if r.Err != nil {
		return nil, kvStatus(r.Err)
	}
	return r.Response, nil
}

// readBarrier waits until a read of g's state machine on this node meets
// the consistency level asked for.
func (n *Node) readBarrier(ctx context.Context, g *group, c kvpb.Consistency) error {
	var read func(context.Context) (raft.Index, error)
	switch c {
	case kvpb.Consistency_SERIALIZABLE:
		// Any replica's current state, possibly stale, never torn.
		return nil
	case kvpb.Consistency_LINEARIZABLE:
		// The leader's commit index, confirmed by a heartbeat round, once
		// applied here (a follower asks the leader).
		read = g.r.ReadIndex
	case kvpb.Consistency_LEASE:
		// The same without the heartbeat round while the leader's lease
		// holds (bounded clock drift, see raft.Config.MaxClockDriftTicks).
		read = g.r.LeaseRead
	default:
		return malformed("unknown consistency level %d", c)
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if _, err := read(ctx); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
		return unavailable("linearizable read: %v", err)
	}
	return nil
}

// requestContext bounds ctx by Config.RequestTimeout.
func (n *Node) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// proposeStatus turns a failed proposal into the answer the client needs:
// NOT_LEADER (naming the leader and its client address) only when the
// command never entered the log, so that the client may send it elsewhere
// knowing it did not run; UNAVAILABLE or DEADLINE_EXCEEDED once it may
// have (the client then retries with the same session and seq, which the
// state machine deduplicates).
func (n *Node) proposeStatus(g *group, p *replica.Proposal, err error) error {
	index, _ := p.Index()
	var nl *replica.NotLeaderError
	switch {
	case index == 0 && errors.As(err, &nl):
		return n.notLeader(g, nl.Leader)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, replica.ErrNotCommitted):
		return unavailable("the write lost its log position to another leader's entry and was not applied; retry it")
	case errors.Is(err, replica.ErrNoSpace):
		return unavailable("the leader's disk is full; the write was not applied")
	case errors.Is(err, replica.ErrStopped):
		return unavailable("the group's replica on node %d stopped; the write's outcome is unknown", n.cfg.NodeID)
	}
	return unavailable("%v", err)
}

// notLeader is the answer of a node that cannot serve a leader-only
// request of g: NOT_LEADER naming the leader (by ID and client address),
// or UNAVAILABLE when it knows of none.
func (n *Node) notLeader(g *group, lead raft.NodeID) error {
	if lead == raft.None || lead == n.cfg.NodeID {
		return (&kvpb.ErrorDetail{
			Code:    kvpb.ErrorCode_UNAVAILABLE,
			Message: fmt.Sprintf("node %d knows no leader of group %d (an election is under way, or it is cut off)", n.cfg.NodeID, g.spec.id),
		}).Err()
	}
	return (&kvpb.ErrorDetail{
		Code:          kvpb.ErrorCode_NOT_LEADER,
		Message:       fmt.Sprintf("node %d is not the leader of group %d; node %d is", n.cfg.NodeID, g.spec.id, lead),
		LeaderId:      uint64(lead),
		LeaderAddress: n.leaderAddr(lead),
	}).Err()
}

// route returns the hosted group that owns keys: group groupID if it is
// not 0, else the group of the first key (of the empty key, with no key).
// Every key must belong to it.
func (n *Node) route(groupID uint64, keys ...[]byte) (*group, error) {
	var g *group
	if groupID != 0 {
		if g = n.byID[replica.GroupID(groupID)]; g == nil {
			return nil, malformed("node %d hosts no group %d", n.cfg.NodeID, groupID)
		}
	} else {
		var first []byte
		if len(keys) > 0 {
			first = keys[0]
		}
		for _, h := range n.groups {
			if h.spec.contains(first) {
				g = h
				break
			}
		}
		if g == nil {
			return nil, unavailable("node %d hosts no group for key %q", n.cfg.NodeID, first)
		}
	}
	for _, k := range keys {
		if !g.spec.contains(k) {
			return nil, malformed("key %q is not in group %d's range: a request's keys must belong to one group", k, g.spec.id)
		}
	}
	return g, nil
}

// stamp fills in the response header: who answered, for which group, in
// which term. The applied index is the state machine's.
func (n *Node) stamp(g *group, resp proto.Message) {
	st, _ := g.r.Leader()
	h := headerOf(resp)
	if h == nil {
		return
	}
	h.NodeId = uint64(n.cfg.NodeID)
	h.GroupId = uint64(g.spec.id)
	h.Term = uint64(st.Term)
}

// headerOf returns resp's header, creating it if unset.
func headerOf(resp proto.Message) *kvpb.ResponseHeader {
	type withHeader interface{ GetHeader() *kvpb.ResponseHeader }
	if r, ok := resp.(withHeader); ok && r.GetHeader() != nil {
		return r.GetHeader()
	}
	h := &kvpb.ResponseHeader{}
	if !kvpb.SetHeader(resp, h) {
		return nil
	}
	return h
}

// kvStatus turns a kv error into its gRPC status: a *kv.Error by its wire
// code (kvpb.ErrorCode.GRPCCode), with its ErrorDetail; a closed state
// machine is UNAVAILABLE (the node is stopping); anything else is a
// broken engine, INTERNAL.
func kvStatus(err error) error {
	var e *kv.Error
	if errors.As(err, &e) {
		return e.Detail().Err()
	}
	if errors.Is(err, kv.ErrClosed) {
		return unavailable("the node is stopping")
	}
	return status.Errorf(codes.Internal, "server: %v", err)
}

// malformed is an INVALID_ARGUMENT status with a MALFORMED ErrorDetail:
// the request is not one this node can serve; nothing was applied.
func malformed(format string, args ...any) error {
	return (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_MALFORMED, Message: fmt.Sprintf(format, args...)}).Err()
}

// unavailable is an UNAVAILABLE status with an ErrorDetail of the same
// code: the request was not served; retry, here or elsewhere.
func unavailable(format string, args ...any) error {
	return (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_UNAVAILABLE, Message: fmt.Sprintf(format, args...)}).Err()
}

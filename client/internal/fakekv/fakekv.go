// Package fakekv is an in-process fake of a cairn cluster for the
// client's tests and examples: N nodes, each a real gRPC server on
// 127.0.0.1, sharing one in-memory state machine with the real one's
// exactly-once session rules (kv/doc.go), and fault knobs.
//
// What it fakes: one node is "the leader" (SetLeader); the others answer
// leader-only requests with UNAVAILABLE / NOT_LEADER naming it, as a real
// node does, and serve serializable reads themselves. There is no Raft:
// the leader applies at once. Sessions never expire by themselves
// (ExpireSession does it), so tests need no clock.
//
// Faults: a FaultFunc sees every request before it is handled and may
// hold it (Block), refuse it unexecuted (Err), or have it executed and its
// reply lost (DropReply). Stop and Restart take a node's listener down
// and up on the same address.
package fakekv

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// Limits are the fake group's limits (kv.Limits' subset that it checks).
type Limits struct {
	MaxKeySize           uint64
	MaxValueSize         uint64
	SessionTTL           time.Duration
	MaxPendingPerSession uint64
	// MaxScan is the most pairs one Scan returns.
	MaxScan uint32
}

// DefaultLimits are the real server's defaults (MaxScan: 1000).
var DefaultLimits = Limits{
	MaxKeySize:           4 << 10,
	MaxValueSize:         1 << 20,
	SessionTTL:           60 * time.Second,
	MaxPendingPerSession: 1024,
	MaxScan:              1000,
}

// Config configures a fake cluster. Zero fields take defaults.
type Config struct {
	// Nodes is the number of nodes (default 3), with ids 1..Nodes. Node 1
	// leads at first.
	Nodes int
	// Limits default to DefaultLimits, field by field.
	Limits Limits
}

// Call describes one request a node received.
type Call struct {
	Node   uint64
	Method string // the RPC's name: "Put", "Get", "OpenSession", ...
	Key    []byte
	// For writes (from the WriteHeader) and KeepAlive.
	Session       uint64
	Seq           uint64
	LowestUnacked uint64
	// Attempt counts the requests received for (Method, Session, Seq),
	// this one included, for writes with a session; else 0.
	Attempt int
	// For reads.
	Consistency kvpb.Consistency
}

// Action is what a FaultFunc makes of a call. The zero Action handles it
// normally.
type Action struct {
	// Block, if set, holds the call until it is closed or the call's
	// context ends (then the call fails with the context's error).
	Block <-chan struct{}
	// Err, if set, is answered instead of handling the call (after Block):
	// the call is not executed.
	Err error
	// DropReply executes the call and then fails it with UNAVAILABLE, as
	// if the reply were lost on the way.
	DropReply bool
}

// FaultFunc decides each call's fate. It runs on the call's goroutine,
// outside the cluster's lock (it may call the Cluster's methods), and must
// be safe for concurrent use.
type FaultFunc func(Call) Action

// Execution is one write the state machine executed (a retry answered
// from the session's cache is not one).
type Execution struct {
	Index   uint64
	Session uint64
	Seq     uint64
	Method  string
	Key     string
}

// Cluster is a running fake cluster.
type Cluster struct {
	lim   Limits
	nodes []*node

	mu struct {
		sync.Mutex
		leader   uint64
		fault    FaultFunc
		st       *store
		calls    []Call
		attempts map[attemptKey]int
	}
}

type attemptKey struct {
	method       string
	session, seq uint64
}

type node struct {
	id   uint64
	addr string
	c    *Cluster

	mu struct {
		sync.Mutex
		srv    *grpc.Server
		served chan struct{} // closed when srv.Serve returns
	}
}

// Start starts a fake cluster listening on 127.0.0.1.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	lim := cfg.Limits
	def := DefaultLimits
	if lim.MaxKeySize == 0 {
		lim.MaxKeySize = def.MaxKeySize
	}
	if lim.MaxValueSize == 0 {
		lim.MaxValueSize = def.MaxValueSize
	}
	if lim.SessionTTL == 0 {
		lim.SessionTTL = def.SessionTTL
	}
	if lim.MaxPendingPerSession == 0 {
		lim.MaxPendingPerSession = def.MaxPendingPerSession
	}
	if lim.MaxScan == 0 {
		lim.MaxScan = def.MaxScan
	}
	c := &Cluster{lim: lim}
	c.mu.leader = 1
	c.mu.st = newStore(lim)
	c.mu.attempts = make(map[attemptKey]int)
	for i := range cfg.Nodes {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Close()
			return nil, err
		}
		n := &node{id: uint64(i + 1), addr: lis.Addr().String(), c: c}
		n.serve(lis)
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

func (n *node) serve(lis net.Listener) {
	srv := grpc.NewServer()
	kvpb.RegisterKVServer(srv, &server{n: n})
	served := make(chan struct{})
	n.mu.Lock()
	n.mu.srv, n.mu.served = srv, served
	n.mu.Unlock()
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
}

// stop stops n's server, failing its calls in flight, and waits for it.
func (n *node) stop() {
	n.mu.Lock()
	srv, served := n.mu.srv, n.mu.served
	n.mu.srv, n.mu.served = nil, nil
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-served
	}
}

// Endpoints are the nodes' addresses, node 1 first.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.addr)
	}
	return eps
}

// Addr is node id's address.
func (c *Cluster) Addr(id uint64) string { return c.node(id).addr }

func (c *Cluster) node(id uint64) *node {
	if id == 0 || id > uint64(len(c.nodes)) {
		panic(fmt.Sprintf("fakekv: no node %d", id))
	}
	return c.nodes[id-1]
}

// SetLeader makes node id the leader; 0 means no leader is known (every
// leader-only request fails with UNAVAILABLE and no hint).
func (c *Cluster) SetLeader(id uint64) {
	if id != 0 {
		c.node(id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.leader = id
}

// SetFault installs f (nil: none).
func (c *Cluster) SetFault(f FaultFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.fault = f
}

// Stop takes node id down: its listener closes, its calls in flight fail,
// and new connections are refused until Restart.
func (c *Cluster) Stop(id uint64) { c.node(id).stop() }

// Restart brings node id back up on its address.
func (c *Cluster) Restart(id uint64) error {
	n := c.node(id)
	n.stop()
	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		return err
	}
	n.serve(lis)
	return nil
}

// ExpireSession drops a session with its cached results, as expiry does.
// It reports whether the session was live.
func (c *Cluster) ExpireSession(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.mu.st.sessions[id]
	delete(c.mu.st.sessions, id)
	return ok
}

// Sessions lists the live sessions' ids, ascending.
func (c *Cluster) Sessions() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := range c.mu.st.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Pending is how many results session id keeps for its client.
func (c *Cluster) Pending(id uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.mu.st.sessions[id]; s != nil {
		return len(s.results)
	}
	return 0
}

// Calls lists every call received so far, in order of arrival.
func (c *Cluster) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.calls)
}

// Executions lists every write executed so far, in order.
func (c *Cluster) Executions() []Execution {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.st.executions)
}

// Value reads key directly from the state machine.
func (c *Cluster) Value(key string) (value []byte, version uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kv, ok := c.mu.st.data[key]
	return kv.GetValue(), kv.GetVersion(), ok
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.stop()
	}
}

// NotLeader is the error a node answers when it does not lead, naming
// leader (0: none known), as a real node does.
func (c *Cluster) NotLeader(leader uint64) error {
	if leader == 0 {
		return (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_UNAVAILABLE, Message: "no leader known"}).Err()
	}
	return (&kvpb.ErrorDetail{
		Code:          kvpb.ErrorCode_NOT_LEADER,
		Message:       fmt.Sprintf("not the leader; node %d is", leader),
		LeaderId:      leader,
		LeaderAddress: c.node(leader).addr,
	}).Err()
}

// ErrReplyLost is what a dropped reply fails with.
var ErrReplyLost = status.Error(codes.Unavailable, "fakekv: reply lost")

// serve runs one call on node n: records it, consults the fault, checks
// leadership if the call needs the leader, and handles it under the lock.
func serve[T proto.Message](ctx context.Context, n *node, call Call, leaderOnly bool,
	handle func(st *store) (T, *kvpb.ErrorDetail),
) (T, error) {
	var zero T
	c := n.c
	call.Node = n.id

	c.mu.Lock()
	if call.Session != 0 && call.Seq != 0 {
		k := attemptKey{call.Method, call.Session, call.Seq}
		c.mu.attempts[k]++
		call.Attempt = c.mu.attempts[k]
	}
	c.mu.calls = append(c.mu.calls, call)
	fault := c.mu.fault
	c.mu.Unlock()

	var act Action
	if fault != nil {
		act = fault(call)
	}
	if act.Block != nil {
		select {
		case <-act.Block:
		case <-ctx.Done():
			return zero, status.FromContextError(ctx.Err()).Err()
		}
	}
	if act.Err != nil {
		return zero, act.Err
	}

	c.mu.Lock()
	if leader := c.mu.leader; leaderOnly && leader != n.id {
		c.mu.Unlock()
		return zero, c.NotLeader(leader)
	}
	resp, d := handle(c.mu.st)
	if d == nil {
		// Answer a copy (a cached result is shared), stamped by this node.
		resp = proto.CloneOf(resp)
		h := c.mu.st.header(n.id)
		if hr, ok := any(resp).(interface{ GetHeader() *kvpb.ResponseHeader }); ok && hr.GetHeader() != nil {
			h.AppliedIndex = hr.GetHeader().GetAppliedIndex()
		}
		setHeader(resp, h)
	}
	c.mu.Unlock()

	if act.DropReply {
		return zero, ErrReplyLost
	}
	if d != nil {
		return zero, d.Err()
	}
	return resp, nil
}

func setHeader(m proto.Message, h *kvpb.ResponseHeader) {
	switch r := m.(type) {
	case *kvpb.GetResponse:
		r.Header = h
	case *kvpb.ScanResponse:
		r.Header = h
	case *kvpb.PutResponse:
		r.Header = h
	case *kvpb.DeleteResponse:
		r.Header = h
	case *kvpb.CompareAndSwapResponse:
		r.Header = h
	case *kvpb.AppendResponse:
		r.Header = h
	case *kvpb.BatchResponse:
		r.Header = h
	case *kvpb.OpenSessionResponse:
		r.Header = h
	case *kvpb.KeepAliveResponse:
		r.Header = h
	case *kvpb.CloseSessionResponse:
		r.Header = h
	}
}

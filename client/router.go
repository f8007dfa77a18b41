package client

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/cairnkv/cairn/api/kvpb"
)

// route is where a request may be served.
type route int

const (
	// toLeader: the cached leader, else the endpoints in turn.
	toLeader route = iota
	// toAny: any node; the endpoints in turn from a per-call start, to
	// spread serializable reads.
	toAny
)

// router knows the nodes: the configured endpoints, the leader last seen
// (from a successful leader-routed answer or a NOT_LEADER hint), the
// addresses of node ids seen in answers, and one gRPC connection per
// address (dialed lazily, by gRPC, on first use).
//
// It never does I/O while holding mu: grpc.NewClient only parses and
// sets up; connecting happens in gRPC's goroutines.
type router struct {
	endpoints []string
	dialOpts  []grpc.DialOption
	log       *slog.Logger
	anyNext   atomic.Uint64

	mu struct {
		sync.Mutex
		// leader is the address of the node believed to lead, "" if none.
		leader string
		// next is the endpoint leader-routed requests try when no leader
		// is known; it moves past an endpoint that fails.
		next  int
		nodes map[NodeID]string
		conns map[string]*grpc.ClientConn
		// closed: conns are closed and no new ones are made.
		closed bool
	}
}

func newRouter(endpoints []string, dialOpts []grpc.DialOption, log *slog.Logger) *router {
	r := &router{endpoints: endpoints, dialOpts: dialOpts, log: log}
	r.mu.nodes = make(map[NodeID]string)
	r.mu.conns = make(map[string]*grpc.ClientConn)
	return r
}

// start returns a per-call cursor for rt: where its first attempt goes.
func (r *router) start(rt route) uint64 {
	if rt == toAny {
		return r.anyNext.Add(1) - 1
	}
	return 0
}

// pick returns the address for a call's next attempt. cursor counts the
// toAny call's failures from its start.
func (r *router) pick(rt route, cursor uint64) string {
	if rt == toAny {
		return r.endpoints[cursor%uint64(len(r.endpoints))]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.leader != "" {
		return r.mu.leader
	}
	return r.endpoints[r.mu.next]
}

// client returns the KV client of addr's connection, making it if need be.
func (r *router) client(addr string) (kvpb.KVClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return nil, ErrClosed
	}
	cc, ok := r.mu.conns[addr]
	if !ok {
		var err error
		if cc, err = grpc.NewClient(addr, r.dialOpts...); err != nil {
			return nil, fmt.Errorf("client: endpoint %q: %w", addr, err)
		}
		r.mu.conns[addr] = cc
	}
	return kvpb.NewKVClient(cc), nil
}

// answered records a reply (success or a definitive error) from addr:
// the node id behind the address and, for a leader-routed request, that
// addr leads.
func (r *router) answered(addr string, rt route, h *kvpb.ResponseHeader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id := NodeID(h.GetNodeId()); id != 0 {
		r.mu.nodes[id] = addr
	}
	if rt == toLeader && r.mu.leader != addr {
		r.log.Debug("leader found", "addr", addr, "node", h.GetNodeId(), "term", h.GetTerm())
		r.mu.leader = addr
	}
}

// redirect records a NOT_LEADER (or UNAVAILABLE) answer from addr with
// the leader it named, if any, and says whether the next attempt goes to
// a different node that was named: then it may be made at once.
func (r *router) redirect(addr string, d *kvpb.ErrorDetail) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	hint := d.GetLeaderAddress()
	if hint == "" && d.GetLeaderId() != 0 {
		hint = r.mu.nodes[NodeID(d.GetLeaderId())]
	}
	if hint != "" && d.GetLeaderId() != 0 {
		r.mu.nodes[NodeID(d.GetLeaderId())] = hint
	}
	if hint == "" || hint == addr {
		r.failedLocked(addr)
		return false
	}
	if r.mu.leader != hint {
		r.log.Debug("redirected to leader", "from", addr, "leader", hint, "leader_id", d.GetLeaderId())
	}
	r.mu.leader = hint
	return true
}

// failed records that addr did not answer: it is no longer believed to
// lead, and leader-routed requests move on to the next endpoint.
func (r *router) failed(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failedLocked(addr)
}

func (r *router) failedLocked(addr string) {
	if r.mu.leader == addr {
		r.mu.leader = ""
	}
	// Move on only if addr is the endpoint in turn, so that many calls
	// failing on one node at once move past it once, not past good nodes.
	if r.endpoints[r.mu.next] == addr {
		r.mu.next = (r.mu.next + 1) % len(r.endpoints)
	}
}

// leader is the address believed to lead, "" if none.
func (r *router) leader() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.leader
}

// close closes every connection; client fails with ErrClosed from now on.
func (r *router) close() error {
	r.mu.Lock()
	conns := r.mu.conns
	r.mu.conns = nil
	r.mu.closed = true
	r.mu.Unlock()
	var first error
	for _, cc := range conns {
		if err := cc.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

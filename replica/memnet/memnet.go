// Package memnet is an in-memory network for replicas, for tests: each
// node has an Endpoint that implements replica.Transport, and the Network
// can cut links to shape partitions (one-way ones too) while the replicas
// run.
//
// It behaves like a real transport in the ways that matter to a replica:
// Send never blocks (a full queue drops the message and reports the peer
// unreachable), messages are copied as if encoded on a wire, each endpoint
// delivers from one goroutine of its own (no goroutine per message or per
// peer), and a snapshot's data travels beside its MsgSnap and reaches the
// receiver before the message is stepped.
//
// Unlike the simulator (raft/rafttest), it is not deterministic: it runs
// on real goroutines and real time.
package memnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cairnkv/cairn/raft"
)

// Handler receives what the network delivers to a node; *replica.Replica
// implements it.
type Handler interface {
	// Step takes a message other than MsgSnap.
	Step(ctx context.Context, m raft.Message) error
	// StepSnapshot takes a MsgSnap and its data.
	StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error
	// ReportUnreachable is told (on the sending node) that a message to
	// peer was dropped. It must not block.
	ReportUnreachable(peer raft.NodeID)
}

// Errors a snapshot transfer's done callback may receive.
var (
	// ErrUnreachable means the link to the receiver is cut, or the
	// receiver has no endpoint or no handler attached.
	ErrUnreachable = errors.New("memnet: peer unreachable")
	// ErrQueueFull means the receiver's inbound queue was full.
	ErrQueueFull = errors.New("memnet: receiver queue full")
	// ErrClosed means the network was closed before delivery.
	ErrClosed = errors.New("memnet: network closed")
)

// DefaultQueueSize is the capacity of each endpoint's inbound queue.
const DefaultQueueSize = 4096

// Network connects endpoints. The zero value is not usable; call New.
type Network struct {
	ctx    context.Context // cancelled by Close; ends deliveries
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per endpoint goroutine

	mu struct {
		sync.Mutex
		closed    bool
		endpoints map[raft.NodeID]*Endpoint
		// cut holds the one-way links that are down.
		cut map[link]struct{}
		// isolated nodes can talk to nobody.
		isolated map[raft.NodeID]struct{}
	}
}

type link struct{ from, to raft.NodeID }

// New returns an empty Network. Close it when done.
func New() *Network {
	n := &Network{}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.endpoints = make(map[raft.NodeID]*Endpoint)
	n.mu.cut = make(map[link]struct{})
	n.mu.isolated = make(map[raft.NodeID]struct{})
	return n
}

// Endpoint returns node id's endpoint, creating it (and its delivery
// goroutine) on first use. An endpoint outlives the replicas attached to
// it, so a restarted replica reuses its node's endpoint.
func (n *Network) Endpoint(id raft.NodeID) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.mu.endpoints[id]; e != nil {
		return e
	}
	e := &Endpoint{net: n, id: id, inbox: make(chan envelope, DefaultQueueSize)}
	n.mu.endpoints[id] = e
	if !n.mu.closed {
		n.wg.Go(e.deliver)
	}
	return e
}

// Close stops every endpoint's delivery goroutine and waits for them.
// Messages still queued are dropped. Close may be called more than once.
func (n *Network) Close() {
	n.mu.Lock()
	n.mu.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}

// Disconnect cuts every link to and from id, until Connect(id).
func (n *Network) Disconnect(id raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.isolated[id] = struct{}{}
}

// Connect restores every link to and from id: it undoes Disconnect(id),
// and any Cut or Partition that involved id.
func (n *Network) Connect(id raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.mu.isolated, id)
	for l := range n.mu.cut {
		if l.from == id || l.to == id {
			delete(n.mu.cut, l)
		}
	}
}

// Cut cuts the one-way link from -> to: messages from `from` to `to` are
// dropped, while those from `to` to `from` still flow.
func (n *Network) Cut(from, to raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.cut[link{from, to}] = struct{}{}
}

// Partition cuts every link between nodes in different sides, both ways.
// Links within a side are left as they are, and so are links of nodes
// named in no side.
func (n *Network) Partition(sides ...[]raft.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, a := range sides {
		for j, b := range sides {
			if i == j {
				continue
			}
			for _, x := range a {
				for _, y := range b {
					n.mu.cut[link{x, y}] = struct{}{}
				}
			}
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.mu.cut)
	clear(n.mu.isolated)
}

// route returns the endpoint a message from `from` to `to` should go to,
// or nil if the link is down.
func (n *Network) route(from, to raft.NodeID) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed || !n.linkedLocked(from, to) {
		return nil
	}
	return n.mu.endpoints[to]
}

func (n *Network) linked(from, to raft.NodeID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.linkedLocked(from, to)
}

func (n *Network) linkedLocked(from, to raft.NodeID) bool {
	if _, ok := n.mu.isolated[from]; ok {
		return false
	}
	if _, ok := n.mu.isolated[to]; ok {
		return false
	}
	_, cut := n.mu.cut[link{from, to}]
	return !cut
}

// Endpoint is one node's attachment to the network. It implements
// replica.Transport for the node's replica, and delivers the node's
// inbound messages to the attached Handler from one goroutine.
type Endpoint struct {
	net   *Network
	id    raft.NodeID
	inbox chan envelope

	mu struct {
		sync.Mutex
		h Handler
	}
}

// envelope is a message in flight. A MsgSnap carries its data and the
// sender's done callback.
type envelope struct {
	from raft.NodeID
	msg  raft.Message
	data io.ReadCloser
	done func(error)
}

// Attach makes h the node's handler: inbound messages go to it, and it
// hears about unreachable peers. Attach(nil) detaches (a crashed node):
// messages to it are dropped.
func (e *Endpoint) Attach(h Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.h = h
}

func (e *Endpoint) handler() Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.h
}

// Send implements replica.Transport: it never blocks, and drops what it
// cannot queue, reporting the peer unreachable.
func (e *Endpoint) Send(msgs []raft.Message) {
	var unreachable []raft.NodeID
	for i := range msgs {
		m := &msgs[i]
		to := e.net.route(e.id, m.To)
		if to == nil || !to.offer(envelope{from: e.id, msg: cloneMessage(m)}) {
			unreachable = append(unreachable, m.To)
		}
	}
	if len(unreachable) == 0 {
		return
	}
	if h := e.handler(); h != nil {
		slices.Sort(unreachable)
		for _, id := range slices.Compact(unreachable) {
			h.ReportUnreachable(id)
		}
	}
}

// SendSnapshot implements replica.Transport.
func (e *Endpoint) SendSnapshot(m raft.Message, data io.ReadCloser, done func(error)) {
	to := e.net.route(e.id, m.To)
	if to == nil {
		data.Close()
		done(fmt.Errorf("%w: %d -> %d", ErrUnreachable, e.id, m.To))
		return
	}
	if !to.offer(envelope{from: e.id, msg: cloneMessage(&m), data: data, done: done}) {
		data.Close()
		done(fmt.Errorf("%w: %d", ErrQueueFull, m.To))
	}
}

// offer queues env without blocking, reporting whether it fit.
func (e *Endpoint) offer(env envelope) bool {
	select {
	case e.inbox <- env:
		return true
	default:
		return false
	}
}

// deliver is the endpoint's goroutine: it hands queued messages to the
// handler, one at a time, until the network closes.
func (e *Endpoint) deliver() {
	ctx := e.net.ctx
	for {
		select {
		case <-ctx.Done():
			e.dropQueued()
			return
		case env := <-e.inbox:
			e.deliverOne(ctx, env)
		}
	}
}

func (e *Endpoint) deliverOne(ctx context.Context, env envelope) {
	h := e.handler()
	// The link is checked again on delivery, so that a partition made
	// while a message is queued drops it, as a real network would.
	if h == nil || !e.net.linked(env.from, e.id) {
		if env.data != nil {
			env.data.Close()
			env.done(fmt.Errorf("%w: %d -> %d", ErrUnreachable, env.from, e.id))
		}
		return
	}
	if env.data == nil {
		// Errors (a stopped replica, a message the core refuses) are
		// what a real network would lose too.
		_ = h.Step(ctx, env.msg)
		return
	}
	err := h.StepSnapshot(ctx, env.msg, env.data)
	env.data.Close()
	env.done(err)
}

// dropQueued fails whatever is still queued when the network closes.
func (e *Endpoint) dropQueued() {
	for {
		select {
		case env := <-e.inbox:
			if env.data != nil {
				env.data.Close()
				env.done(ErrClosed)
			}
		default:
			return
		}
	}
}

// cloneMessage copies m deeply, as encoding it for a wire would: neither
// side may then change what the other holds.
func cloneMessage(m *raft.Message) raft.Message {
	c := *m
	if m.Entries != nil {
		c.Entries = make([]raft.Entry, len(m.Entries))
		for i, ent := range m.Entries {
			ent.Data = bytes.Clone(ent.Data)
			c.Entries[i] = ent
		}
	}
	if m.Snapshot != nil {
		s := *m.Snapshot
		s.ConfState.Voters = slices.Clone(s.ConfState.Voters)
		c.Snapshot = &s
	}
	return c
}

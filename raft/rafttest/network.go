package rafttest

import (
	"fmt"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// NetOptions describes how unreliable the simulated network is. The zero
// value is a perfect network: nothing lost, duplicated or delayed, and
// messages delivered in the order they were sent.
type NetOptions struct {
	// Loss is the probability that a message is silently dropped.
	Loss float64
	// Dup is the probability that a message is delivered twice.
	Dup float64
	// Reorder delivers due messages in random order instead of the order
	// they were sent in.
	Reorder bool
	// MaxDelay delays each message by a uniformly random number of ticks
	// in [0, MaxDelay]. Zero-delay messages arrive within the same tick.
	MaxDelay int
}

// envelope is a message in flight.
type envelope struct {
	m raft.Message
	// snap is the snapshot's data, travelling beside a MsgSnap the way a
	// real transport streams the snapshot file beside the message.
	snap *StateMachine
}

// report is what a transport tells the sender about a message it could not
// deliver, or about the fate of a snapshot. It is delivered to the sender as
// an event of its own, never in the middle of another node's Ready.
type report struct {
	from, to raft.NodeID
	snap     bool // ReportSnapshot rather than ReportUnreachable
	ok       bool
}

// network holds every message in flight and the shape of the network.
//
// Partitions are expressed link by link: cut[from][to] drops everything
// from→to, so any shape, including one-way links, can be built. A message
// is checked against the links and the receiver's liveness both when it is
// sent and when it is delivered, so a partition also swallows what was in
// flight across it.
type network struct {
	opts NetOptions
	// cut is indexed by node ID; row and column 0 are unused.
	cut [][]bool
	// drops are test-installed filters: a message for which any returns
	// true is dropped.
	drops []*dropRule
	// holds are test-installed filters that park matching messages until
	// the test releases them.
	holds []*holdRule
	// due holds messages deliverable now, oldest first from head on.
	due  []envelope
	head int
	// later holds delayed messages by the tick they become due.
	later   map[uint64][]envelope
	reports []report
}

type dropRule struct{ fn func(raft.Message) bool }

type holdRule struct {
	fn     func(raft.Message) bool
	parked []envelope
}

func newNetwork(n int) *network {
	cut := make([][]bool, n+1)
	for i := range cut {
		cut[i] = make([]bool, n+1)
	}
	return &network{cut: cut, later: make(map[uint64][]envelope)}
}

func (net *network) linked(from, to raft.NodeID) bool { return !net.cut[from][to] }

// hold parks env if a hold rule matches it.
func (net *network) hold(env *envelope) bool {
	for _, h := range net.holds {
		if h.fn(env.m) {
			h.parked = append(h.parked, *env)
			return true
		}
	}
	return false
}

func (net *network) dropped(m *raft.Message) bool {
	for _, d := range net.drops {
		if d.fn(*m) {
			return true
		}
	}
	return false
}

// release moves messages due at tick now into the due queue.
func (net *network) release(now uint64) {
	if ms, ok := net.later[now]; ok {
		net.due = append(net.due, ms...)
		delete(net.later, now)
	}
}

func (net *network) hasDue() bool { return net.head < len(net.due) }

// pop removes the next message to deliver: the oldest, or a random due one
// when reordering. pick draws a random number in [0, n).
func (net *network) pop(pick func(n int) int) envelope {
	if net.opts.Reorder {
		if i := net.head + pick(len(net.due)-net.head); i != net.head {
			net.due[i], net.due[net.head] = net.due[net.head], net.due[i]
		}
	}
	e := net.due[net.head]
	net.due[net.head] = envelope{}
	net.head++
	if net.head == len(net.due) {
		net.due, net.head = net.due[:0], 0
	} else if net.head > 1024 && net.head > len(net.due)/2 {
		n := copy(net.due, net.due[net.head:])
		clear(net.due[n:])
		net.due, net.head = net.due[:n], 0
	}
	return e
}

// heal restores every link and removes the drop filters (held messages
// stay held until released).
func (net *network) heal() {
	for i := range net.cut {
		clear(net.cut[i])
	}
	net.drops = nil
}

// The Sim's side of the network: sending, delivering and dropping
// messages, and the methods tests use to shape the network.

// send hands msgs from n to the network.
func (s *Sim) send(n *simNode, msgs []raft.Message) {
	for i := range msgs {
		m := msgs[i]
		if m.From != n.id || m.To == n.id || m.To == raft.None || int(m.To) >= len(s.nodes) {
			s.fail("node %d sends a misaddressed message: %s", n.id, describeMessage(&m))
			return
		}
		if m.Type == raft.MsgVoteResp && !m.Reject {
			s.checkVote(&m)
			if s.failed {
				return
			}
		}
		s.stats.Sent[m.Type&15]++
		if m.Type == raft.MsgApp {
			s.stats.Apps[m.From][m.To]++
			s.stats.AppEntries[m.From][m.To] += len(m.Entries)
		}
		if m.Type == raft.MsgAppResp && m.Reject {
			s.stats.AppRejects++
		}
		if s.opts.Trace {
			s.tb.Logf("t=%d send %s", s.now, describeMessage(&m))
		}
		env := envelope{m: m}
		if m.Type == raft.MsgSnap {
			env.snap = n.snapshotData(m.Snapshot)
			if env.snap == nil {
				s.fail("node %d sends snapshot %v, which it does not have", n.id, m.Snapshot)
				return
			}
		}
		switch {
		case !s.net.linked(m.From, m.To) || !s.nodes[m.To].alive:
			s.drop(&env, true)
		case s.net.dropped(&m) || (s.net.opts.Loss > 0 && s.rng.Float64() < s.net.opts.Loss):
			s.drop(&env, false)
		case s.net.hold(&env):
			s.record(traceEvent{kind: evSend, node: n.id, m: m, note: "held"})
		default:
			s.record(traceEvent{kind: evSend, node: n.id, m: m})
			s.enqueue(env)
			if s.net.opts.Dup > 0 && s.rng.Float64() < s.net.opts.Dup {
				s.enqueue(env)
			}
		}
	}
}

func (n *simNode) snapshotData(meta *raft.SnapshotMeta) *StateMachine {
	for i := len(n.snaps) - 1; i >= 0; i-- {
		if d := n.snaps[i]; d.Applied == meta.Index && d.AppliedTerm == meta.Term {
			return d
		}
	}
	return nil
}

func (s *Sim) enqueue(env envelope) {
	d := 0
	if s.net.opts.MaxDelay > 0 {
		d = s.rng.IntN(s.net.opts.MaxDelay + 1)
	}
	if d == 0 {
		s.net.due = append(s.net.due, env)
		return
	}
	at := s.now + uint64(d)
	s.net.later[at] = append(s.net.later[at], env)
}

// drop loses env. A transport notices a broken link or a dead peer (but not
// a lost packet): then, like a real one, it reports the failure to the
// sender. A snapshot's fate is always reported.
func (s *Sim) drop(env *envelope, noticed bool) {
	s.stats.Dropped++
	s.record(traceEvent{kind: evDrop, node: env.m.From, m: env.m})
	m := &env.m
	switch {
	case m.Type == raft.MsgSnap:
		s.net.reports = append(s.net.reports, report{from: m.From, to: m.To, snap: true, ok: false})
	case noticed && m.Type == raft.MsgApp:
		s.net.reports = append(s.net.reports, report{from: m.From, to: m.To})
	}
}

// deliver delivers one due message.
func (s *Sim) deliver() {
	env := s.net.pop(s.rng.IntN)
	m := &env.m
	to := s.nodes[m.To]
	if !to.alive || !s.net.linked(m.From, m.To) {
		s.drop(&env, true)
		return
	}
	s.stats.Delivered++
	s.record(traceEvent{kind: evDeliver, node: m.To, m: *m})
	if env.snap != nil {
		to.incoming[m.Snapshot.Index] = env.snap
	}
	if err := to.rn.Step(*m); err != nil {
		s.fail("node %d: Step(%s): %v", to.id, describeMessage(m), err)
		return
	}
	if m.Type == raft.MsgSnap {
		s.net.reports = append(s.net.reports, report{from: m.From, to: m.To, snap: true, ok: true})
	}
}

func (s *Sim) deliverReport() {
	r := s.net.reports[0]
	s.net.reports = s.net.reports[1:]
	n := s.nodes[r.from]
	if !n.alive {
		return
	}
	if r.snap {
		n.rn.ReportSnapshot(r.to, r.ok)
	} else {
		n.rn.ReportUnreachable(r.to)
	}
}

// SetNet changes how unreliable the network is.
func (s *Sim) SetNet(o NetOptions) {
	if o != s.net.opts {
		s.disturb()
	}
	s.net.opts = o
}

// Cut drops every message from → to (one way) until healed.
func (s *Sim) Cut(from, to raft.NodeID) {
	s.net.cut[from][to] = true
	s.record(traceEvent{kind: evNet, note: fmt.Sprintf("cut %d->%d", from, to)})
}

// Link restores the link from → to.
func (s *Sim) Link(from, to raft.NodeID) { s.net.cut[from][to] = false }

// Isolate cuts every link to and from id.
func (s *Sim) Isolate(id raft.NodeID) {
	for _, o := range s.ids {
		if o != id {
			s.net.cut[id][o], s.net.cut[o][id] = true, true
		}
	}
	s.record(traceEvent{kind: evNet, note: fmt.Sprintf("isolate %d", id)})
}

// Reconnect restores every link to and from id.
func (s *Sim) Reconnect(id raft.NodeID) {
	for _, o := range s.ids {
		s.net.cut[id][o], s.net.cut[o][id] = false, false
	}
	s.record(traceEvent{kind: evNet, note: fmt.Sprintf("reconnect %d", id)})
}

// Partition splits the nodes into groups that can talk within but not
// across; nodes named in no group are isolated.
func (s *Sim) Partition(groups ...[]raft.NodeID) {
	group := make([]int, len(s.nodes))
	for i := range group {
		group[i] = -i - 1 // alone
	}
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g
		}
	}
	for _, a := range s.ids {
		for _, b := range s.ids {
			s.net.cut[a][b] = a != b && group[a] != group[b]
		}
	}
	s.record(traceEvent{kind: evNet, note: fmt.Sprintf("partition %v", groups)})
}

// Heal restores every link and removes the drop filters.
func (s *Sim) Heal() {
	s.net.heal()
	s.record(traceEvent{kind: evNet, note: "heal"})
}

// DropIf drops every message for which fn returns true, until the returned
// function is called (or Heal).
func (s *Sim) DropIf(fn func(m raft.Message) bool) (remove func()) {
	r := &dropRule{fn: fn}
	s.net.drops = append(s.net.drops, r)
	return func() {
		s.net.drops = slices.DeleteFunc(s.net.drops, func(x *dropRule) bool { return x == r })
	}
}

// Hold parks every message for which fn returns true, from now on, until
// release is called: release stops holding and delivers the parked messages
// (in the order they were sent, subject to the links and liveness at
// delivery) as if they had just arrived. It is how a test delays one
// message past events of its choosing.
func (s *Sim) Hold(fn func(m raft.Message) bool) (release func()) {
	h := &holdRule{fn: fn}
	s.net.holds = append(s.net.holds, h)
	return func() {
		s.net.holds = slices.DeleteFunc(s.net.holds, func(x *holdRule) bool { return x == h })
		s.Note("release %d held messages", len(h.parked))
		s.net.due = append(s.net.due, h.parked...)
		h.parked = nil
	}
}

// Connected reports whether messages can flow both ways between a and b.
func (s *Sim) Connected(a, b raft.NodeID) bool { return s.net.linked(a, b) && s.net.linked(b, a) }

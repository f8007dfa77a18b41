package rafttest

import (
	"github.com/cairnkv/cairn/raft"
)

// The liveness monitor checks liveness at every tick of every run, not
// only where a test asks (CheckLiveness): whenever the run gives a quorum
// of nodes the conditions Raft needs to make progress, and keeps them for
// long enough, the quorum must have elected a leader that commits. It is
// on from New, with the bound LivenessTicks; MonitorLiveness changes it.
//
// The conditions, checked at the end of every tick: a set of live nodes,
// a quorum, every two of which are linked both ways, with no link either
// way between one of them and a live node outside (an island); no test
// drop or hold rules, and a network that neither loses nor delays
// messages (it may duplicate and reorder them); and, since the island
// formed, none of its members crashed or restarted (by a schedule's
// choice, a targeted fault or a disk fault), nobody was told to campaign
// or transfer leadership, and the network's unreliability was not
// changed. Loss and delay make an election a matter of luck, which no
// bound survives for sure: with loss, every vote request and answer
// between a bare quorum must get through (with 15% loss on a quorum of
// three, a third of the attempts fail); with delay, the window in which
// two candidates' timeouts collide and split the vote widens (§5.6: the
// broadcast time must be well below the election timeout), and a quorum
// of four on a network delaying up to 2 ticks of a 10-tick timeout was
// seen to split the vote round after round for 100 ticks.
//
// Once an island has kept those conditions for bound ticks, and every
// bound ticks after that, the monitor requires that the island has a
// leader (in the highest term any member has reached), and that since the
// previous check (or since the island formed) it made progress: either
// the leader has committed an entry of its own term and everything it held
// at the previous check, or entries reached the followers' disks. The
// second is what a leader bringing a follower far behind up to date does,
// at whatever pace the configuration allows (one entry per message, one
// message in flight, on a lossy network: slower than clients propose), and
// it is bounded: within a term, a follower takes each index from the
// leader at most once. So a group that can make progress is never seen to
// stand still for a whole bound.
//
// The bound is LivenessTicks (ten election timeouts, 25 without pre-vote).
// Over 60,000 randomized schedules (8,412 checks, calm stretches included),
// the slowest island took 72 ticks to elect a leader that committed.
type livenessMonitor struct {
	// bound is in ticks; zero turns the monitor off.
	bound int
	sig   monitorSig
	group []raft.NodeID
	// since is the tick the island formed, next the tick of the next check.
	since, next uint64
	// What the island's leader held at the last check, and how many
	// entries each node had appended (see simNode.appended) by then.
	lastLeader raft.NodeID
	lastTerm   raft.Term
	lastIndex  raft.Index
	appended   []uint64
	// ready is set once the island has had a leader that committed in its
	// term; worst is the longest an island took to get there.
	ready bool
	worst int
	// checks counts the checks made.
	checks int
}

// monitorSig identifies an island and everything that happened to it: the
// monitor starts over whenever it changes.
type monitorSig struct {
	group uint32
	// disturbances is Sim.disturbances; incarnations sums the members'
	// incarnations, which only grow.
	disturbances, incarnations uint64
}

// MonitorLiveness restarts the liveness monitor with the given bound in
// ticks (zero: LivenessTicks of the Sim's options), or turns it off
// (negative). New turns it on with LivenessTicks.
func (s *Sim) MonitorLiveness(bound int) {
	if bound == 0 {
		bound = LivenessTicks(s.opts)
	}
	s.mon = livenessMonitor{bound: max(bound, 0)}
}

// LivenessStats reports how many checks the liveness monitor made, and the
// longest an island it watched took to elect a leader that committed.
func (s *Sim) LivenessStats() (checks, worst int) { return s.mon.checks, s.mon.worst }

// disturb tells the monitor that something was done to the group that
// Raft's liveness does not promise to ride out within the bound (a
// campaign, a transfer, a change of the network's unreliability).
func (s *Sim) disturb() { s.disturbances++ }

func (s *Sim) monitorTick() {
	m := &s.mon
	g := s.island()
	sig := monitorSig{group: g, disturbances: s.disturbances}
	for _, n := range s.nodes[1:] {
		if g&(1<<n.id) != 0 {
			sig.incarnations += n.incarnation
		}
	}
	if sig != m.sig {
		*m = livenessMonitor{bound: m.bound, sig: sig, group: s.members(g, m.group[:0]), since: s.now,
			next: s.now + uint64(m.bound), appended: m.appended[:0], worst: m.worst, checks: m.checks}
		for _, n := range s.nodes {
			if n == nil {
				m.appended = append(m.appended, 0)
			} else {
				m.appended = append(m.appended, n.appended)
			}
		}
		return
	}
	if g == 0 {
		return
	}
	group := m.group
	l := s.LeaderAmong(group)
	if !m.ready && l != raft.None && s.committedInTerm(s.nodes[l]) {
		m.ready = true
		m.worst = max(m.worst, int(s.now-m.since))
	}
	if s.now < m.next {
		return
	}
	m.next += uint64(m.bound)
	m.checks++
	if l == raft.None {
		s.fail("liveness: nodes %v have been up, connected among themselves and cut off from the rest since tick %d, untouched, and have no leader after %d ticks",
			group, m.since, s.now-m.since)
		return
	}
	n := s.nodes[l]
	committed := s.committedInTerm(n) && !(l == m.lastLeader && n.leaderTerm == m.lastTerm && n.commit < m.lastIndex)
	replicated := false
	for _, id := range group {
		if id != l && s.nodes[id].appended > m.appended[id] {
			replicated = true
		}
	}
	if !committed && !replicated {
		s.fail("liveness: nodes %v have been up, connected among themselves and cut off from the rest since tick %d, untouched, and made no progress in the last %d ticks: their leader %d (term %d) has committed up to %d of its %d entries (%d at the previous check), and no follower appended an entry",
			group, m.since, m.bound, l, n.leaderTerm, n.commit, n.log.last(), m.lastIndex)
		return
	}
	m.lastLeader, m.lastTerm, m.lastIndex = l, n.leaderTerm, n.log.last()
	for _, id := range group {
		m.appended[id] = s.nodes[id].appended
	}
}

// committedInTerm reports whether leader n has durably committed an entry
// of the term it leads.
func (s *Sim) committedInTerm(n *simNode) bool {
	t, ok := n.log.termAt(n.commit)
	return ok && n.role == raft.Leader && t == n.leaderTerm
}

// island returns the set of live nodes (a bit per ID) that form a quorum,
// are linked both ways with each other and not at all with any other live
// node, or zero if there is none, the network loses or delays messages or
// test drop or hold rules are installed.
func (s *Sim) island() uint32 {
	if s.net.opts.Loss > 0 || s.net.opts.MaxDelay > 0 {
		return 0
	}
	return s.quorumIsland()
}

// quorumIsland is island, whether or not the network loses or delays
// messages.
func (s *Sim) quorumIsland() uint32 {
	if len(s.net.drops) > 0 || len(s.net.holds) > 0 {
		return 0
	}
	for _, a := range s.nodes[1:] {
		if !a.alive {
			continue
		}
		var g uint32
		size := 0
		for _, b := range s.nodes[1:] {
			if b.alive && (b == a || s.Connected(a.id, b.id)) {
				g |= 1 << b.id
				size++
			}
		}
		if size < s.quorum() {
			continue
		}
		ok := true
		for _, x := range s.nodes[1:] {
			for _, y := range s.nodes[1:] {
				if x == y || !x.alive || !y.alive {
					continue
				}
				inX, inY := g&(1<<x.id) != 0, g&(1<<y.id) != 0
				if inX && inY && !s.net.linked(x.id, y.id) || inX != inY && s.net.linked(x.id, y.id) {
					ok = false
				}
			}
		}
		if ok {
			return g
		}
	}
	return 0
}

// members appends the nodes of the set g to ids.
func (s *Sim) members(g uint32, ids []raft.NodeID) []raft.NodeID {
	for _, id := range s.ids {
		if g&(1<<id) != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// hasConnectedQuorum reports whether some quorum of live nodes is linked
// both ways, every two of them (whatever their links to other nodes).
func (s *Sim) hasConnectedQuorum() bool {
	n := len(s.ids)
	for set := uint32(1); set < 1<<n; set++ {
		size, ok := 0, true
		for i := 0; i < n && ok; i++ {
			if set&(1<<i) == 0 {
				continue
			}
			a := s.ids[i]
			size++
			ok = s.nodes[a].alive
			for j := i + 1; j < n && ok; j++ {
				if set&(1<<j) != 0 {
					ok = s.Connected(a, s.ids[j])
				}
			}
		}
		if ok && size >= s.quorum() {
			return true
		}
	}
	return false
}

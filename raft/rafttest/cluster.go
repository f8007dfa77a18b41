package rafttest

import (
	"bytes"
	"fmt"

	"github.com/cairnkv/cairn/raft"
)

// This file holds what tests use to drive and inspect the group: the
// client's side (propose, read, transfer) and the observer's (who leads,
// what is committed, what each node applied).

// IDs returns the node IDs, 1..n.
func (s *Sim) IDs() []raft.NodeID { return s.ids }

// Node returns node id's raft.Node, or nil while it is crashed.
func (s *Sim) Node(id raft.NodeID) *raft.Node { return s.nodes[id].rn }

// Status returns node id's status; a crashed node reports only its ID.
func (s *Sim) Status(id raft.NodeID) raft.Status {
	if n := s.nodes[id]; n.alive {
		return n.rn.Status()
	}
	return raft.Status{ID: id}
}

// StateMachine returns node id's state machine (nil while it is crashed).
// It must not be modified.
func (s *Sim) StateMachine(id raft.NodeID) *StateMachine { return s.nodes[id].sm }

// Storage returns node id's disk in MemStorage mode (nil in WALStorage
// mode; see WAL and FS).
func (s *Sim) Storage(id raft.NodeID) *raft.MemoryStorage { return s.nodes[id].storage }

// Stats returns the message counters.
func (s *Sim) Stats() *Stats { return &s.stats }

// ResetStats zeroes the message counters.
func (s *Sim) ResetStats() { s.stats = newStats(len(s.ids)) }

// Propose proposes data on node id and records the proposal if it was
// accepted.
func (s *Sim) Propose(id raft.NodeID, data []byte) (raft.Index, raft.Term, error) {
	defer s.recoverPanic()
	n := s.nodes[id]
	if !n.alive {
		return 0, 0, fmt.Errorf("node %d is down", id)
	}
	idx, term, err := n.rn.Propose(data)
	if err == nil {
		s.proposals = append(s.proposals, Proposal{Node: id, Index: idx, Term: term, Data: data, Tick: s.now})
		s.record(traceEvent{kind: evPropose, node: id, a: uint64(idx), b: uint64(term), note: string(data)})
	}
	return idx, term, err
}

// ProposeBatch proposes several commands in one call, as a driver batches
// the proposals of concurrent clients: they are appended as consecutive
// entries and replicated together. It returns the first entry's index.
func (s *Sim) ProposeBatch(id raft.NodeID, data ...[]byte) (raft.Index, raft.Term, error) {
	defer s.recoverPanic()
	n := s.nodes[id]
	if !n.alive {
		return 0, 0, fmt.Errorf("node %d is down", id)
	}
	idx, term, err := n.rn.Propose(data...)
	if err == nil {
		for i, d := range data {
			s.proposals = append(s.proposals, Proposal{Node: id, Index: idx + raft.Index(i), Term: term, Data: d, Tick: s.now})
		}
		s.record(traceEvent{kind: evPropose, node: id, a: uint64(idx), b: uint64(term), note: fmt.Sprintf("batch of %d", len(data))})
	}
	return idx, term, err
}

// Proposals returns every accepted proposal so far.
func (s *Sim) Proposals() []Proposal { return s.proposals }

// Campaign makes node id start an election now.
func (s *Sim) Campaign(id raft.NodeID) {
	defer s.recoverPanic()
	if n := s.nodes[id]; n.alive {
		s.disturb()
		n.rn.Campaign()
	}
}

// TransferLeadership asks leader from to hand leadership to to.
func (s *Sim) TransferLeadership(from, to raft.NodeID) error {
	defer s.recoverPanic()
	n := s.nodes[from]
	if !n.alive {
		return fmt.Errorf("node %d is down", from)
	}
	s.Note("transfer leadership %d -> %d", from, to)
	s.disturb()
	return n.rn.TransferLeadership(to)
}

// ReadIndex asks node id for a linearizable read point and returns the
// request, which records the answer once it comes (checked against every
// write committed before the request) and the state it was served from.
func (s *Sim) ReadIndex(id raft.NodeID) *Read { return s.read(id, false) }

// LeaseRead is ReadIndex through raft.Node.LeaseRead: a leader whose lease
// holds answers at once, without a heartbeat round. The Sim's clocks are
// perfect, so its answers are held to exactly the same standard.
func (s *Sim) LeaseRead(id raft.NodeID) *Read { return s.read(id, true) }

func (s *Sim) read(id raft.NodeID, lease bool) *Read {
	defer s.recoverPanic()
	s.nextRead++
	r := &Read{ID: s.nextRead, Node: id, Lease: lease, Tick: s.now, MinIndex: s.check.maxCommitted,
		AckedIndex: s.lastAcked, AckedData: s.lastAckedData}
	s.reads[r.ID] = r
	if n := s.nodes[id]; n.alive {
		r.readies = n.readies
		kind := "read"
		if lease {
			kind = "lease read"
			n.rn.LeaseRead(r.ID)
		} else {
			n.rn.ReadIndex(r.ID)
		}
		s.record(traceEvent{kind: evRead, node: id, a: uint64(r.ID), note: kind})
	}
	return r
}

// ReadStats counts the reads asked so far: all of them, the lease reads,
// and the lease reads a leader answered from its lease (see
// Read.Immediate).
func (s *Sim) ReadStats() (reads, lease, fromLease int) {
	for _, r := range s.reads {
		reads++
		if r.Lease {
			lease++
			if r.Immediate {
				fromLease++
			}
		}
	}
	return reads, lease, fromLease
}

// Leader returns the live node that leads in the highest term, or None. A
// stale leader cut off in an older term may also still believe it leads;
// Leaders lists them all. (Roles are as the nodes' last Readys reported
// them, which is current whenever the Sim is between ticks.)
func (s *Sim) Leader() raft.NodeID { return s.LeaderAmong(s.ids) }

// Leaders returns every live node that believes itself leader.
func (s *Sim) Leaders() []raft.NodeID {
	var ls []raft.NodeID
	for _, n := range s.nodes[1:] {
		if n.alive && n.role == raft.Leader {
			ls = append(ls, n.id)
		}
	}
	return ls
}

// LeaderAmong returns the leader of the live nodes of ids: the node that
// leads in the highest term any of them has reached, or None. (A stale
// leader, cut off in an older term and not yet stepped down, is not the
// group's leader once another member has moved to a later term.)
func (s *Sim) LeaderAmong(ids []raft.NodeID) raft.NodeID {
	var best raft.NodeID
	var bestTerm, maxTerm raft.Term
	for _, id := range ids {
		n := s.nodes[id]
		if !n.alive {
			continue
		}
		maxTerm = max(maxTerm, n.term)
		if n.role == raft.Leader && n.leaderTerm > bestTerm {
			best, bestTerm = id, n.leaderTerm
		}
	}
	if bestTerm < maxTerm {
		return raft.None
	}
	return best
}

// WaitLeader ticks until some node leads (at most maxTicks) and returns it,
// or None.
func (s *Sim) WaitLeader(maxTicks int) raft.NodeID {
	var l raft.NodeID
	s.RunUntil(maxTicks, func() bool { l = s.Leader(); return l != raft.None })
	return l
}

// MaxCommitted returns the highest index known committed anywhere.
func (s *Sim) MaxCommitted() raft.Index { return s.check.maxCommitted }

// CommittedTerm returns the term of the committed entry at i, if any node
// has shown it committed.
func (s *Sim) CommittedTerm(i raft.Index) (raft.Term, bool) {
	rec := s.check.commit(i)
	return rec.term, rec.known
}

// IsCommitted reports whether the entry (i, term) is known committed.
func (s *Sim) IsCommitted(i raft.Index, term raft.Term) bool {
	t, ok := s.CommittedTerm(i)
	return ok && t == term
}

// AppliedCount returns how many live nodes have applied the entry (i, term).
func (s *Sim) AppliedCount(i raft.Index, term raft.Term) int {
	if !s.IsCommitted(i, term) {
		return 0
	}
	c := 0
	for _, n := range s.nodes[1:] {
		if n.alive && n.sm.Applied >= i {
			c++
		}
	}
	return c
}

// Agree gets data committed: it proposes it to whoever leads (retrying as
// leaders come and go, for at most maxTicks) and waits until at least want
// live nodes have applied it. It returns the entry's index, or fails the
// test. It is the "one" of the MIT 6.824 Raft tests.
func (s *Sim) Agree(data []byte, want, maxTicks int) raft.Index {
	s.tb.Helper()
	deadline := s.now + uint64(maxTicks)
	for s.now < deadline && !s.failed {
		if l := s.Leader(); l != raft.None {
			if idx, term, err := s.Propose(l, data); err == nil {
				// Give it two election timeouts to commit before trying
				// again (the entry may have been lost with its leader).
				wait := 2 * s.electionTick()
				if s.RunUntil(wait, func() bool { return s.AppliedCount(idx, term) >= want }) {
					return idx
				}
				if s.IsCommitted(idx, term) {
					// Committed but too few nodes applied it: retrying would
					// commit it twice. Keep waiting for the rest.
					if s.RunUntil(int(deadline-min(deadline, s.now)), func() bool { return s.AppliedCount(idx, term) >= want }) {
						return idx
					}
					break
				}
				continue
			}
		}
		s.Tick()
	}
	s.fail("no agreement on %q by %d nodes within %d ticks", data, want, maxTicks)
	return 0
}

func (s *Sim) electionTick() int {
	if s.opts.ElectionTick > 0 {
		return s.opts.ElectionTick
	}
	return raft.DefaultElectionTick
}

// ElectionTimeout returns the configured election timeout in ticks.
func (s *Sim) ElectionTimeout() int { return s.electionTick() }

// Contains reports whether node id's state machine has applied data.
func (s *Sim) Contains(id raft.NodeID, data []byte) bool {
	sm := s.nodes[id].sm
	if sm == nil {
		return false
	}
	for _, v := range sm.Values {
		if bytes.Equal(v.Data, data) {
			return true
		}
	}
	return false
}

// CheckLiveness checks that the live, connected nodes in group (a majority
// of the group, fully connected among themselves) elect a leader and commit
// a proposal within maxTicks. It fails the test otherwise.
func (s *Sim) CheckLiveness(group []raft.NodeID, maxTicks int) {
	s.tb.Helper()
	if len(group) < s.quorum() {
		s.tb.Fatalf("CheckLiveness: %d nodes are not a quorum", len(group))
	}
	start := s.now
	var l raft.NodeID
	if !s.RunUntil(maxTicks, func() bool { l = s.LeaderAmong(group); return l != raft.None }) {
		if !s.failed {
			s.fail("liveness: %v alive and connected since tick %d, but no leader among them after %d ticks", group, start, maxTicks)
		}
		return
	}
	data := fmt.Appendf(nil, "liveness@%d", s.now)
	deadline := start + uint64(maxTicks)
	var lastErr error
	for s.now < deadline && !s.failed {
		l = s.LeaderAmong(group)
		if l == raft.None {
			s.Tick()
			continue
		}
		idx, term, err := s.Propose(l, data)
		if err != nil {
			lastErr = fmt.Errorf("node %d refused the proposal: %w", l, err)
			s.Tick()
			continue
		}
		// Wait for it, but give up on it once its leader is gone (it may
		// have been lost with it) and propose again.
		if s.RunUntil(int(deadline-s.now), func() bool {
			return s.IsCommitted(idx, term) || s.nodes[l].role != raft.Leader || s.nodes[l].leaderTerm != term
		}) && s.IsCommitted(idx, term) {
			s.livenessWorst = max(s.livenessWorst, int(s.now-start))
			return
		}
		lastErr = fmt.Errorf("proposal %d/%d to node %d did not commit", term, idx, l)
	}
	if !s.failed {
		s.fail("liveness: %v alive and connected since tick %d, but nothing committed within %d ticks (%v)", group, start, maxTicks, lastErr)
	}
}

// CheckConverged checks that every node is alive and has applied the same
// committed prefix, up to the highest committed index: the final state of a
// run in which every node is up and connected.
func (s *Sim) CheckConverged() {
	s.tb.Helper()
	want := s.check.commit(s.check.maxCommitted)
	for _, n := range s.nodes[1:] {
		switch {
		case !n.alive:
			s.fail("converged: node %d is down", n.id)
		case n.sm.Applied != s.check.maxCommitted || n.sm.Chain != want.chain:
			s.fail("converged: node %d applied up to %d, committed is %d", n.id, n.sm.Applied, s.check.maxCommitted)
		}
		if s.failed {
			return
		}
	}
}

// WaitConverged ticks until the last proposal is resolved (see
// lastProposalPending) and every node has applied everything committed (at
// most maxTicks), then checks it.
func (s *Sim) WaitConverged(maxTicks int) {
	s.tb.Helper()
	s.Settle()
	s.RunUntil(maxTicks, func() bool {
		if s.lastProposalPending() {
			return false
		}
		for _, n := range s.nodes[1:] {
			if !n.alive || n.sm.Applied != s.check.maxCommitted {
				return false
			}
		}
		return true
	})
	s.CheckConverged()
}

// lastProposalPending reports whether the last accepted proposal may still
// commit: its index is not known committed yet, and the node it was made
// to still leads the term it was made in.
func (s *Sim) lastProposalPending() bool {
	if len(s.proposals) == 0 {
		return false
	}
	p := s.proposals[len(s.proposals)-1]
	if _, known := s.CommittedTerm(p.Index); known {
		return false
	}
	n := s.nodes[p.Node]
	return n.alive && n.role == raft.Leader && n.leaderTerm == p.Term
}

// CheckProposals checks that every proposal known committed (its index
// committed with its term) holds its data in every live node's state
// machine that has applied that far: acknowledged writes are never lost or
// changed.
func (s *Sim) CheckProposals() {
	s.tb.Helper()
	for _, p := range s.proposals {
		if !s.IsCommitted(p.Index, p.Term) {
			continue
		}
		for _, n := range s.nodes[1:] {
			if !n.alive || n.sm.Applied < p.Index {
				continue
			}
			v, ok := n.sm.valueAt(p.Index)
			if !ok || !bytes.Equal(v, p.Data) {
				s.fail("proposal %q committed at %d/%d, but node %d applied %q there", p.Data, p.Term, p.Index, n.id, v)
				return
			}
		}
	}
}

// WaitUntilCommittedAll ticks until every accepted proposal has been
// resolved (committed, or its index committed with another term) and the
// given nodes have applied everything committed, failing after maxTicks.
func (s *Sim) WaitUntilCommittedAll(ids []raft.NodeID, maxTicks int) {
	s.tb.Helper()
	s.Settle()
	ok := s.RunUntil(maxTicks, func() bool {
		for _, id := range ids {
			if n := s.nodes[id]; !n.alive || n.sm.Applied < s.check.maxCommitted {
				return false
			}
		}
		last := s.proposals[len(s.proposals)-1]
		_, known := s.CommittedTerm(last.Index)
		return known
	})
	if !ok {
		s.fail("nodes %v did not commit and apply the last proposal within %d ticks", ids, maxTicks)
	}
}

package rafttest

import (
	"bytes"

	"github.com/cairnkv/cairn/raft"
)

// checker holds what the invariant checks remember across the whole run:
// every leader ever seen, every vote ever granted, every log entry ever
// made durable, and every entry known to be committed. The checks
// themselves are Sim methods (they need the nodes); each runs at the step
// that can break it, so a violation is reported at the step that caused it.
//
// Raft's safety properties (Figure 3 of the paper) and where they are
// checked:
//
//   - Election Safety: at most one leader per term. checkLeader, whenever a
//     Ready reports a node as leader; and checkVote, which catches the usual
//     cause (a node voting twice in one term) when the second vote is sent.
//   - Log Matching: entries with the same index and term have identical
//     prefixes. checkAppend, for every entry any node makes durable, against
//     every entry with that index and term ever made durable anywhere.
//   - Leader Completeness: a leader holds every entry committed in earlier
//     terms. checkLeader when a node becomes leader, and noteCommit whenever
//     the commit point moves, against every leader of a later term.
//   - State Machine Safety: no two nodes apply different entries at one
//     index. apply and installSnapshot, against the one committed prefix.
//   - Durability of commits (not lost across crashes): after every write to
//     any disk, a quorum of durable logs holds the latest committed entry,
//     no node lacking it could still be elected (checkQuorumHolds), and no
//     node ever overwrites a committed entry it held.
//   - Linearizable reads: checkRead and serveReads.
//
// Liveness is checked by the tests and schedules that heal the network
// (see Sim.CheckLiveness), and at every tick by the liveness monitor where
// it is on (see livenessMonitor).
type checker struct {
	leaders map[raft.Term]raft.NodeID
	votes   map[voteKey]raft.NodeID
	logs    map[entryKey]entryOwner
	// committed[i] describes the committed entry at index i, once any node
	// has shown it to be committed (persisted a Commit covering it, applied
	// it, or installed a snapshot past it).
	committed    []commitRec
	maxCommitted raft.Index
}

type voteKey struct {
	term  raft.Term
	voter raft.NodeID
}

type entryKey struct {
	index raft.Index
	term  raft.Term
}

type entryOwner struct {
	chain uint64
	node  raft.NodeID
	tick  uint64
}

type commitRec struct {
	known bool
	term  raft.Term
	chain uint64
	// seenTerm is the term of the node that first showed the entry to be
	// committed. It is at least the term of the leader that committed it,
	// which is all the leader completeness check needs: every leader of a
	// term above seenTerm must hold the entry.
	seenTerm raft.Term
	by       raft.NodeID
}

func newChecker() checker {
	return checker{
		leaders:   make(map[raft.Term]raft.NodeID),
		votes:     make(map[voteKey]raft.NodeID),
		logs:      make(map[entryKey]entryOwner),
		committed: []commitRec{{known: true, chain: emptyChain}},
	}
}

// commit returns what is known of the committed entry at i.
func (c *checker) commit(i raft.Index) commitRec {
	if int(i) < len(c.committed) {
		return c.committed[i]
	}
	return commitRec{}
}

// setCommitted records that the entry at i, with the given term and chain
// hash, is committed. The caller has checked it against any earlier record.
func (c *checker) setCommitted(i raft.Index, term raft.Term, chain uint64, seenTerm raft.Term, by raft.NodeID) {
	for raft.Index(len(c.committed)) <= i {
		c.committed = append(c.committed, commitRec{})
	}
	if !c.committed[i].known {
		c.committed[i] = commitRec{known: true, term: term, chain: chain, seenTerm: seenTerm, by: by}
	}
	if i > c.maxCommitted {
		c.maxCommitted = i
	}
}

// checkLeader runs when node n reports itself leader of term, with the log
// it will hold once the Ready at hand is persisted (chainAt).
func (s *Sim) checkLeader(n *simNode, term raft.Term, chainAt func(raft.Index) (uint64, bool)) {
	c := &s.check
	if other, ok := c.leaders[term]; ok && other != n.id {
		s.fail("election safety: nodes %d and %d are both leader of term %d", other, n.id, term)
		return
	}
	c.leaders[term] = n.id
	// Leader completeness (§5.4): the new leader must hold every entry
	// known committed by a node of a term no later than its own. By log
	// matching, holding the last such entry means holding them all.
	for i := c.maxCommitted; i > 0; i-- {
		rec := c.commit(i)
		if !rec.known || rec.seenTerm > term {
			continue
		}
		if ch, ok := chainAt(i); !ok || ch != rec.chain {
			s.fail("leader completeness: node %d became leader of term %d without committed entry %d (term %d, first committed as seen by node %d in term %d)",
				n.id, term, i, rec.term, rec.by, rec.seenTerm)
		}
		return
	}
}

// checkVote runs for every vote a node grants.
func (s *Sim) checkVote(m *raft.Message) {
	k := voteKey{term: m.Term, voter: m.From}
	if cand, ok := s.check.votes[k]; ok && cand != m.To {
		s.fail("election safety: node %d granted its vote in term %d to both %d and %d", m.From, m.Term, cand, m.To)
		return
	}
	s.check.votes[k] = m.To
}

// checkAppend runs for every entry node n makes durable, with the chain hash
// of its log up to it (log matching, §5.3).
func (s *Sim) checkAppend(n *simNode, e *raft.Entry, chain uint64) {
	k := entryKey{index: e.Index, term: e.Term}
	if prev, ok := s.check.logs[k]; ok {
		if prev.chain != chain {
			s.fail("log matching: node %d stored entry %d/%d with a log prefix that differs from the one node %d stored with it at tick %d",
				n.id, e.Term, e.Index, prev.node, prev.tick)
		}
		return
	}
	s.check.logs[k] = entryOwner{chain: chain, node: n.id, tick: s.now}
}

// noteCommit runs when node n has durably recorded commit index ci.
func (s *Sim) noteCommit(n *simNode, ci raft.Index) {
	c := &s.check
	if ci > n.log.last() {
		s.fail("node %d persisted commit index %d beyond its durable log (last index %d)", n.id, ci, n.log.last())
		return
	}
	// The node's log up to min(ci, maxCommitted) must be the committed
	// prefix: one comparison of chain hashes checks all of it.
	if k := min(ci, c.maxCommitted); k >= n.log.offset {
		if rec := c.commit(k); rec.known {
			if ch, _ := n.log.chainAt(k); ch != rec.chain {
				s.fail("state machine safety: node %d committed index %d with a log prefix that differs from the committed one (first seen by node %d)",
					n.id, k, rec.by)
				return
			}
		}
	}
	old := c.maxCommitted
	for i := max(old+1, n.log.offset+1); i <= ci; i++ {
		t, _ := n.log.termAt(i)
		ch, _ := n.log.chainAt(i)
		c.setCommitted(i, t, ch, n.term, n.id)
	}
	if ci > old {
		s.checkLeadersHold(ci)
		s.checkQuorumHolds()
	}
}

// checkLeadersHold checks that every current leader of a term later than
// the one committed entry i was first seen in holds it (leader
// completeness, for commits that complete after a later leader's election).
func (s *Sim) checkLeadersHold(i raft.Index) {
	rec := s.check.commit(i)
	if !rec.known {
		return
	}
	for _, m := range s.nodes[1:] {
		if !m.alive || m.role != raft.Leader || m.leaderTerm <= rec.seenTerm {
			continue
		}
		if ch, ok := m.log.chainAt(i); !ok || ch != rec.chain {
			s.fail("leader completeness: entry %d (term %d) was committed in term %d, but node %d, leader of later term %d, does not hold it",
				i, rec.term, rec.seenTerm, m.id, m.leaderTerm)
			return
		}
	}
}

// checkQuorumHolds checks that the latest committed entry (and so, by log
// matching, every earlier one) is safe in the durable logs, crashed nodes'
// included, which is what a commit must survive:
//
//   - a quorum of them holds it, so it survives any crash of a minority
//     and never depends on a disk write that has not happened;
//   - no node that lacks it can still be elected: at most a minority of
//     durable logs, its own included, is no more up-to-date (§5.4.1) than
//     its own, so every quorum has a voter that refuses it.
//
// The second is the invariant behind leader completeness (§5.4.3), and it
// holds at every step of a correct run: the latest committed entry K was
// committed by counting the replicas of K itself, an entry of the leader's
// term t (§5.4.2), so a quorum holds K and with it a last entry of term t
// or later at an index of K or later. A node without K holds no entry of a
// term after t (every leader after t holds K and appends after it) and no
// entry of term t at or past K, so every member of that quorum is more
// up-to-date than it. A core that commits an earlier term's entry by
// counting replicas breaks it at once whenever a node with a later-term
// entry lacks the committed one (Figure 8 (c)), whether or not the run
// goes on to elect that node; other checks see the bug only then.
func (s *Sim) checkQuorumHolds() {
	c := &s.check
	i := c.maxCommitted
	rec := c.commit(i)
	if i == 0 || !rec.known {
		return
	}
	holders := 0
	for _, n := range s.nodes[1:] {
		if n.holds(i, rec.chain) {
			holders++
		}
	}
	if holders < s.quorum() {
		s.fail("committed entry %d (term %d) is held by only %d durable logs; a quorum is %d", i, rec.term, holders, s.quorum())
		return
	}
	if holders == len(s.nodes)-1 {
		return
	}
	for _, n := range s.nodes[1:] {
		if n.holds(i, rec.chain) {
			continue
		}
		lastTerm, last := n.log.lastTerm(), n.log.last()
		electors := 0
		for _, v := range s.nodes[1:] {
			if v.log.notAfter(lastTerm, last) {
				electors++
			}
		}
		if electors >= s.quorum() {
			var ids []raft.NodeID
			for _, v := range s.nodes[1:] {
				if v.log.notAfter(lastTerm, last) {
					ids = append(ids, v.id)
				}
			}
			s.fail("committed entry %d (term %d) can be lost: node %d does not hold it, yet its durable log (last entry %d/%d) is at least as up-to-date as those of %v, a quorum, which can elect it (Figure 8: an entry of an earlier term committed by counting replicas?)",
				i, rec.term, n.id, lastTerm, last, ids)
			return
		}
	}
}

// holds reports whether n's durable log holds the committed entry at i
// (with chain hash chain), or has compacted past it: the snapshot at the
// compaction point was taken from a state machine that applied the
// committed prefix (checked when it was applied or installed).
func (n *simNode) holds(i raft.Index, chain uint64) bool {
	if ch, ok := n.log.chainAt(i); ok {
		return ch == chain
	}
	return n.log.offset > i
}

// checkApplied runs after node n's state machine applied e (its chain hash
// is now sm.Chain): state machine safety (§5.4.3).
func (s *Sim) checkApplied(n *simNode, e *raft.Entry) {
	if e.Index > n.commit {
		s.fail("node %d applied entry %d/%d beyond its durable commit index %d", n.id, e.Term, e.Index, n.commit)
		return
	}
	if ch, ok := n.log.chainAt(e.Index); ok && ch != n.sm.Chain {
		s.fail("node %d applied entry %d/%d that differs from its own durable log", n.id, e.Term, e.Index)
		return
	}
	s.checkCommittedPrefix(n, e.Index, e.Term, n.sm.Chain, "applied")
}

// checkCommittedPrefix compares a prefix (ending at index i, term t, chain
// hash chain) that node n has applied or installed with the committed one,
// and records it as committed if it is the first to be seen.
func (s *Sim) checkCommittedPrefix(n *simNode, i raft.Index, t raft.Term, chain uint64, what string) {
	if rec := s.check.commit(i); rec.known {
		if rec.chain != chain {
			s.fail("state machine safety: node %d %s entry %d/%d, but entry %d/%d was committed there (first seen by node %d)",
				n.id, what, t, i, rec.term, i, rec.by)
		}
		return
	}
	old := s.check.maxCommitted
	s.check.setCommitted(i, t, chain, n.term, n.id)
	if i > old {
		s.checkLeadersHold(i)
		s.checkQuorumHolds()
	}
}

// checkRead runs when node n answers a read (ReadIndex or LeaseRead): the
// read point must be at least every index committed when the read was
// asked. The read then waits for n's state machine (see serveReads).
func (s *Sim) checkRead(n *simNode, rs raft.ReadState) {
	r, ok := s.reads[rs.ID]
	if !ok {
		s.fail("node %d answered read %d, which nobody asked for", n.id, rs.ID)
		return
	}
	if r.Node != n.id {
		s.fail("node %d answered read %d, which was asked of node %d", n.id, rs.ID, r.Node)
		return
	}
	if rs.Index < r.MinIndex {
		s.fail("linearizability: node %d answered %s %d (asked at tick %d) with index %d, but entry %d was already committed when it was asked",
			n.id, r.kind(), rs.ID, r.Tick, rs.Index, r.MinIndex)
		return
	}
	if r.Answered {
		return
	}
	r.Answered, r.Index, r.AnsweredTick = true, rs.Index, s.now
	r.Immediate = n.readies == r.readies+1
	n.reads = append(n.reads, r)
}

// serveReads serves the reads node n answered whose read point its state
// machine has reached, as a driver does, and checks the state each is
// served from: it is the committed prefix up to where n has applied
// (checked as entries are applied) and holds the latest write acknowledged
// before the read was asked, with its data.
func (s *Sim) serveReads(n *simNode) {
	k := 0
	for _, r := range n.reads {
		if r.Index > n.sm.Applied {
			n.reads[k] = r
			k++
			continue
		}
		r.Served, r.ServedApplied = true, n.sm.Applied
		if r.AckedIndex > 0 {
			if v, ok := n.sm.valueAt(r.AckedIndex); !ok || !bytes.Equal(v, r.AckedData) {
				s.fail("linearizability: node %d served %s %d (asked at tick %d, read point %d) from a state machine at %d that lacks write %q, acknowledged at index %d before the read was asked",
					n.id, r.kind(), r.ID, r.Tick, r.Index, n.sm.Applied, r.AckedData, r.AckedIndex)
				return
			}
		}
	}
	clear(n.reads[k:])
	n.reads = n.reads[:k]
}

func (r *Read) kind() string {
	if r.Lease {
		return "lease read"
	}
	return "read"
}

// noteApplied runs after node n applied e: if n is the leader that
// appended e (of e's term), applying it is when a driver acknowledges the
// write to its client.
func (s *Sim) noteApplied(n *simNode, e *raft.Entry) {
	if e.Type == raft.EntryNormal && e.Index > s.lastAcked && s.check.leaders[e.Term] == n.id {
		s.lastAcked, s.lastAckedData = e.Index, e.Data
	}
}

func (s *Sim) quorum() int { return len(s.nodes[1:])/2 + 1 }

// checkContract checks the parts of the driver contract that a core can get
// wrong in a way no crash-free run would notice.
//
// firstNew is the first index this Ready writes: entries from it on are not
// durable until step 2.
func (s *Sim) checkContract(n *simNode, rd *raft.Ready, firstNew raft.Index) {
	if s.opts.SkipContractChecks {
		return
	}
	hs := rd.HardState
	if !hs.IsEmpty() {
		if hs.Term < n.term {
			s.fail("node %d: HardState term went back from %d to %d", n.id, n.term, hs.Term)
			return
		}
		if hs.Term == n.term && n.vote != raft.None && hs.Vote != n.vote {
			s.fail("node %d: HardState changed its vote in term %d from %d to %d", n.id, n.term, n.vote, hs.Vote)
			return
		}
		if hs.Commit < n.commit {
			s.fail("node %d: HardState commit went back from %d to %d", n.id, n.commit, hs.Commit)
			return
		}
	}
	mustSync := len(rd.Entries) > 0 || rd.Snapshot != nil ||
		(!hs.IsEmpty() && (hs.Term != n.term || hs.Vote != n.vote))
	if mustSync && !rd.MustSync {
		s.fail("node %d: Ready has entries, a snapshot or a new term or vote, but MustSync is false", n.id)
		return
	}
	// Votes, and acknowledgements of entries, vouch for durable state: in
	// Messages (sent before this Ready is persisted) they must only vouch
	// for what is already on disk.
	for i := range rd.Messages {
		m := &rd.Messages[i]
		switch {
		case m.Type == raft.MsgVoteResp && !m.Reject && !(n.term == m.Term && n.vote == m.To):
			s.fail("node %d: vote for %d in term %d is in Ready.Messages, sent before the vote is durable", n.id, m.To, m.Term)
			return
		case m.Type == raft.MsgVote && !(n.term == m.Term && n.vote == n.id):
			s.fail("node %d: vote request of term %d is in Ready.Messages, sent before its own vote is durable", n.id, m.Term)
			return
		case m.Type == raft.MsgAppResp && !m.Reject && m.Index >= firstNew:
			s.fail("node %d: acknowledges entries up to %d in Ready.Messages, before this Ready makes them durable (it writes from %d)", n.id, m.Index, firstNew)
			return
		}
	}
}

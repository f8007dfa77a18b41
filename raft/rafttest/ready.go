package rafttest

import (
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// This file is the simulated driver: how a node's Ready is processed, step
// by step, with the crash points between the steps, and what the disk and
// the state machine do with it.

// handleReady takes one Ready from n and processes it in the order the
// raft.Ready documentation prescribes, giving the faults a chance to crash
// the node between steps.
func (s *Sim) handleReady(n *simNode) {
	wasRole, prevCommit := n.role, n.commit
	rd := n.rn.Ready()
	n.readies++
	s.record(traceEvent{kind: evReady, node: n.id, rd: summarize(&rd)})
	if s.opts.Trace {
		s.tb.Logf("t=%d %d ready: %s", s.now, n.id, describeReady(&rd))
	}
	if !s.prepare(n, &rd) {
		return
	}
	var trig uint32
	if len(s.faults) > 0 {
		for t := range numTriggers {
			if t.matches(&rd, wasRole, n.role, prevCommit) {
				trig |= 1 << t
			}
		}
	}

	if s.crashAt(n, BeforeSend, trig, &rd) {
		return
	}
	// 1. Messages: they depend only on what earlier Readys made durable.
	s.send(n, rd.Messages)
	if s.failed || s.crashAt(n, BeforePersist, trig, &rd) {
		return
	}
	// 2. Persist snapshot, entries, hard state.
	s.persist(n, &rd)
	if s.failed || !n.alive || s.crashAt(n, AfterPersist, trig, &rd) {
		return
	}
	// 3. Messages that vouch for what step 2 wrote.
	s.send(n, rd.MessagesAfterPersist)
	if s.failed || s.crashAt(n, BeforeApply, trig, &rd) {
		return
	}
	// 4. Install the snapshot, apply committed entries, serve reads.
	if rd.Snapshot != nil {
		s.installSnapshot(n, rd.Snapshot)
	}
	mid := len(rd.CommittedEntries) / 2
	for i := range rd.CommittedEntries {
		if i == mid && s.crashAt(n, MidApply, trig, &rd) {
			return
		}
		e := &rd.CommittedEntries[i]
		if err := n.sm.apply(e); err != nil {
			s.fail("node %d: %v", n.id, err)
			return
		}
		s.checkApplied(n, e)
		if s.failed {
			return
		}
		s.noteApplied(n, e)
	}
	if len(rd.CommittedEntries) == 0 && s.crashAt(n, MidApply, trig, &rd) {
		return
	}
	for _, rs := range rd.ReadStates {
		s.checkRead(n, rs)
	}
	if len(n.reads) > 0 && !s.failed {
		s.serveReads(n)
	}
	if s.failed || s.crashAt(n, BeforeAdvance, trig, &rd) {
		return
	}
	// 5. Advance.
	n.rn.Advance(rd)
	s.maybeSnapshot(n)
}

// prepare checks rd against the driver contract, computes the chain hashes
// of the entries it will persist, and notes role changes (checking a new
// leader against the log it will hold). It reports false if the run failed.
func (s *Sim) prepare(n *simNode, rd *raft.Ready) bool {
	// Chain hashes of the entries to persist, from the log they extend
	// (the new snapshot's point, or the disk log).
	n.pendTerms, n.pendChains = n.pendTerms[:0], n.pendChains[:0]
	base := n.log.offset
	if rd.Snapshot != nil {
		base = rd.Snapshot.Index
	}
	if rd.Snapshot != nil && n.incoming[rd.Snapshot.Index] == nil {
		s.fail("node %d: Ready installs snapshot %d, which never arrived with a MsgSnap", n.id, rd.Snapshot.Index)
		return false
	}
	ents := rd.Entries
	for len(ents) > 0 && ents[0].Index <= base {
		ents = ents[1:] // already folded into the snapshot; storage skips them
	}
	if len(ents) > 0 {
		first := ents[0].Index
		var prev uint64
		var ok bool
		var prevTerm raft.Term
		if rd.Snapshot != nil {
			if first == rd.Snapshot.Index+1 {
				prev, prevTerm, ok = n.incoming[rd.Snapshot.Index].Chain, rd.Snapshot.Term, true
			}
		} else {
			prev, ok = n.log.chainAt(first - 1)
			prevTerm, _ = n.log.termAt(first - 1)
		}
		if !ok {
			s.fail("node %d: Ready appends entries from %d, leaving a gap after its log (last %d)", n.id, first, n.log.last())
			return false
		}
		for i := range ents {
			e := &ents[i]
			if i > 0 && e.Index != ents[i-1].Index+1 {
				s.fail("node %d: Ready entries are not contiguous at %d", n.id, e.Index)
				return false
			}
			if e.Term < prevTerm {
				s.fail("node %d: Ready appends entry %d/%d after an entry of later term %d (log terms must not decrease)", n.id, e.Term, e.Index, prevTerm)
				return false
			}
			prev, prevTerm = chainHash(prev, e), e.Term
			n.pendTerms = append(n.pendTerms, e.Term)
			n.pendChains = append(n.pendChains, prev)
		}
	}
	firstNew := n.log.last() + 1 // the first index this Ready (re)writes
	switch {
	case rd.Snapshot != nil:
		firstNew = 0
	case len(ents) > 0:
		firstNew = ents[0].Index
	}
	s.checkContract(n, rd, firstNew)
	if s.failed {
		return false
	}
	if rd.SoftState != nil {
		term := n.term
		if !rd.HardState.IsEmpty() {
			term = rd.HardState.Term
		}
		if rd.SoftState.Role == raft.Leader && n.role != raft.Leader {
			s.stats.LeaderChanges++
			n.leaderTerm = term
			s.checkLeader(n, term, func(i raft.Index) (uint64, bool) { return s.prospectiveChain(n, rd, ents, i) })
		}
		n.role, n.lead = rd.SoftState.Role, rd.SoftState.Lead
		if n.role != raft.Leader {
			n.leaderTerm = 0
		}
	}
	return !s.failed
}

// prospectiveChain is the chain hash at i of n's log once rd (whose entries
// past any snapshot are ents) is persisted.
func (s *Sim) prospectiveChain(n *simNode, rd *raft.Ready, ents []raft.Entry, i raft.Index) (uint64, bool) {
	if len(ents) > 0 && i >= ents[0].Index {
		if k := int(i - ents[0].Index); k < len(n.pendChains) {
			return n.pendChains[k], true
		}
		return 0, false
	}
	if rd.Snapshot != nil {
		if i == rd.Snapshot.Index {
			return n.incoming[i].Chain, true
		}
		return 0, false
	}
	return n.log.chainAt(i)
}

// crashAt crashes n at point p if an armed fault or the crash hook says so.
func (s *Sim) crashAt(n *simNode, p FaultPoint, trig uint32, rd *raft.Ready) bool {
	for _, f := range s.faults {
		if f.Point != p || trig&(1<<f.Trigger) == 0 || (f.Max > 0 && f.fired >= f.Max) {
			continue
		}
		if f.Prob > 0 && f.Prob < 1 && s.rng.Float64() >= f.Prob {
			continue
		}
		f.fired++
		s.record(traceEvent{kind: evFault, node: n.id, note: f.String()})
		s.Crash(n.id)
		if f.RestartAfter >= 0 {
			n.restartAt = s.now + uint64(f.RestartAfter) + 1
		}
		return true
	}
	if s.CrashHook != nil && s.callCrashHook(n.id, p, *rd) {
		s.record(traceEvent{kind: evFault, node: n.id, note: "crash hook at " + p.String()})
		s.Crash(n.id)
		return true
	}
	return false
}

// callCrashHook hands the hook its own copy of the Ready, so that the
// Ready being processed does not escape to the heap in every run.
func (s *Sim) callCrashHook(id raft.NodeID, p FaultPoint, rd raft.Ready) bool {
	return s.CrashHook(id, p, &rd)
}

// persist writes rd's snapshot, entries and hard state to n's disk (step 2),
// checking each write. In WALStorage mode a storage failure crashes (or
// halts) the node: the caller checks n.alive.
func (s *Sim) persist(n *simNode, rd *raft.Ready) {
	if n.disk == nil {
		s.persistMirror(n, rd)
		return
	}
	if !s.saveReady(n, rd) {
		return
	}
	s.persistMirror(n, rd)
	if !s.failed {
		s.afterSave(n, rd)
	}
}

// persistMirror records rd's snapshot, entries and hard state as durable
// on n: in the MemoryStorage (MemStorage mode) and in the mirror the
// checks read, checking each write. In WALStorage mode the WAL has already
// made them durable.
func (s *Sim) persistMirror(n *simNode, rd *raft.Ready) {
	if rd.Snapshot != nil {
		meta := *rd.Snapshot
		data := n.incoming[meta.Index]
		if data.Applied != meta.Index || data.AppliedTerm != meta.Term {
			s.fail("node %d: snapshot data at %d/%d does not match its metadata %d/%d", n.id, data.AppliedTerm, data.Applied, meta.Term, meta.Index)
			return
		}
		if n.storage != nil {
			if err := n.storage.ApplySnapshot(meta); err != nil {
				s.fail("node %d: persisting snapshot %d/%d: %v", n.id, meta.Term, meta.Index, err)
				return
			}
		}
		// A snapshot replaces the whole log. If the node held a committed
		// entry past the snapshot, it has now lost it.
		if k := min(n.log.last(), s.check.maxCommitted); k > meta.Index {
			if rec := s.check.commit(k); rec.known {
				if ch, _ := n.log.chainAt(k); ch == rec.chain {
					s.fail("node %d: installing snapshot %d discarded committed entry %d", n.id, meta.Index, k)
					return
				}
			}
		}
		n.log.reset(meta.Index, meta.Term, data.Chain)
		n.appended++
		n.snap = data
		n.snaps = append(n.snaps, data)
		s.checkCommittedPrefix(n, meta.Index, meta.Term, data.Chain, "stored a snapshot at")
		if s.failed {
			return
		}
	}
	if len(n.pendChains) > 0 {
		first := rd.Entries[len(rd.Entries)-len(n.pendChains)].Index
		ents := rd.Entries[len(rd.Entries)-len(n.pendChains):]
		maxTerm := max(n.term, rd.HardState.Term)
		for i := range ents {
			if ents[i].Term > maxTerm {
				s.fail("node %d in term %d stores entry %d/%d from a later term", n.id, maxTerm, ents[i].Term, ents[i].Index)
				return
			}
		}
		// Overwriting must never replace a committed entry (§5.4: a leader
		// never asks a follower to).
		oldLast := n.log.last()
		k := min(oldLast, s.check.maxCommitted)
		rec := s.check.commit(k)
		heldCommitted := false
		if k >= first && rec.known {
			ch, _ := n.log.chainAt(k)
			heldCommitted = ch == rec.chain
		}
		if n.storage != nil {
			if err := n.storage.Append(ents); err != nil {
				s.fail("node %d: persisting entries [%d, %d]: %v", n.id, first, ents[len(ents)-1].Index, err)
				return
			}
		}
		n.log.truncateAppend(first, n.pendTerms, n.pendChains)
		n.appended += uint64(len(ents))
		if heldCommitted {
			if ch, ok := n.log.chainAt(k); !ok || ch != rec.chain {
				s.fail("node %d overwrote committed entry %d (term %d) while appending from %d", n.id, k, rec.term, first)
				return
			}
		}
		for i := range ents {
			s.checkAppend(n, &ents[i], n.pendChains[i])
			if s.failed {
				return
			}
		}
	}
	if hs := rd.HardState; !hs.IsEmpty() {
		if n.storage != nil {
			n.storage.SetHardState(hs)
		}
		n.term, n.vote = hs.Term, hs.Vote
		if hs.Commit != n.commit {
			n.commit = hs.Commit
			s.noteCommit(n, hs.Commit)
			if s.failed {
				return
			}
		}
	}
	if n.role == raft.Leader && n.leaderTerm != n.term {
		s.fail("node %d reports itself leader of term %d but its durable term is %d", n.id, n.leaderTerm, n.term)
		return
	}
	s.checkQuorumHolds()
}

// installSnapshot restores n's state machine from the snapshot it has just
// persisted (step 4).
func (s *Sim) installSnapshot(n *simNode, meta *raft.SnapshotMeta) {
	if meta.Index < n.sm.Applied {
		s.fail("node %d: installing snapshot %d would roll its state machine back from %d", n.id, meta.Index, n.sm.Applied)
		return
	}
	n.sm = n.snap.snapshot()
	for i := range n.incoming {
		if i <= meta.Index {
			delete(n.incoming, i)
		}
	}
}

// maybeSnapshot takes a snapshot of n's state machine and compacts its log,
// as Options.SnapshotEvery asks.
func (s *Sim) maybeSnapshot(n *simNode) {
	every := raft.Index(s.opts.SnapshotEvery)
	if every == 0 || n.sm.Applied < every {
		return
	}
	var last raft.Index
	if n.snap != nil {
		last = n.snap.Applied
	}
	if n.sm.Applied < last+every {
		return
	}
	if n.disk != nil {
		s.snapshotToDisk(n)
		return
	}
	if _, err := n.storage.CreateSnapshot(n.sm.Applied, n.sm.Conf); err != nil {
		s.fail("node %d: snapshot at applied index %d: %v", n.id, n.sm.Applied, err)
		return
	}
	n.snap = n.sm.snapshot()
	n.snaps = append(n.snaps, n.snap)
	if len(n.snaps) > 4 {
		n.snaps = slices.Delete(n.snaps, 0, len(n.snaps)-4)
	}
	keep := raft.Index(s.opts.SnapshotKeep)
	if n.sm.Applied > keep && n.sm.Applied-keep > n.log.offset {
		to := n.sm.Applied - keep
		if err := n.storage.Compact(to); err != nil {
			s.fail("node %d: compact to %d: %v", n.id, to, err)
			return
		}
		n.log.compact(to)
	}
	s.record(traceEvent{kind: evSnapshot, node: n.id, a: uint64(n.sm.Applied)})
}

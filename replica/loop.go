package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// This file is the run goroutine: everything in it runs there and nowhere
// else. The loop itself is only a scheduler; the work is in the handlers
// (onTick, stepQueued, propose, addWaiters, handleReports, handleReady),
// which a future scheduler hosting many groups on a few goroutines can call
// the same way.

// run is the run goroutine's body.
func (r *Replica) run() {
	cause := r.loop()
	r.cancelTicks()
	r.shutdown(cause)
	close(r.done)
}

// loop serves inputs and Readies until Stop or a fatal error.
func (r *Replica) loop() error {
	for {
		var ready chan struct{}
		if r.node.HasReady() && r.tick >= r.full.retryAt {
			// Closed: selectable at once, in turn with the inputs. While the
			// disk is full, each Ready retries the write, once per tick.
			ready = r.ready
		}
		select {
		case <-r.stopc:
			return nil
		case <-r.ticks:
			r.onTick()
		case m := <-r.recvc:
			r.stepQueued(m)
		case p := <-r.propc:
			r.propose(p)
		case w := <-r.readc:
			r.addWaiters(w)
		case fn := <-r.ctlc:
			fn()
		case <-r.wake:
			r.handleReports()
		case <-ready:
			if err := r.handleReady(); err != nil {
				r.logger.Error("replica stopping on fatal error", "term", uint64(r.term), "err", err)
				return fmt.Errorf("replica %d of group %d: %w", r.id, r.cfg.Group, err)
			}
		}
		if r.testHook != nil {
			r.testHook()
		}
	}
}

// shutdown fails every pending call. The caller then closes done.
func (r *Replica) shutdown(cause error) {
	r.cause = cause
	r.failErr = ErrStopped
	if cause != nil {
		r.failErr = fmt.Errorf("%w: %w", ErrStopped, cause)
	}
	// A stopped replica leads nothing and follows no one: it sends no more
	// heartbeats, so its group elects another leader if it led.
	r.lead, r.role = raft.None, raft.Follower
	r.publishLeader()
	for idx, p := range r.proposals {
		delete(r.proposals, idx)
		for ; p != nil; p = p.older {
			p.finish(nil, r.failErr)
		}
	}
	for id, b := range r.reads {
		delete(r.reads, id)
		for _, w := range b.waiters {
			w.finish(r.failErr)
		}
	}
	for _, w := range r.waits {
		w.finish(r.failErr)
	}
	r.waits = nil
	for _, tr := range r.transfers {
		tr.done <- r.failErr
	}
	r.transfers = nil
}

func (r *Replica) onTick() {
	if !r.catchingUp {
		// A replica catching up does not campaign (catchup.go).
		r.node.Tick()
	}
	r.tick++
	if len(r.reads) > 0 {
		r.retryReads(false)
	}
	if len(r.transfers) > 0 {
		r.transfers = slices.DeleteFunc(r.transfers, func(tr *transfer) bool {
			if r.tick < tr.deadline {
				return false
			}
			tr.done <- fmt.Errorf("%w: node %d did not take over", ErrTransferTimeout, tr.to)
			return true
		})
	}
}

// stepQueued steps first and whatever else is queued (up to
// MaxStepBatch), so that one Ready answers many messages.
func (r *Replica) stepQueued(first raft.Message) {
	r.step(first)
	for range r.cfg.MaxStepBatch - 1 {
		select {
		case m := <-r.recvc:
			r.step(m)
		default:
			return
		}
	}
}

func (r *Replica) step(m raft.Message) {
	if r.catchingUp && (m.Type == raft.MsgVote || m.Type == raft.MsgPreVote) {
		// A replica catching up does not vote (catchup.go).
		r.logger.Debug("catching up: ignoring vote request", "term", uint64(r.term), "type", m.Type.String(), "from", uint64(m.From))
		return
	}
	if err := r.node.Step(m); err != nil {
		r.logger.Debug("dropped message", "term", uint64(r.term), "type", m.Type.String(), "from", uint64(m.From), "err", err)
	}
}

// propose hands first and every other queued proposal to the core in one
// call: one batch of entries, appended and replicated together.
func (r *Replica) propose(first *Proposal) {
	batch := append(r.batch, first)
drain:
	for len(batch) < r.cfg.MaxProposalBatch {
		select {
		case p := <-r.propc:
			batch = append(batch, p)
		default:
			break drain
		}
	}
	cmds := make([][]byte, len(batch))
	for k, p := range batch {
		cmds[k] = p.cmd
	}
	var index raft.Index
	var term raft.Term
	err := r.noSpaceRefusal()
	if err == nil {
		index, term, err = r.node.Propose(cmds...)
	}
	if err != nil {
		err = r.proposeError(err)
		for _, p := range batch {
			p.finish(nil, err)
		}
	} else {
		// Entry k of the batch is at index+k. Each proposal now waits for
		// the entry at its index to be applied; the term tells whether
		// that entry is still ours.
		for k, p := range batch {
			p.index, p.term = index+raft.Index(k), term
			p.older = r.proposals[p.index]
			r.proposals[p.index] = p
		}
	}
	clear(batch)
	r.batch = batch[:0]
}

// proposeError translates the core's refusal of a proposal.
func (r *Replica) proposeError(err error) error {
	if errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, raft.ErrNotLeader) {
		lead := r.lead
		if lead == r.id {
			lead = raft.None // stale: the core knows better than our last Ready
		}
		return &NotLeaderError{Leader: lead}
	}
	return fmt.Errorf("replica: proposal refused: %w", err)
}

// addWaiters registers first and every other queued waiter. Reads
// collected here share one ReadIndex request (and so one heartbeat round
// on the leader).
func (r *Replica) addWaiters(first *waiter) {
	var reads []*waiter
	add := func(w *waiter) {
		if w.read {
			reads = append(reads, w)
		} else {
			r.waitApplied(w)
		}
	}
	add(first)
drain:
	for {
		select {
		case w := <-r.readc:
			add(w)
		default:
			break drain
		}
	}
	if len(reads) > 0 {
		r.issueRead(&readBatch{waiters: reads})
	}
}

// waitApplied resolves w now if its index is applied (or its caller has
// given up), and registers it in the wait registry otherwise. A
// registered waiter leaves the registry as soon as its context ends: a
// watch on the context reports it through the reports mailbox
// (cancelWait), so a caller that gives up on an index far ahead (say
// WaitApplied(ctx, 1<<40)) leaves nothing behind.
func (r *Replica) waitApplied(w *waiter) {
	if w.index <= r.applied {
		w.finish(nil)
		return
	}
	if err := w.ctx.Err(); err != nil {
		w.finish(err)
		return
	}
	r.waits.add(w)
	w.unwatch = context.AfterFunc(w.ctx, func() { r.cancelWait(w) })
}

// dropCancelledWaits takes the waiters whose context ended out of the
// wait registry. A waiter released meanwhile is no longer in it.
func (r *Replica) dropCancelledWaits(ws []*waiter) {
	for _, w := range ws {
		if r.waits.remove(w) {
			w.finish(w.ctx.Err())
		}
	}
}

func (r *Replica) issueRead(b *readBatch) {
	r.nextReadID++
	b.id, b.issued = r.nextReadID, r.tick
	r.reads[b.id] = b
	r.node.ReadIndex(b.id)
}

// retryReads asks again for the reads still unanswered, all of them
// (after a leader change) or those older than an election timeout. The
// core drops a read when leadership changes or no leader is known, and a
// follower's request may be lost; asking again later is safe, since a read
// index learned after the call began serves it just as well.
func (r *Replica) retryReads(all bool) {
	var again []*readBatch
	for id, b := range r.reads {
		if !all && r.tick-b.issued < uint64(r.electionTick) {
			continue
		}
		delete(r.reads, id)
		// Callers that gave up are gone; drop them.
		b.waiters = slices.DeleteFunc(b.waiters, func(w *waiter) bool {
			if err := w.ctx.Err(); err != nil {
				w.finish(err)
				return true
			}
			return false
		})
		if len(b.waiters) > 0 {
			again = append(again, b)
		}
	}
	for _, b := range again {
		r.issueRead(b)
	}
}

func (r *Replica) startTransfer(tr *transfer) {
	if err := r.node.TransferLeadership(tr.to); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			tr.done <- &NotLeaderError{Leader: r.lead}
		} else {
			tr.done <- fmt.Errorf("replica: transfer leadership to %d: %w", tr.to, err)
		}
		return
	}
	if r.lead == tr.to {
		tr.done <- nil
		return
	}
	// The core abandons a transfer after an election timeout; allow for
	// the election that follows a successful one, too.
	tr.deadline = r.tick + 3*uint64(r.electionTick)
	r.transfers = append(r.transfers, tr)
}

// handleReports passes on what transports reported.
func (r *Replica) handleReports() {
	r.reports.Lock()
	// Take the map only when it holds something, and then leave a new one:
	// the map iterated below must be one no transport can still write to
	// (iterating the mailbox's own map, even empty, raced with
	// ReportUnreachable; found by the chaos runner's race-built servers).
	var unreachable map[raft.NodeID]struct{}
	if len(r.reports.unreachable) > 0 {
		unreachable = r.reports.unreachable
		r.reports.unreachable = make(map[raft.NodeID]struct{})
	}
	snaps := r.reports.snapshots
	cancelled := r.reports.cancelled
	r.reports.snapshots, r.reports.cancelled = nil, nil
	r.reports.Unlock()
	for id := range unreachable {
		r.node.ReportUnreachable(id)
	}
	for _, s := range snaps {
		r.node.ReportSnapshot(s.to, s.ok)
	}
	r.dropCancelledWaits(cancelled)
}

// handleReady processes one Ready in the order the core prescribes. Each
// step's comment says why a crash right after it is safe. An error is
// fatal: the replica stops.
func (r *Replica) handleReady() error {
	rd := r.node.Ready()
	leadChanged, lead := false, r.lead
	if ss := rd.SoftState; ss != nil {
		leadChanged = ss.Lead != r.lead
		r.lead, r.role = ss.Lead, ss.Role
	}

	// 1. Send Messages. They vouch only for state made durable by earlier
	// Readies (a leader's own new entries count toward commitment only
	// after Advance), so a crash before step 2 loses nothing anyone relied
	// on, and sending first overlaps the leader's disk write with
	// replication.
	r.send(rd.Messages)

	// 2. Persist snapshot metadata, entries and hard state, atomically.
	// A crash before this returns leaves the previous durable state, and
	// nothing sent so far depends on the new one. A full disk is not
	// fatal: nothing was written, and the replica holds the rest of the
	// Ready and retries (diskfull.go). Any other failure is: after a
	// failed write or fsync the replica cannot know what the disk holds,
	// so it stops, and the process restarts from what the disk really
	// holds.
	term := r.term
	written, err := r.persist(&rd)
	if err != nil {
		return err
	}
	if !written {
		if err := r.holdReady(&rd); err != nil {
			return err
		}
		leadChanged = leadChanged || r.lead != lead
	} else {
		// 3. Send MessagesAfterPersist: votes granted, appends
		// acknowledged, a candidate's vote requests. Each vouches for what
		// step 2 wrote, so a restarted node can never take back a vote or
		// lose an entry it acknowledged (which could elect two leaders in
		// a term, or lose a committed entry).
		r.send(rd.MessagesAfterPersist)

		// 4. Restore the state machine from the snapshot, apply committed
		// entries in order, then serve reads. Everything applied is
		// durable (step 2 of this or an earlier Ready), so a restart finds
		// a log that explains the state machine; it restores the latest
		// snapshot and applies the committed entries after it again,
		// which a deterministic state machine turns into the same state.
		if rd.Snapshot != nil {
			if err := r.installSnapshot(*rd.Snapshot); err != nil {
				return err
			}
		}
		if err := r.apply(rd.CommittedEntries); err != nil {
			return err
		}
		r.serveReads(rd.ReadStates)
		r.waits.release(r.applied)

		// 5. Tell the core the Ready is done. Only now may the run
		// goroutine call the node again.
		r.node.Advance(rd)
	}

	if rd.SoftState != nil || r.term != term {
		r.publishLeader()
	}
	if rd.SoftState != nil {
		r.logger.Info("leadership changed", "term", uint64(r.term), "role", r.role.String(), "lead", uint64(r.lead))
	}
	if leadChanged && len(r.transfers) > 0 {
		r.transfers = slices.DeleteFunc(r.transfers, func(tr *transfer) bool {
			if r.lead != tr.to {
				return false
			}
			tr.done <- nil
			return true
		})
	}
	if leadChanged && len(r.reads) > 0 {
		r.retryReads(true)
	}
	if r.catchingUp {
		r.maybeCaughtUp()
	}
	return r.maybeSnapshot()
}

// send hands messages to the transport, routing each MsgSnap with its
// data from the snapshot store.
func (r *Replica) send(msgs []raft.Message) {
	snaps := 0
	for i := range msgs {
		if msgs[i].Type == raft.MsgSnap {
			snaps++
		}
	}
	if snaps == 0 {
		if len(msgs) > 0 {
			r.cfg.Transport.Send(msgs)
		}
		return
	}
	plain := make([]raft.Message, 0, len(msgs)-snaps)
	for _, m := range msgs {
		if m.Type == raft.MsgSnap {
			r.sendSnapshot(m)
		} else {
			plain = append(plain, m)
		}
	}
	if len(plain) > 0 {
		r.cfg.Transport.Send(plain)
	}
}

func (r *Replica) sendSnapshot(m raft.Message) {
	to := m.To
	if m.Snapshot == nil {
		r.logger.Error("MsgSnap without snapshot metadata", "term", uint64(r.term), "to", uint64(to))
		r.reportSnapshot(to, false)
		return
	}
	data, err := r.cfg.Snapshots.Open(*m.Snapshot)
	if err != nil {
		// The core learned of this snapshot from the log store, which
		// records a snapshot only once its data is stored: a bug.
		r.logger.Error("cannot open snapshot to send", "term", uint64(r.term), "to", uint64(to), "index", uint64(m.Snapshot.Index), "err", err)
		r.reportSnapshot(to, false)
		return
	}
	index := m.Snapshot.Index
	r.logger.Info("sending snapshot", "term", uint64(r.term), "to", uint64(to), "index", uint64(index))
	r.cfg.Transport.SendSnapshot(m, data, func(err error) {
		if err != nil {
			r.logger.Warn("snapshot transfer failed", "to", uint64(to), "index", uint64(index), "err", err)
		}
		r.reportSnapshot(to, err == nil)
	})
}

// apply applies committed entries: runs of EntryNormal entries go to the
// state machine in one call each; no-ops and configuration entries are
// the replica's business. Each applied entry resolves the proposals
// waiting on its index.
func (r *Replica) apply(ents []raft.Entry) error {
	if len(ents) > 0 && ents[0].Index != r.applied+1 {
		return fmt.Errorf("committed entries start at %d, but %d is applied (a bug in the core)", ents[0].Index, r.applied)
	}
	if term := r.appliedTerm; len(ents) > 0 {
		defer func() {
			if r.appliedTerm > term {
				r.dropSuperseded()
			}
		}()
	}
	for len(ents) > 0 {
		if e := &ents[0]; e.Type != raft.EntryNormal {
			if e.Type == raft.EntryConfChange {
				cs, err := raft.UnmarshalConfState(e.Data)
				if err != nil {
					return fmt.Errorf("apply configuration entry %d: %w", e.Index, err)
				}
				r.conf = cs
			}
			r.resolve(e, nil)
			r.applied, r.appliedTerm = e.Index, e.Term
			r.sinceSnapBytes += uint64(len(e.Data))
			ents = ents[1:]
			continue
		}
		n := 1
		for n < len(ents) && ents[n].Type == raft.EntryNormal {
			n++
		}
		run := ents[:n]
		ents = ents[n:]
		results, err := r.cfg.StateMachine.Apply(run)
		if err != nil {
			return fmt.Errorf("state machine: apply [%d, %d]: %w", run[0].Index, run[n-1].Index, err)
		}
		if len(results) != n {
			return fmt.Errorf("state machine returned %d results for %d entries", len(results), n)
		}
		for i := range run {
			r.resolve(&run[i], results[i])
			r.sinceSnapBytes += uint64(len(run[i].Data))
		}
		r.applied, r.appliedTerm = run[n-1].Index, run[n-1].Term
	}
	return nil
}

// resolve settles the proposals waiting on e's index now that e is
// applied. Only the one appended with e's term proposed e; any other lost
// its slot to another leader's entry (only one entry is ever committed at
// an index), so its command will never be applied.
func (r *Replica) resolve(e *raft.Entry, result any) {
	p := r.proposals[e.Index]
	if p == nil {
		return
	}
	delete(r.proposals, e.Index)
	for ; p != nil; p = p.older {
		if p.term == e.Term && e.Type == raft.EntryNormal {
			p.finish(result, nil)
		} else {
			p.finish(nil, fmt.Errorf("%w: index %d was proposed in term %d and committed in term %d",
				ErrNotCommitted, e.Index, p.term, e.Term))
		}
	}
}

// dropSuperseded fails every pending proposal appended in a term before
// the applied term: it can never commit. The committed log's terms never
// decrease along the log (§5.3: an entry's term is at least its
// predecessor's, on every log), so once an entry of term T is committed at
// index j, every committed entry after j has a term of at least T; a
// proposal's own index, when at most j, was resolved by its own entry
// already (entries apply in order), so every proposal still pending sits
// after j, where its older-term entry can never be the committed one.
//
// It runs whenever the applied term rises (a new leader's first entry,
// once per election), so it costs O(pending) per leadership change. New
// proposals carry the leader's current term, never below the applied one.
//
// Invariant: every pending proposal has index > applied and term >=
// appliedTerm.
func (r *Replica) dropSuperseded() {
	for idx, p := range r.proposals {
		var keep *Proposal
		for p != nil {
			next := p.older
			if p.term < r.appliedTerm {
				p.finish(nil, fmt.Errorf("%w: index %d was proposed in term %d, but an entry of term %d is committed before it (at %d)",
					ErrNotCommitted, idx, p.term, r.appliedTerm, r.applied))
			} else {
				p.older, keep = keep, p
			}
			p = next
		}
		if keep == nil {
			delete(r.proposals, idx)
		} else {
			r.proposals[idx] = reverseChain(keep)
		}
	}
}

// reverseChain reverses a chain of proposals linked through older.
func reverseChain(p *Proposal) *Proposal {
	var out *Proposal
	for p != nil {
		next := p.older
		p.older, out = out, p
		p = next
	}
	return out
}

// serveReads matches read states to their waiting reads.
func (r *Replica) serveReads(states []raft.ReadState) {
	for _, rs := range states {
		b := r.reads[rs.ID]
		if b == nil {
			continue // answered already, or replaced by a retry
		}
		delete(r.reads, rs.ID)
		for _, w := range b.waiters {
			w.index = rs.Index
			r.waitApplied(w)
		}
	}
}

// installSnapshot restores the state machine from a snapshot the core
// accepted (its metadata was persisted in step 2; its data was staged by
// StepSnapshot). A crash before this completes restarts from that
// snapshot, which New restores.
func (r *Replica) installSnapshot(meta raft.SnapshotMeta) error {
	if err := r.restoreStateMachine(meta); err != nil {
		return err
	}
	// Proposals at or below the snapshot's index will never see their
	// entry applied here. If the snapshot ends in an older term than a
	// proposal's, every entry it covers is older than the proposal: not
	// ours (ErrNotCommitted). Otherwise the proposal's entry may be among
	// those the snapshot covers, committed, or may have been replaced;
	// the snapshot does not say which (ErrOutcomeUnknown).
	for idx, p := range r.proposals {
		if idx > meta.Index {
			continue
		}
		delete(r.proposals, idx)
		for ; p != nil; p = p.older {
			if meta.Term < p.term {
				p.finish(nil, fmt.Errorf("%w: index %d was replaced by a snapshot of term %d", ErrNotCommitted, idx, meta.Term))
			} else {
				p.finish(nil, fmt.Errorf("%w: index %d was folded into a snapshot from the leader", ErrOutcomeUnknown, idx))
			}
		}
	}
	// Proposals after the snapshot's index from a term before the
	// snapshot's can never commit: every committed entry after it has at
	// least its term (dropSuperseded).
	r.dropSuperseded()
	if err := r.cfg.Snapshots.Prune(meta.Index); err != nil {
		r.logger.Warn("pruning snapshots", "term", uint64(r.term), "err", err)
	}
	r.logger.Info("installed snapshot", "term", uint64(r.term), "index", uint64(meta.Index), "snapshot_term", uint64(meta.Term))
	return nil
}

// restoreStateMachine replaces the state machine's state with snapshot
// meta's. It runs in New (before the run goroutine starts) and then only
// on the run goroutine.
func (r *Replica) restoreStateMachine(meta raft.SnapshotMeta) error {
	data, err := r.cfg.Snapshots.Open(meta)
	if err != nil {
		return fmt.Errorf("open snapshot %d: %w", meta.Index, err)
	}
	err = r.cfg.StateMachine.Restore(data)
	if err == nil {
		// Read to the end, whatever Restore left: a snapshot store verifies
		// its checksum there (snap.Reader), and a restore from damaged
		// data must fail, never go unnoticed.
		_, err = io.Copy(io.Discard, data)
	}
	if cerr := data.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state machine: restore snapshot %d: %w", meta.Index, err)
	}
	r.applied, r.appliedTerm, r.conf = meta.Index, meta.Term, meta.ConfState
	r.snapIndex, r.sinceSnapBytes = meta.Index, 0
	return nil
}

// publishLeader makes the run goroutine's view of leadership visible to
// Leader, waking whoever waits for a change.
func (r *Replica) publishLeader() {
	s := LeaderState{Lead: r.lead, Term: r.term, Role: r.role}
	r.leader.Lock()
	defer r.leader.Unlock()
	if s == r.leader.state {
		return
	}
	r.leader.state = s
	close(r.leader.changed)
	r.leader.changed = make(chan struct{})
}

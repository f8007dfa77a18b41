package raft

// Linearizable reads by ReadIndex (thesis §6.4).
//
// The leader answers a read with its commit index once it has confirmed,
// by a round of heartbeats acknowledged by a majority, that it was still
// the leader after the read arrived. No log entry is written. Reads are
// batched: every read that arrives before the next Ready joins one round,
// so one heartbeat round confirms many reads. Followers serve reads too:
// they ask the leader for a read index (one MsgReadIndex per batch) and the
// caller waits until the follower has applied up to it.

// readRequest is one read the leader must answer.
type readRequest struct {
	// from is who asked: the leader itself (answered with a ReadState) or
	// a follower (answered with MsgReadIndexResp).
	from NodeID
	// id is the caller's ReadID (local reads).
	id ReadID
	// ctx is the follower's batch number (forwarded reads).
	ctx uint64
	// index is the commit index when the read arrived: the read must
	// reflect everything committed by then.
	index Index
}

// readRound is one round of heartbeats and the reads it confirms.
type readRound struct {
	round uint64
	// tick is the leader's tick count when the round's heartbeats were
	// queued: no follower can have heard them earlier, so a lease counted
	// from it is never too long.
	tick int
	reqs []readRequest
}

// readIndexState is the ReadIndex bookkeeping of one node, reset whenever
// its role or term changes (pending reads are then dropped, and their
// callers time out and retry).
type readIndexState struct {
	// Leader side.
	//
	// round is the number of the latest round; heartbeats carry it in
	// Context and followers echo it back.
	round uint64
	// open is set while the latest round's heartbeats have not yet left
	// in a Ready, so new reads may still join it.
	open bool
	// sent is the latest round whose heartbeats have left in a Ready. An
	// acknowledgement of a later round cannot be genuine and is ignored.
	sent uint64
	// rounds awaiting confirmation, oldest first.
	rounds []readRound
	// acked is, per voter, the latest round it acknowledged.
	acked map[NodeID]uint64
	// waiting holds reads that arrived before the leader committed an
	// entry of its own term; until then it does not know the commit index.
	waiting []readRequest
	// ticks counts the leader's ticks in this term; leaseUntil is the tick
	// before which its lease holds (see LeaseRead); noLease is set for the
	// rest of the term once a leadership transfer has started.
	ticks      int
	leaseUntil int
	noLease    bool

	// Follower side.
	//
	// fwdSeq numbers forwarded batches; fwdOpen is set while the latest
	// batch's MsgReadIndex has not left in a Ready.
	fwdSeq  uint64
	fwdOpen bool
	// batches are forwarded batches awaiting the leader's answer.
	batches map[uint64][]ReadID
}

func (s *readIndexState) reset() {
	*s = readIndexState{fwdSeq: s.fwdSeq}
}

// closeRound is called when a Ready takes the outgoing messages: reads
// that arrive later need heartbeats sent later.
func (s *readIndexState) closeRound() {
	s.open = false
	s.sent = s.round
	s.fwdOpen = false
}

func (r *raft) readIndex(id ReadID) {
	switch r.role {
	case Leader:
		r.leaderRead(readRequest{from: r.id, id: id})
	case Follower:
		if r.lead == None {
			return // nobody to ask; the caller retries
		}
		if !r.reads.fwdOpen {
			r.reads.fwdSeq++
			r.reads.fwdOpen = true
			if r.reads.batches == nil {
				r.reads.batches = map[uint64][]ReadID{}
			}
			r.send(Message{Type: MsgReadIndex, To: r.lead, Context: r.reads.fwdSeq})
		}
		r.reads.batches[r.reads.fwdSeq] = append(r.reads.batches[r.reads.fwdSeq], id)
	}
	// Candidates know no leader: the read is dropped.
}

// committedInTerm reports whether the leader has committed an entry of its
// own term, and so knows the group's true commit index (§8).
func (r *raft) committedInTerm() bool {
	t, err := r.log.term(r.log.committed)
	return err == nil && t == r.term
}

func (r *raft) leaderRead(req readRequest) {
	if !r.committedInTerm() {
		r.reads.waiting = append(r.reads.waiting, req)
		return
	}
	req.index = r.log.committed
	if len(r.conf.Voters) == 1 || canaryReadWithoutLeadership {
		// A group of one is always its own majority.
		r.answerRead(req)
		return
	}
	if !r.reads.open || len(r.reads.rounds) == 0 {
		r.startRound()
	}
	last := &r.reads.rounds[len(r.reads.rounds)-1]
	last.reqs = append(last.reqs, req)
}

// startRound broadcasts heartbeats for a new round. Every heartbeat
// broadcast is a round, so the regular heartbeats also confirm reads and
// renew the lease.
func (r *raft) startRound() {
	r.reads.round++
	r.reads.open = true
	r.reads.rounds = append(r.reads.rounds, readRound{round: r.reads.round, tick: r.reads.ticks})
	r.bcastHeartbeat()
}

// leaseRead answers a read at once from the leader's commit index while
// its lease holds (thesis §6.4.1), and otherwise falls back to ReadIndex.
//
// The lease rests on check-quorum: a follower that heard from the leader
// refuses to vote for ElectionTick ticks (a restarted node, which may have
// forgotten that, refuses for its first ElectionTick ticks). So once a
// majority acknowledged a heartbeat queued at tick t, no other leader can
// be elected before t+ElectionTick on the followers' clocks. The leader
// stops MaxClockDriftTicks short of that, which is the assumption: over
// one election timeout, no clock runs faster than the leader's by more
// than MaxClockDriftTicks ticks. A leadership transfer ends the lease for
// the rest of the term, since the target campaigns without waiting.
func (r *raft) leaseRead(id ReadID) {
	if r.role == Leader && !r.cfg.DisableCheckQuorum && !r.reads.noLease &&
		r.reads.ticks < r.reads.leaseUntil && r.committedInTerm() {
		r.readStates = append(r.readStates, ReadState{ID: id, Index: r.log.committed})
		return
	}
	r.readIndex(id)
}

// readsOnCommit serves the reads that waited for the leader's first commit
// in its term.
func (r *raft) readsOnCommit() {
	if len(r.reads.waiting) == 0 || !r.committedInTerm() {
		return
	}
	waiting := r.reads.waiting
	r.reads.waiting = nil
	for _, req := range waiting {
		r.leaderRead(req)
	}
}

// readAcked records that voter from acknowledged a heartbeat of round
// ctx, and answers every round a majority has now confirmed.
func (r *raft) readAcked(from NodeID, ctx uint64) {
	if ctx == 0 || len(r.reads.rounds) == 0 {
		return
	}
	if ctx > r.reads.sent {
		// Nobody can have seen a heartbeat that has not been sent: a peer
		// acknowledging it is lying or broken. Ignoring it keeps a round
		// from being confirmed before its heartbeats leave.
		return
	}
	if r.reads.acked == nil {
		r.reads.acked = map[NodeID]uint64{}
	}
	if ctx <= r.reads.acked[from] {
		return
	}
	r.reads.acked[from] = ctx
	// A heartbeat of round k left after every read of rounds <= k arrived,
	// so an acknowledgement of it confirms all of them. The leader counts
	// itself for the latest round.
	confirmed := committedIndex(r.conf.Voters, func(id NodeID) Index {
		if id == r.id {
			return Index(r.reads.sent)
		}
		return Index(r.reads.acked[id])
	})
	n := 0
	for n < len(r.reads.rounds) && r.reads.rounds[n].round <= uint64(confirmed) {
		for _, req := range r.reads.rounds[n].reqs {
			r.answerRead(req)
		}
		until := r.reads.rounds[n].tick + r.cfg.ElectionTick - r.cfg.MaxClockDriftTicks
		r.reads.leaseUntil = max(r.reads.leaseUntil, until)
		n++
	}
	r.reads.rounds = r.reads.rounds[n:]
}

func (r *raft) answerRead(req readRequest) {
	if req.from == r.id {
		r.readStates = append(r.readStates, ReadState{ID: req.id, Index: req.index})
		return
	}
	r.send(Message{Type: MsgReadIndexResp, To: req.from, Index: req.index, Context: req.ctx})
}

// followerReadAnswered delivers the leader's answer to a forwarded batch.
func (r *raft) followerReadAnswered(m Message) {
	ids, ok := r.reads.batches[m.Context]
	if !ok {
		return
	}
	delete(r.reads.batches, m.Context)
	if m.Reject {
		return
	}
	for _, id := range ids {
		r.readStates = append(r.readStates, ReadState{ID: id, Index: m.Index})
	}
}

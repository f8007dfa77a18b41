package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
)

// stepFunc handles a message of the current term in one role. Roles are
// step functions swapped on role change (becomeFollower and friends), not
// role tests scattered through the code.
type stepFunc func(r *raft, m Message) error

// raft is the consensus state of one node. Every field is owned by the
// single goroutine that owns the Node.
type raft struct {
	id     NodeID
	cfg    *Config
	logger *slog.Logger
	rand   *rand.Rand

	// Persistent state (Figure 2), reported through Ready.HardState.
	term Term
	vote NodeID

	log *raftLog

	role     Role
	lead     NodeID
	stepRole stepFunc

	// conf is the configuration in force: that of the last configuration
	// entry in the log, or of the snapshot (thesis §4.1: a server uses the
	// latest configuration in its log, committed or not).
	conf ConfState
	// confIndex is the index of the entry conf came from; a truncation at
	// or below it means conf must be recomputed.
	confIndex Index
	// pendingConfIndex is the index of the leader's latest configuration
	// entry; a new change is refused until it commits (one change at a
	// time, thesis §4.1).
	pendingConfIndex Index

	// prs is the leader's view of every voter, itself included.
	prs map[NodeID]*progress
	// votes are the (pre-)votes received in the current campaign.
	votes map[NodeID]bool

	// sinceLeader counts ticks since this node last heard from a leader of
	// its term, whatever role it has played since. It is the node's lease
	// promise: while it is below ElectionTick the node refuses votes (with
	// check-quorum on), because that leader may be serving lease reads on
	// the strength of the promise (see leaseRead). Becoming a candidate by
	// Campaign does not void it. A node restarted past the bootstrap term
	// starts at 0: it may have promised just before it went down.
	sinceLeader int

	// electionElapsed counts ticks since the last election timeout reset:
	// for followers, since they heard from a leader; for the leader, since
	// the last check-quorum.
	electionElapsed int
	// heartbeatElapsed counts a leader's ticks since its last heartbeat.
	heartbeatElapsed int
	// randomizedElectionTimeout is in [ElectionTick, 2*ElectionTick),
	// redrawn on every role change (§5.2: randomized timeouts resolve
	// split votes).
	randomizedElectionTimeout int

	// leadTransferee is the target of a leadership transfer in progress,
	// and transferElapsed the ticks since it started: a transfer that does
	// not finish within an election timeout is abandoned (thesis §3.10).
	leadTransferee  NodeID
	transferElapsed int

	// uncommittedSize is the payload size of the leader's entries that
	// have not been handed out as committed.
	uncommittedSize uint64

	reads readIndexState

	// msgs may be sent immediately; msgsAfterPersist only once the Ready
	// that carries them is durable.
	msgs             []Message
	msgsAfterPersist []Message
	readStates       []ReadState
}

func newRaft(cfg *Config) (*raft, error) {
	hs, cs, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading initial state: %w", err)
	}
	l, err := newLog(cfg.Storage, cfg.MaxCommittedSizePerReady)
	if err != nil {
		return nil, err
	}
	r := &raft{
		id:     cfg.ID,
		cfg:    cfg,
		logger: cfg.Logger.With("node", uint64(cfg.ID)),
		rand:   rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.ID))),
		log:    l,
		conf:   cs,
	}
	r.confIndex = l.lastIndex()
	// Forwarded read batches are numbered from a random point, so that a
	// leader's late answer to a batch sent before a restart cannot be
	// mistaken for the answer to a new batch (which could be stale). A
	// separate stream keeps election timeouts independent of it.
	r.reads.fwdSeq = rand.New(rand.NewPCG(cfg.Seed, 0x7265616473)).Uint64() >> 1
	if !hs.IsEmpty() {
		if hs.Commit > l.lastIndex() {
			return nil, fmt.Errorf("raft: stored commit index %d is beyond the stored log's last index %d",
				hs.Commit, l.lastIndex())
		}
		r.term, r.vote = hs.Term, hs.Vote
		l.commitTo(hs.Commit)
	}
	if cfg.Applied > 0 {
		// The commit index is persisted lazily (without a sync), so the
		// state machine may have applied more than the stored HardState
		// says is committed. What was applied was committed.
		if cfg.Applied > l.lastIndex() {
			return nil, fmt.Errorf("raft: applied index %d is beyond the stored log's last index %d",
				cfg.Applied, l.lastIndex())
		}
		l.commitTo(cfg.Applied)
		l.appliedTo(cfg.Applied)
	}
	r.becomeFollower(r.term, None)
	// A node that has been part of a running group (past the bootstrap
	// term) may have acknowledged a leader's heartbeat just before it went
	// down.
	r.sinceLeader = cfg.ElectionTick
	if r.term > 1 {
		r.sinceLeader = 0
	}
	r.logger.Debug("raft: started", "term", uint64(r.term), "commit", uint64(l.committed),
		"applied", uint64(l.applied), "last", uint64(l.lastIndex()), "voters", cs.Voters)
	return r, nil
}

func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, Role: r.role} }

func (r *raft) hardState() HardState {
	return HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

func (r *raft) isVoter() bool { return r.conf.IsVoter(r.id) }

// send queues m, stamping the sender and term. Messages that vouch for
// state the Ready is about to persist wait until it is durable: a granted
// vote (the vote must survive a crash, or the node could vote twice in one
// term), a candidate's vote request (its new term and self-vote) and an
// append acknowledgement (the follower must hold what it acknowledges,
// since the leader counts it toward commitment).
func (r *raft) send(m Message) {
	m.From = r.id
	if m.Term == 0 {
		m.Term = r.term
	}
	switch m.Type {
	case MsgVoteResp:
		if canaryVoteNotPersisted {
			r.msgs = append(r.msgs, m)
			return
		}
		r.msgsAfterPersist = append(r.msgsAfterPersist, m)
	case MsgVote, MsgAppResp:
		r.msgsAfterPersist = append(r.msgsAfterPersist, m)
	default:
		r.msgs = append(r.msgs, m)
	}
}

// ---- role changes ----

func (r *raft) reset(term Term) {
	if r.term != term {
		r.term = term
		r.vote = None
	}
	r.lead = None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.leadTransferee = None
	r.votes = map[NodeID]bool{}
	r.prs = nil
	r.uncommittedSize = 0
	r.reads.reset()
}

func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.cfg.ElectionTick + r.rand.IntN(r.cfg.ElectionTick)
}

func (r *raft) becomeFollower(term Term, lead NodeID) {
	r.reset(term)
	r.stepRole = stepFollower
	r.role = Follower
	r.lead = lead
}

func (r *raft) becomePreCandidate() {
	// Pre-vote changes neither term nor vote (thesis §9.6): a node that
	// cannot win leaves the group undisturbed.
	r.stepRole = stepCandidate
	r.role = PreCandidate
	r.votes = map[NodeID]bool{}
	r.lead = None
}

func (r *raft) becomeCandidate() {
	r.reset(r.term + 1)
	r.stepRole = stepCandidate
	r.role = Candidate
	r.vote = r.id
}

func (r *raft) becomeLeader() {
	r.reset(r.term)
	r.stepRole = stepLeader
	r.role = Leader
	r.lead = r.id
	r.prs = make(map[NodeID]*progress, len(r.conf.Voters))
	last := r.log.lastIndex()
	for _, id := range r.conf.Voters {
		r.prs[id] = newProgress(last+1, r.cfg.MaxInflightMsgs)
	}
	if pr := r.prs[r.id]; pr != nil {
		// The leader's own entries count once durable, never before.
		pr.match = r.log.stableLastIndex()
		pr.next = last + 1
		pr.becomeReplicate()
		pr.next = last + 1
		pr.recentActive = true
	}
	// §8: a new leader commits a no-op of its own term, which commits every
	// earlier entry with it and lets the leader serve reads.
	r.pendingConfIndex = last
	r.appendEntries(Entry{Type: EntryNoop})
	r.logger.Info("raft: became leader", "term", uint64(r.term), "last", uint64(r.log.lastIndex()))
}

// ---- ticks ----

func (r *raft) tick() {
	if r.sinceLeader < r.cfg.ElectionTick {
		r.sinceLeader++
	}
	if r.role == Leader {
		r.tickHeartbeat()
	} else {
		r.tickElection()
	}
}

func (r *raft) tickElection() {
	r.electionElapsed++
	if r.isVoter() && r.electionElapsed >= r.randomizedElectionTimeout {
		r.electionElapsed = 0
		r.hup(false)
	}
}

func (r *raft) tickHeartbeat() {
	r.reads.ticks++
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.cfg.ElectionTick {
		r.electionElapsed = 0
		if !r.cfg.DisableCheckQuorum && !r.quorumActive() {
			// Check-quorum (thesis §6.2): a leader that has not heard from
			// a majority for an election timeout may be partitioned away;
			// stepping down lets the majority elect a leader that can serve.
			r.logger.Info("raft: stepping down, quorum inactive", "term", uint64(r.term))
			r.becomeFollower(r.term, None)
			return
		}
	}
	if r.leadTransferee != None {
		r.transferElapsed++
		if r.transferElapsed >= r.cfg.ElectionTick {
			r.logger.Info("raft: abandoning leadership transfer", "to", uint64(r.leadTransferee))
			r.leadTransferee = None
		}
	}
	if r.role != Leader {
		return
	}
	if r.heartbeatElapsed >= r.cfg.HeartbeatTick {
		r.heartbeatElapsed = 0
		r.startRound()
	}
}

// quorumActive reports whether a majority of voters was heard from since
// the last check, and starts a new check.
func (r *raft) quorumActive() bool {
	active := 0
	for id, pr := range r.prs {
		if id == r.id || pr.recentActive {
			active++
		}
		if id != r.id {
			pr.recentActive = false
		}
	}
	return active >= quorum(len(r.conf.Voters))
}

// ---- elections ----

// hup starts an election: a pre-vote first unless disabled or this is a
// leadership transfer.
func (r *raft) hup(transfer bool) {
	if r.role == Leader || !r.isVoter() {
		return
	}
	if !r.cfg.DisablePreVote && !transfer {
		r.campaign(true, false)
	} else {
		r.campaign(false, transfer)
	}
}

func (r *raft) campaign(pre, transfer bool) {
	var term Term
	var typ MessageType
	if pre {
		r.becomePreCandidate()
		typ, term = MsgPreVote, r.term+1
	} else {
		r.becomeCandidate()
		typ, term = MsgVote, r.term
	}
	r.votes[r.id] = true
	if r.poll() {
		return
	}
	for _, id := range r.conf.Voters {
		if id == r.id {
			continue
		}
		r.send(Message{Type: typ, To: id, Term: term, Index: r.log.lastIndex(),
			LogTerm: r.log.lastTerm(), Transfer: transfer})
	}
}

// poll tallies the current campaign and acts on the result. It reports
// whether the campaign ended.
func (r *raft) poll() bool {
	switch tallyVotes(r.conf.Voters, r.votes) {
	case voteWon:
		if r.role == PreCandidate {
			r.campaign(false, false)
		} else {
			r.becomeLeader()
			r.bcastAppend()
		}
		return true
	case voteLost:
		// Split or lost vote: wait for the next (randomized) timeout and
		// try again in a new term (§5.2).
		r.becomeFollower(r.term, None)
		return true
	}
	return false
}

// ---- Step: the entry point for every message ----

func (r *raft) step(m Message) error {
	if err := r.validate(m); err != nil {
		return err
	}
	switch {
	case m.Term > r.term:
		if m.Type == MsgVote || m.Type == MsgPreVote {
			// With check-quorum, a node that heard from a leader within the
			// minimum election timeout ignores vote requests (thesis §4.2.3):
			// a disruptive server cannot depose a live leader. A transfer
			// overrides this: the leader itself asked for the election.
			inLease := !r.cfg.DisableCheckQuorum &&
				((r.lead != None && r.electionElapsed < r.cfg.ElectionTick) || r.sinceLeader < r.cfg.ElectionTick)
			if inLease && !m.Transfer {
				return nil
			}
		}
		switch {
		case m.Type == MsgPreVote:
			// Answering a pre-vote never changes our term.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// A granted pre-vote carries the term we would campaign in; our
			// own term moves only when the real campaign starts.
		default:
			// §5.1: a server that sees a higher term adopts it and becomes
			// a follower.
			lead := None
			if m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap {
				lead = m.From
			}
			elapsed := r.wasFollowerElapsed()
			r.becomeFollower(m.Term, lead)
			if lead == None {
				// Figure 2 restarts the election timer only for a current
				// leader's AppendEntries or a granted vote, not for merely
				// seeing a higher term: a stream of candidates with stale
				// logs must not keep the electable nodes from campaigning.
				r.electionElapsed = elapsed
			}
		}
	case m.Term < r.term:
		switch {
		case m.Type == MsgApp || m.Type == MsgHeartbeat:
			// A stale leader (e.g. back from a partition): tell it the
			// current term so it steps down. Without this, with pre-vote
			// and check-quorum on, it could stay stuck forever.
			r.send(Message{Type: MsgAppResp, To: m.From})
		case m.Type == MsgPreVote:
			r.send(Message{Type: MsgPreVoteResp, To: m.From, Reject: true})
		}
		// Everything else from an old term is ignored (§5.1).
		return nil
	}

	switch m.Type {
	case MsgVote, MsgPreVote:
		r.handleVoteRequest(m)
		return nil
	}
	return r.stepRole(r, m)
}

// wasFollowerElapsed is the election timer to keep when the node adopts a
// higher term from a message that does not come from a leader: a
// follower's or candidate's own timer, but a fresh one for a leader (whose
// electionElapsed counts check-quorum time instead).
func (r *raft) wasFollowerElapsed() int {
	if r.role == Leader {
		return 0
	}
	return r.electionElapsed
}

// validate rejects messages that cannot be right, whatever the sender
// claims: they change nothing and are reported to the caller.
func (r *raft) validate(m Message) error {
	if m.To != r.id {
		return fmt.Errorf("%w: message for %d delivered to %d", ErrUnknownPeer, m.To, r.id)
	}
	if m.From == None || m.From == r.id {
		return fmt.Errorf("%w: bad sender %d", ErrInvalidMessage, m.From)
	}
	if m.Term == 0 {
		return fmt.Errorf("%w: %s without a term", ErrInvalidMessage, m.Type)
	}
	switch m.Type {
	case MsgApp:
		if uint64(m.Index) > math.MaxUint64-uint64(len(m.Entries)) {
			return fmt.Errorf("%w: MsgApp index %d overflows", ErrInvalidMessage, m.Index)
		}
		prevIndex, prevTerm := m.Index, m.LogTerm
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Index != prevIndex+1 || e.Term < prevTerm || e.Term > m.Term {
				return fmt.Errorf("%w: MsgApp entry %d (term %d) does not follow %d (term %d) in term %d",
					ErrInvalidMessage, e.Index, e.Term, prevIndex, prevTerm, m.Term)
			}
			prevIndex, prevTerm = e.Index, e.Term
		}
		if m.LogTerm > m.Term {
			return fmt.Errorf("%w: MsgApp previous term %d above message term %d", ErrInvalidMessage, m.LogTerm, m.Term)
		}
	case MsgSnap:
		s := m.Snapshot
		if s == nil || s.Index == 0 || s.Term == 0 || s.Term > m.Term {
			return fmt.Errorf("%w: MsgSnap without a valid snapshot", ErrInvalidMessage)
		}
		if cs := NewConfState(s.ConfState.Voters...); len(s.ConfState.Voters) == 0 ||
			!cs.Equal(s.ConfState) || cs.IsVoter(None) {
			return fmt.Errorf("%w: MsgSnap with a malformed configuration %v", ErrInvalidMessage, s.ConfState.Voters)
		}
	case MsgAppResp, MsgVoteResp, MsgPreVoteResp, MsgHeartbeat, MsgHeartbeatResp,
		MsgTimeoutNow, MsgReadIndex, MsgReadIndexResp, MsgVote, MsgPreVote:
	default:
		return fmt.Errorf("%w: unknown type %s", ErrInvalidMessage, m.Type)
	}
	return nil
}

// handleVoteRequest answers RequestVote and pre-vote (§5.2, §5.4.1).
func (r *raft) handleVoteRequest(m Message) {
	respType := MsgVoteResp
	if m.Type == MsgPreVote {
		respType = MsgPreVoteResp
	}
	// We can vote for m.From if we already did in this term, or if we have
	// not voted and know no leader; for a pre-vote, also if it is for a
	// future term (nothing is recorded by answering it).
	canVote := r.vote == m.From ||
		(r.vote == None && r.lead == None) ||
		(m.Type == MsgPreVote && m.Term > r.term)
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		// Granting answers in the candidate's term, which for a pre-vote
		// is one past ours.
		r.send(Message{Type: respType, To: m.From, Term: m.Term})
		if m.Type == MsgVote {
			r.electionElapsed = 0
			r.vote = m.From
		}
		return
	}
	r.send(Message{Type: respType, To: m.From, Term: r.term, Reject: true})
}

// ---- leader ----

func stepLeader(r *raft, m Message) error {
	pr := r.prs[m.From]
	switch m.Type {
	case MsgAppResp:
		if pr == nil {
			return nil
		}
		pr.recentActive = true
		r.handleAppendResponse(m, pr)
	case MsgHeartbeatResp:
		if pr == nil {
			return nil
		}
		pr.recentActive = true
		pr.probeSent = false
		if pr.state == StateReplicate && pr.inflights.full() {
			// Every MsgApp in the window may have been lost; let one more
			// through, whose answer (or rejection) restarts the flow.
			pr.inflights.freeFirst()
		}
		if pr.match < r.log.lastIndex() || pr.state == StateProbe {
			// Behind, or caught up but not yet pipelining (after
			// ReportUnreachable): a probe moves it along.
			r.sendAppend(m.From)
		}
		r.readAcked(m.From, m.Context)
	case MsgReadIndex:
		r.leaderRead(readRequest{from: m.From, ctx: m.Context})
	}
	// Everything else (votes already decided, stray appends of this term
	// from nobody) is ignored: there is one leader per term (§5.2).
	return nil
}

func (r *raft) handleAppendResponse(m Message, pr *progress) {
	if m.Reject {
		// Fast backtracking (§5.3): the follower told us the term it has
		// at RejectHint; skip every entry of ours with a higher term there.
		next := m.RejectHint
		if m.LogTerm > 0 {
			next, _ = r.log.findConflictByTerm(m.RejectHint, m.LogTerm)
		}
		if pr.maybeDecrTo(m.Index, next) {
			if pr.state == StateReplicate {
				pr.becomeProbe()
			}
			r.sendAppend(m.From)
		}
		return
	}
	if m.Index > r.log.lastIndex() {
		// A follower cannot hold entries we never had: a lie or a bug.
		r.logger.Warn("raft: ignoring acknowledgement beyond the log", "from", uint64(m.From),
			"index", uint64(m.Index), "last", uint64(r.log.lastIndex()))
		return
	}
	if !pr.maybeUpdate(m.Index) && !(pr.state == StateProbe && pr.match == m.Index) {
		return // a stale or duplicate acknowledgement
	}
	switch {
	case pr.state == StateProbe:
		// The match point is found: start pipelining.
		pr.becomeReplicate()
	case pr.state == StateSnapshot && pr.match >= pr.pendingSnapshot:
		// The follower caught up through the snapshot. If the log still
		// holds what comes next, stream it; otherwise probe, which sends a
		// newer snapshot.
		pr.becomeProbe()
		if pr.match+1 >= r.log.firstIndex() {
			pr.becomeReplicate()
		}
	case pr.state == StateReplicate:
		pr.inflights.freeLE(m.Index)
	}
	if r.maybeCommit() {
		r.bcastAppend()
	}
	// Keep the pipe full: send what the follower still lacks.
	for r.sendAppendIfAny(m.From) {
	}
	if pr.sentCommit < r.log.committed {
		// The commit broadcast skipped this follower while it was paused.
		r.sendAppend(m.From)
	}
	if m.From == r.leadTransferee && pr.match == r.log.lastIndex() {
		r.sendTimeoutNow(m.From)
	}
}

// maybeCommit advances the commit index to the highest index a majority
// holds, if that entry is of the current term (§5.4.2).
func (r *raft) maybeCommit() bool {
	ci := committedIndex(r.conf.Voters, func(id NodeID) Index {
		if pr := r.prs[id]; pr != nil {
			return pr.match
		}
		return 0
	})
	if !r.log.maybeCommit(ci, r.term) {
		return false
	}
	r.readsOnCommit()
	return true
}

func (r *raft) bcastAppend() {
	for _, id := range r.conf.Voters {
		if id != r.id {
			r.sendAppend(id)
		}
	}
}

func (r *raft) bcastHeartbeat() {
	for _, id := range r.conf.Voters {
		if id == r.id {
			continue
		}
		pr := r.prs[id]
		// Commit only up to what the follower is known to hold, so it can
		// never commit an entry it has but the leader does not.
		commit := min(pr.match, r.log.committed)
		pr.sentCommit = max(pr.sentCommit, commit)
		r.send(Message{Type: MsgHeartbeat, To: id, Commit: commit, Context: r.reads.round})
	}
}

// sendAppend sends the entries a follower lacks (or an empty MsgApp that
// carries the commit index). It reports whether a message was sent.
func (r *raft) sendAppend(to NodeID) bool { return r.maybeSendAppend(to, true) }

func (r *raft) sendAppendIfAny(to NodeID) bool {
	pr := r.prs[to]
	if pr == nil || pr.state != StateReplicate || pr.next > r.log.lastIndex() {
		return false
	}
	return r.maybeSendAppend(to, false)
}

func (r *raft) maybeSendAppend(to NodeID, sendIfEmpty bool) bool {
	pr := r.prs[to]
	if pr == nil || to == r.id || pr.isPaused() {
		return false
	}
	prevIndex := pr.next - 1
	prevTerm, errt := r.log.term(prevIndex)
	var ents []Entry
	var erre error
	if pr.state != StateProbe || !pr.probeSent {
		ents, erre = r.log.entriesFrom(pr.next, r.cfg.MaxSizePerMsg)
	}
	if errt != nil || erre != nil {
		return r.sendSnapshot(to, pr, errors.Join(errt, erre))
	}
	if len(ents) == 0 && !sendIfEmpty {
		return false
	}
	r.send(Message{Type: MsgApp, To: to, Index: prevIndex, LogTerm: prevTerm,
		Entries: ents, Commit: r.log.committed})
	pr.sentCommit = r.log.committed
	var last Index
	if len(ents) > 0 {
		last = ents[len(ents)-1].Index
	}
	pr.sentEntries(len(ents), last)
	return true
}

// sendSnapshot is used when a follower needs entries the log no longer
// holds (§7).
func (r *raft) sendSnapshot(to NodeID, pr *progress, cause error) bool {
	if isStorageError(cause) {
		r.logger.Error("raft: reading log for follower", "to", uint64(to), "err", cause)
		return false
	}
	if !pr.recentActive {
		return false // don't ship a snapshot to a node that may be down
	}
	snap, err := r.log.snapshot()
	if err != nil || snap.IsEmpty() {
		if err != nil && !errors.Is(err, ErrSnapshotTemporarilyUnavailable) {
			r.logger.Error("raft: reading snapshot", "err", err)
		}
		return false
	}
	r.send(Message{Type: MsgSnap, To: to, Snapshot: &snap})
	pr.becomeSnapshot(snap.Index)
	r.logger.Debug("raft: sent snapshot", "to", uint64(to), "index", uint64(snap.Index))
	return true
}

func (r *raft) sendTimeoutNow(to NodeID) {
	r.send(Message{Type: MsgTimeoutNow, To: to})
}

// ---- candidates (pre and real) ----

func stepCandidate(r *raft, m Message) error {
	myResp := MsgVoteResp
	if r.role == PreCandidate {
		myResp = MsgPreVoteResp
	}
	switch m.Type {
	case MsgApp, MsgHeartbeat, MsgSnap:
		// A leader of our term exists (§5.2): yield to it.
		r.becomeFollower(m.Term, m.From)
		return stepFollower(r, m)
	case myResp:
		if !r.conf.IsVoter(m.From) {
			return nil
		}
		if _, seen := r.votes[m.From]; !seen {
			r.votes[m.From] = !m.Reject
		}
		r.poll()
	}
	return nil
}

// ---- followers ----

func stepFollower(r *raft, m Message) error {
	switch m.Type {
	case MsgApp:
		r.electionElapsed = 0
		r.sinceLeader = 0
		r.lead = m.From
		r.handleAppendEntries(m)
	case MsgHeartbeat:
		r.electionElapsed = 0
		r.sinceLeader = 0
		r.lead = m.From
		r.log.commitTo(min(m.Commit, r.log.lastIndex()))
		r.send(Message{Type: MsgHeartbeatResp, To: m.From, Context: m.Context})
	case MsgSnap:
		r.electionElapsed = 0
		r.sinceLeader = 0
		r.lead = m.From
		r.handleSnapshot(m)
	case MsgTimeoutNow:
		// Leadership transfer: campaign at once, skipping pre-vote and
		// overriding the lease (thesis §3.10).
		r.hup(true)
	case MsgReadIndex:
		// The sender thinks we lead; we don't.
		r.send(Message{Type: MsgReadIndexResp, To: m.From, Context: m.Context, Reject: true})
	case MsgReadIndexResp:
		r.followerReadAnswered(m)
	}
	return nil
}

// handleAppendEntries is the receiver side of AppendEntries (§5.3).
func (r *raft) handleAppendEntries(m Message) {
	if m.Index < r.log.committed {
		// Everything up to our commit index matches any leader's log.
		r.send(Message{Type: MsgAppResp, To: m.From, Index: r.log.committed})
		return
	}
	before := r.log.lastIndex()
	if last, conflict, ok := r.log.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries); ok {
		if conflict != 0 {
			r.afterAppend(m.Entries[conflict-m.Index-1:], conflict <= before)
		}
		r.send(Message{Type: MsgAppResp, To: m.From, Index: last})
		return
	}
	// Reject, with a hint that lets the leader skip a whole term of
	// conflicting entries per round trip instead of one entry.
	hint := min(m.Index, r.log.lastIndex())
	hint, hintTerm := r.log.findConflictByTerm(hint, m.LogTerm)
	r.send(Message{Type: MsgAppResp, To: m.From, Index: m.Index, Reject: true,
		RejectHint: hint, LogTerm: hintTerm})
}

func (r *raft) handleSnapshot(m Message) {
	s := *m.Snapshot
	if r.restore(s) {
		r.send(Message{Type: MsgAppResp, To: m.From, Index: r.log.lastIndex()})
		return
	}
	r.send(Message{Type: MsgAppResp, To: m.From, Index: r.log.committed})
}

// restore installs snapshot s if it brings anything new.
func (r *raft) restore(s SnapshotMeta) bool {
	if s.Index <= r.log.committed {
		return false
	}
	if r.log.matchTerm(s.Index, s.Term) {
		// We already hold the snapshot's last entry; the log prefix
		// matches, so just commit up to it (§7: "retain the log entries
		// following it").
		r.log.commitTo(s.Index)
		return false
	}
	r.log.restore(s)
	r.conf = s.ConfState
	r.confIndex = s.Index
	r.logger.Info("raft: restored snapshot", "index", uint64(s.Index), "term", uint64(s.Term))
	return true
}

// ---- proposals ----

func (r *raft) propose(typ EntryType, cmds [][]byte) (Index, Term, error) {
	if r.role != Leader {
		return 0, 0, ErrNotLeader
	}
	if r.leadTransferee != None {
		return 0, 0, ErrTransferInProgress
	}
	if len(cmds) == 0 {
		return 0, 0, ErrEmptyProposal
	}
	if typ == EntryConfChange {
		if r.pendingConfIndex > r.log.committed {
			return 0, 0, ErrConfChangeInProgress
		}
		if _, err := UnmarshalConfState(cmds[0]); err != nil {
			return 0, 0, err
		}
	}
	var size uint64
	for _, c := range cmds {
		size += uint64(len(c))
	}
	if r.uncommittedSize > 0 && r.uncommittedSize+size > r.cfg.MaxUncommittedEntriesSize {
		return 0, 0, fmt.Errorf("%w: %d bytes uncommitted, limit %d", ErrUncommittedLimit,
			r.uncommittedSize, r.cfg.MaxUncommittedEntriesSize)
	}
	ents := make([]Entry, len(cmds))
	for i, c := range cmds {
		ents[i] = Entry{Type: typ, Data: c}
	}
	first := r.appendEntries(ents...)
	if typ == EntryConfChange {
		r.pendingConfIndex = first
	}
	r.bcastAppend()
	return first, r.term, nil
}

// appendEntries appends entries to the leader's log in the current term
// and returns the first new index.
func (r *raft) appendEntries(ents ...Entry) Index {
	before := r.log.lastIndex()
	for i := range ents {
		ents[i].Term = r.term
		ents[i].Index = before + 1 + Index(i)
		r.uncommittedSize += ents[i].payloadSize()
	}
	r.log.append(ents...)
	r.afterAppend(ents, false)
	return before + 1
}

// afterAppend keeps the configuration current after ents were appended,
// replacing a suffix of the log if truncated is set: the latest
// configuration entry in the log is the one in force, and truncating it
// away reverts to the previous one.
func (r *raft) afterAppend(ents []Entry, truncated bool) {
	if truncated && len(ents) > 0 && ents[0].Index <= r.confIndex {
		r.recomputeConf()
	}
	for i := range ents {
		if ents[i].Type != EntryConfChange || ents[i].Index <= r.confIndex {
			continue
		}
		if cs, err := UnmarshalConfState(ents[i].Data); err == nil {
			r.applyConf(cs, ents[i].Index)
		} else {
			r.logger.Error("raft: ignoring malformed configuration entry", "index", uint64(ents[i].Index), "err", err)
		}
	}
}

// recomputeConf finds the latest configuration in the log, scanning back
// from the end to the snapshot.
func (r *raft) recomputeConf() {
	for hi := r.log.lastIndex(); hi >= r.log.firstIndex(); {
		lo := max(r.log.firstIndex(), hi-min(hi, 1024)+1)
		ents, err := r.log.slice(lo, hi+1, ^uint64(0))
		if err != nil {
			break
		}
		for i := len(ents) - 1; i >= 0; i-- {
			if ents[i].Type == EntryConfChange {
				if cs, err := UnmarshalConfState(ents[i].Data); err == nil {
					r.applyConf(cs, ents[i].Index)
					return
				}
			}
		}
		if lo == r.log.firstIndex() {
			break
		}
		hi = lo - 1
	}
	if s, err := r.log.snapshot(); err == nil {
		r.applyConf(s.ConfState, s.Index)
	}
}

func (r *raft) applyConf(cs ConfState, index Index) {
	r.conf = cs
	r.confIndex = index
	if r.role != Leader {
		return
	}
	last := r.log.lastIndex()
	for _, id := range cs.Voters {
		if r.prs[id] == nil {
			r.prs[id] = newProgress(last+1, r.cfg.MaxInflightMsgs)
		}
	}
	for id := range r.prs {
		if !cs.IsVoter(id) {
			delete(r.prs, id)
		}
	}
}

// ---- leadership transfer ----

func (r *raft) transferLeadership(to NodeID) error {
	if r.role != Leader {
		return ErrNotLeader
	}
	if to == r.id {
		return nil
	}
	pr := r.prs[to]
	if pr == nil {
		return fmt.Errorf("%w: %d is not a voter", ErrUnknownPeer, to)
	}
	if r.leadTransferee == to {
		return nil
	}
	r.leadTransferee = to
	// The target will campaign without waiting for any lease to run out.
	r.reads.noLease = true
	// The transfer must complete within one election timeout. (Its clock
	// is its own: resetting the check-quorum clock here would let repeated
	// transfer requests keep a cut-off leader in place.)
	r.transferElapsed = 0
	if pr.match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	} else {
		r.sendAppend(to)
	}
	return nil
}

// ---- flow-control reports from the driver ----

func (r *raft) reportUnreachable(id NodeID) {
	if r.role != Leader {
		return
	}
	if pr := r.prs[id]; pr != nil && pr.state == StateReplicate {
		pr.becomeProbe()
	}
}

func (r *raft) reportSnapshot(id NodeID, ok bool) {
	if r.role != Leader {
		return
	}
	pr := r.prs[id]
	if pr == nil || pr.state != StateSnapshot {
		return
	}
	if !ok {
		pr.pendingSnapshot = 0
	}
	// Wait for the follower's answer (or the next heartbeat) before
	// sending more: probe from after the snapshot.
	pr.becomeProbe()
	pr.probeSent = true
}

// ---- Ready / Advance ----

func (r *raft) hasReady(prevSoft SoftState, prevHard HardState) bool {
	if r.softState() != prevSoft {
		return true
	}
	if hs := r.hardState(); !hs.IsEmpty() && hs != prevHard {
		return true
	}
	return len(r.log.unstable.entries) > 0 || r.log.unstable.snapshot != nil ||
		len(r.msgs) > 0 || len(r.msgsAfterPersist) > 0 || len(r.readStates) > 0 ||
		r.log.hasNextCommittedEnts()
}

func (r *raft) ready(prevSoft SoftState, prevHard HardState) Ready {
	rd := Ready{
		Entries:              r.log.unstable.entries,
		Messages:             r.msgs,
		MessagesAfterPersist: r.msgsAfterPersist,
		ReadStates:           r.readStates,
		CommittedEntries:     r.log.nextCommittedEnts(),
	}
	if ss := r.softState(); ss != prevSoft {
		rd.SoftState = &ss
	}
	if hs := r.hardState(); hs != prevHard {
		rd.HardState = hs
	}
	if s := r.log.unstable.snapshot; s != nil {
		snap := *s
		rd.Snapshot = &snap
	}
	// A changed term or vote must be on disk before votes are answered;
	// a commit index alone may be written lazily.
	rd.MustSync = len(rd.Entries) > 0 || rd.Snapshot != nil ||
		(!rd.HardState.IsEmpty() && (rd.HardState.Term != prevHard.Term || rd.HardState.Vote != prevHard.Vote))
	r.msgs, r.msgsAfterPersist, r.readStates = nil, nil, nil
	// Reads that join from now on need heartbeats sent after this point.
	r.reads.closeRound()
	if r.role == Leader && len(rd.CommittedEntries) > 0 {
		var s uint64
		for i := range rd.CommittedEntries {
			s += rd.CommittedEntries[i].payloadSize()
		}
		r.uncommittedSize -= min(s, r.uncommittedSize)
	}
	return rd
}

func (r *raft) advance(rd *Ready) {
	if rd.Snapshot != nil {
		r.log.stableSnapTo(rd.Snapshot.Index)
		r.log.appliedTo(rd.Snapshot.Index)
	}
	if n := len(rd.Entries); n > 0 {
		e := rd.Entries[n-1]
		r.log.stableTo(e.Index, e.Term)
		if r.role == Leader && r.log.matchTerm(e.Index, e.Term) {
			// The leader's own write is durable: only now does it count
			// toward the majority (its entries were sent to followers
			// while the write was in progress).
			if pr := r.prs[r.id]; pr != nil && pr.maybeUpdate(min(e.Index, r.log.stableLastIndex())) {
				if r.maybeCommit() {
					r.bcastAppend()
				}
			}
		}
	}
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.appliedTo(rd.CommittedEntries[n-1].Index)
	}
}

// ---- status ----

func (r *raft) status() Status {
	s := Status{
		ID:             r.id,
		Role:           r.role,
		Lead:           r.lead,
		Term:           r.term,
		Vote:           r.vote,
		Commit:         r.log.committed,
		Applied:        r.log.applied,
		LastIndex:      r.log.lastIndex(),
		Config:         ConfState{Voters: slices.Clone(r.conf.Voters)},
		LeadTransferee: r.leadTransferee,
	}
	if r.role == Leader {
		s.Progress = make(map[NodeID]ProgressStatus, len(r.prs))
		for id, pr := range r.prs {
			s.Progress[id] = ProgressStatus{Match: pr.match, Next: pr.next, State: pr.state,
				Inflight: pr.inflights.count, Active: pr.recentActive}
		}
	}
	return s
}

package raft

import (
	"fmt"
	"slices"
)

// ProgressState is how a leader is currently replicating to one follower.
type ProgressState uint8

const (
	// StateProbe: the leader does not know where the follower's log
	// matches. It sends one MsgApp per heartbeat interval and waits for the
	// answer before sending more (finding the match point, §5.3).
	StateProbe ProgressState = iota
	// StateReplicate: the match point is known. The leader streams MsgApps
	// optimistically (pipelining), up to MaxInflightMsgs unacknowledged.
	StateReplicate
	// StateSnapshot: the follower needs entries that are compacted. The
	// leader has sent a snapshot and sends nothing else until it is
	// reported delivered or failed.
	StateSnapshot
)

func (s ProgressState) String() string {
	switch s {
	case StateProbe:
		return "Probe"
	case StateReplicate:
		return "Replicate"
	case StateSnapshot:
		return "Snapshot"
	}
	return fmt.Sprintf("ProgressState(%d)", uint8(s))
}

// progress is the leader's view of one follower (§5.3 nextIndex and
// matchIndex, plus flow control).
//
// Invariant: match < next.
type progress struct {
	match, next Index
	state       ProgressState
	// pendingSnapshot is the index of the snapshot in flight (StateSnapshot).
	pendingSnapshot Index
	// recentActive is set when the follower was heard from since the last
	// check-quorum round.
	recentActive bool
	// probeSent is set in StateProbe once a MsgApp is in flight; it is
	// cleared by the answer or by the next heartbeat response.
	probeSent bool
	// sentCommit is the highest commit index sent to the follower; when
	// it lags the leader's, the follower is sent the news as soon as it
	// can take a message, not a heartbeat later.
	sentCommit Index
	inflights  inflights
}

func newProgress(next Index, maxInflight int) *progress {
	return &progress{next: next, inflights: newInflights(maxInflight)}
}

func (p *progress) resetState(s ProgressState) {
	p.probeSent = false
	p.pendingSnapshot = 0
	p.state = s
	p.inflights.reset()
}

func (p *progress) becomeProbe() {
	if p.state == StateSnapshot {
		// After a snapshot the follower holds at least its index.
		pending := p.pendingSnapshot
		p.resetState(StateProbe)
		p.next = max(p.match+1, pending+1)
		return
	}
	p.resetState(StateProbe)
	p.next = p.match + 1
}

func (p *progress) becomeReplicate() {
	p.resetState(StateReplicate)
	p.next = p.match + 1
}

func (p *progress) becomeSnapshot(snapIndex Index) {
	p.resetState(StateSnapshot)
	p.pendingSnapshot = snapIndex
}

// maybeUpdate records that the follower's log matches ours up to n. It
// reports whether that was news.
func (p *progress) maybeUpdate(n Index) bool {
	updated := false
	if p.match < n {
		p.match = n
		updated = true
		p.probeSent = false
	}
	p.next = max(p.next, n+1)
	return updated
}

// sentEntries records that a MsgApp carrying entries up to last was sent.
func (p *progress) sentEntries(n int, last Index) {
	switch p.state {
	case StateReplicate:
		if n > 0 {
			p.next = last + 1
			p.inflights.add(last)
		}
	case StateProbe:
		p.probeSent = true
	}
}

// maybeDecrTo handles a rejected MsgApp whose Index was rejected. hint is
// the index the leader computed from the follower's hint (fast
// backtracking). It reports whether next moved (false for stale
// rejections).
func (p *progress) maybeDecrTo(rejected, hint Index) bool {
	if rejected == p.match && hint < p.match && p.match > 0 {
		// The follower denies holding the very entry it acknowledged: it
		// lost its log (a wiped data directory being rebuilt from its
		// peers; Raft itself assumes durable storage). What it matched is
		// unknown again, so probe from its hint. Lowering match is safe:
		// the commit index never moves back.
		p.match = 0
		p.next = max(min(rejected, hint+1), 1)
		p.probeSent = false
		return true
	}
	if p.state == StateReplicate {
		// In a pipeline only the rejection of the first inflight matters;
		// any rejection at or below match is stale.
		if rejected <= p.match {
			return false
		}
		p.next = p.match + 1
		return true
	}
	// In probe, only a rejection of the probe we sent (next-1) counts.
	if p.next-1 != rejected {
		return false
	}
	p.next = max(min(rejected, hint+1), p.match+1)
	p.probeSent = false
	return true
}

// isPaused reports whether the leader must hold off sending MsgApp.
func (p *progress) isPaused() bool {
	switch p.state {
	case StateProbe:
		return p.probeSent
	case StateReplicate:
		return p.inflights.full()
	case StateSnapshot:
		return true
	}
	return true
}

// inflights is a bounded FIFO of the last indexes of MsgApps in flight to
// one follower: the pipelining window.
type inflights struct {
	buf   []Index
	start int
	count int
}

func newInflights(size int) inflights { return inflights{buf: make([]Index, size)} }

func (in *inflights) full() bool { return in.count == len(in.buf) }

func (in *inflights) reset() { in.start, in.count = 0, 0 }

func (in *inflights) add(last Index) {
	if in.full() {
		return // callers check isPaused first; never overwrite
	}
	in.buf[(in.start+in.count)%len(in.buf)] = last
	in.count++
}

// freeFirst frees the oldest inflight message.
func (in *inflights) freeFirst() {
	if in.count > 0 {
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

// freeLE frees every inflight message whose last index is <= to: the
// follower has acknowledged them.
func (in *inflights) freeLE(to Index) {
	for in.count > 0 && in.buf[in.start] <= to {
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

// quorum is the number of votes that make a majority of n voters.
func quorum(n int) int { return n/2 + 1 }

// committedIndex returns the highest index matched by a majority of voters
// (the quorum-th largest match index).
func committedIndex(voters []NodeID, match func(NodeID) Index) Index {
	if len(voters) == 0 {
		return 0
	}
	m := make([]Index, len(voters))
	for i, id := range voters {
		m[i] = match(id)
	}
	slices.Sort(m)
	return m[len(m)-quorum(len(m))]
}

// voteResult tallies an election.
type voteResult uint8

const (
	votePending voteResult = iota
	voteWon
	voteLost
)

func tallyVotes(voters []NodeID, votes map[NodeID]bool) voteResult {
	granted, rejected := 0, 0
	for _, id := range voters {
		v, ok := votes[id]
		switch {
		case !ok:
		case v:
			granted++
		default:
			rejected++
		}
	}
	q := quorum(len(voters))
	switch {
	case granted >= q:
		return voteWon
	case rejected > len(voters)-q:
		return voteLost
	}
	return votePending
}

package rafttest

import (
	"testing"

	"github.com/cairnkv/cairn/raft"
)

// Basic agreement (§5.3): each proposal is committed at the next index and
// applied by every node.
func TestBasicAgreement(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3})
	waitLeader(s)
	// Index 1 is the bootstrap configuration, 2 the leader's no-op.
	for i := range raft.Index(5) {
		if got := s.Agree(val("v%d", i), 3, liveness); got != 3+i {
			s.Fatalf("proposal %d committed at index %d; want %d", i, got, 3+i)
		}
	}
	s.WaitConverged(liveness)
	s.CheckProposals()
}

// In steady state the leader sends each entry to each follower about once:
// pipelining does not resend, and heartbeats carry no entries.
func TestEachEntrySentOnce(t *testing.T) {
	for _, nodes := range []int{3, 5} {
		s := newSim(t, 1, Options{Nodes: nodes})
		l := waitLeader(s)
		s.Run(1)
		s.ResetStats()
		const n = 100
		for i := range n {
			// Several proposals per tick, some ticks with none.
			if _, _, err := s.Propose(l, val("e%d", i)); err != nil {
				s.Fatalf("propose: %v", err)
			}
			if i%3 == 0 {
				s.Tick()
			}
		}
		s.WaitConverged(liveness)
		for _, f := range except(s, l) {
			if got := s.Stats().AppEntries[l][f]; got < n || got > n+n/20 {
				s.Fatalf("leader %d sent %d entries to follower %d for %d proposals; want about one each", l, got, f, n)
			}
		}
	}
}

// Progress with a failed follower: the other two commit; the follower
// catches up when it returns.
func TestProgressWithFailedFollower(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3})
	l := waitLeader(s)
	s.Agree(val("1"), 3, liveness)
	f := except(s, l)[0]
	s.Isolate(f)
	for i := range 4 {
		s.Agree(val("2.%d", i), 2, liveness)
		s.Run(et / 2)
	}
	s.Reconnect(f)
	s.Agree(val("3"), 3, liveness)
	s.WaitConverged(liveness)
}

// Progress after a failed leader: a new leader is elected and commits; the
// old one, restarted, catches up.
func TestProgressAfterFailedLeader(t *testing.T) {
	for _, seed := range seeds(1, 2, 3) {
		s := newSim(t, seed, Options{Nodes: 3})
		l := waitLeader(s)
		s.Agree(val("1"), 3, liveness)
		s.Crash(l)
		s.Agree(val("2"), 2, liveness)
		s.Agree(val("3"), 2, liveness)
		s.Restart(l)
		s.Agree(val("4"), 3, liveness)
		s.WaitConverged(liveness)
		s.CheckProposals()
	}
}

// A follower that was disconnected while 100 entries were committed catches
// up when it returns: from the leader's log, or (once the log is compacted)
// from a snapshot.
func TestDisconnectedFollowerCatchesUp(t *testing.T) {
	for _, mode := range []string{"log", "snapshot"} {
		t.Run(mode, func(t *testing.T) {
			opts := Options{Nodes: 3}
			if mode == "snapshot" {
				opts.SnapshotEvery, opts.SnapshotKeep = 10, 2
			}
			s := newSim(t, 1, opts)
			l := waitLeader(s)
			f := except(s, l)[0]
			s.Isolate(f)
			for i := range 100 {
				if _, _, err := s.Propose(l, val("c%d", i)); err != nil {
					s.Fatalf("propose: %v", err)
				}
				s.Tick()
			}
			s.Reconnect(f)
			s.WaitConverged(liveness)
			s.CheckProposals()
			snaps := s.Stats().Sent[raft.MsgSnap]
			if mode == "snapshot" && snaps == 0 {
				s.Fatalf("follower caught up without a snapshot although the leader compacted its log")
			}
			if mode == "log" && snaps != 0 {
				s.Fatalf("%d snapshots sent without compaction", snaps)
			}
		})
	}
}

// Nothing commits without a quorum (§5.3): a leader cut off from three of
// five followers' acknowledgements cannot commit its proposal.
func TestNoCommitWithoutQuorum(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 5})
	l := waitLeader(s)
	s.Agree(val("before"), 5, liveness)
	f := except(s, l)
	s.Partition([]raft.NodeID{l, f[0]}, f[1:])
	idx, term, err := s.Propose(l, val("minority"))
	if err != nil {
		s.Fatalf("propose: %v", err)
	}
	for range 3 * et {
		s.Tick()
		if s.IsCommitted(idx, term) {
			s.Fatalf("entry %d/%d committed by a minority", term, idx)
		}
	}
	// The majority side elects its own leader and commits.
	waitLeaderAmong(s, f[1:], liveness)
	s.Heal()
	s.Agree(val("after"), 5, liveness)
	s.WaitConverged(liveness)
}

// Concurrent proposals: many proposals made at once each get their own
// index, all in the leader's term, and each commits with its own data.
func TestConcurrentProposals(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3})
	l := waitLeader(s)
	const n = 20
	seen := map[raft.Index]bool{}
	var term raft.Term
	for i := range n {
		idx, tm, err := s.Propose(l, val("p%d", i))
		if err != nil {
			s.Fatalf("propose %d: %v", i, err)
		}
		if seen[idx] || (term != 0 && tm != term) {
			s.Fatalf("proposal %d got index %d term %d; indexes must be distinct and terms equal", i, idx, tm)
		}
		seen[idx], term = true, tm
	}
	s.WaitConverged(liveness)
	s.CheckProposals()
	for _, p := range s.Proposals() {
		if !s.IsCommitted(p.Index, p.Term) {
			s.Fatalf("proposal %q at %d/%d not committed", p.Data, p.Term, p.Index)
		}
	}
}

// An old leader's uncommitted entries are overwritten after it rejoins
// (§5.3): the new leader's log wins, and they are never applied.
func TestRejoinOverwritesUncommitted(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3})
	l1 := waitLeader(s)
	s.Agree(val("101"), 3, liveness)

	s.Isolate(l1)
	var stale []Proposal
	for _, v := range []string{"102", "103", "104"} {
		idx, term, err := s.Propose(l1, val("%s", v))
		if err != nil {
			s.Fatalf("propose to cut-off leader: %v", err)
		}
		stale = append(stale, Proposal{Index: idx, Term: term, Data: val("%s", v)})
	}
	l2 := waitLeaderAmong(s, except(s, l1), liveness)
	s.Agree(val("103'"), 2, liveness)

	// The new leader is cut off; the old one returns.
	s.Isolate(l2)
	s.Reconnect(l1)
	s.Agree(val("104'"), 2, liveness)
	s.Reconnect(l2)
	s.Agree(val("105"), 3, liveness)
	s.WaitConverged(liveness)
	for _, p := range stale {
		if s.IsCommitted(p.Index, p.Term) {
			s.Fatalf("the cut-off leader's entry %q at %d/%d was committed", p.Data, p.Term, p.Index)
		}
		for _, id := range s.IDs() {
			if s.Contains(id, p.Data) {
				s.Fatalf("node %d applied the cut-off leader's entry %q", id, p.Data)
			}
		}
	}
}

// Fast backup (§5.3, "the follower can include the term of the conflicting
// entry"): a leader brings a follower with 50+ conflicting entries back in
// a few round trips, not one per entry. The scenario of MIT 6.824's
// TestBackup2B: two partitions each accumulate 50 entries of their own.
func TestFastBackup(t *testing.T) {
	for _, seed := range seeds(1, 2, 3) {
		s := newSim(t, seed, Options{Nodes: 5})
		l1 := waitLeader(s)
		s.Agree(val("start"), 5, liveness)

		// l1 and one follower are cut off; l1 takes 50 doomed proposals.
		f := except(s, l1)
		s.Partition([]raft.NodeID{l1, f[0]}, f[1:])
		for i := range 50 {
			s.Propose(l1, val("doomed-a%d", i))
		}
		s.Run(1)

		// The other three elect a leader and commit 50 entries.
		l2 := waitLeaderAmong(s, f[1:], liveness)
		for i := range 50 {
			s.Propose(l2, val("ok-a%d", i))
		}
		s.WaitUntilCommittedAll(f[1:], liveness)

		// l2 and one follower are cut off from the third, and take 50 more
		// doomed proposals.
		other := except(s, l1, f[0], l2)[0]
		s.Partition([]raft.NodeID{l1, f[0]}, []raft.NodeID{other}, except(s, l1, f[0], other))
		for i := range 50 {
			s.Propose(l2, val("doomed-b%d", i))
		}
		s.Run(1)

		// The original leader, its follower and the third make a majority;
		// the two with 50 conflicting entries must back up over them.
		s.ResetStats()
		s.Partition([]raft.NodeID{l1, f[0], other}, except(s, l1, f[0], other))
		l3 := waitLeaderAmong(s, []raft.NodeID{l1, f[0], other}, liveness)
		for i := range 50 {
			s.Propose(l3, val("ok-b%d", i))
		}
		s.WaitUntilCommittedAll([]raft.NodeID{l1, f[0], other}, liveness)
		rejectsB := s.Stats().AppRejects

		// Everyone together: the last two back up over their own 50.
		s.ResetStats()
		s.Heal()
		s.Agree(val("end"), 5, liveness)
		s.WaitConverged(liveness)
		rejectsC := s.Stats().AppRejects
		// Each lagging follower needs about one rejection per term it has
		// to skip; 50 conflicting entries must not cost 50 round trips.
		if rejectsB > 6 || rejectsC > 6 {
			s.Fatalf("backing up over 50 conflicting entries took %d and %d rejected appends; want a handful", rejectsB, rejectsC)
		}
		t.Logf("seed %d: %d and %d rejected appends to back up two followers each", s.opts.Seed, rejectsB, rejectsC)
	}
}

// Message counts are bounded: an election, a dozen agreements and an idle
// second each cost no more than their protocol needs.
func TestMessageCounts(t *testing.T) {
	const nodes = 3
	s := newSim(t, 1, Options{Nodes: nodes})
	peers := nodes - 1

	// An election: each campaign round (pre-vote or vote) sends a request
	// to every peer and gets at most one answer to each. A node starts at
	// most one pre-vote and one vote round per election timeout, and
	// several nodes can time out in the same tick and split the vote (the
	// seed decides; randomized timeouts make it rare), so the bound is per
	// round. Then the new leader's no-op is appended and acknowledged, its
	// commit announced and acknowledged, and one heartbeat round may go out
	// with them: at most 6 messages per peer besides the campaigns. (Over
	// seeds 1..1000 that part always took 4 per peer, and the campaigns 2
	// to 8 rounds.)
	l := waitLeader(s)
	st := s.Stats()
	requests := st.Sent[raft.MsgPreVote] + st.Sent[raft.MsgVote]
	answers := st.Sent[raft.MsgPreVoteResp] + st.Sent[raft.MsgVoteResp]
	rest := st.Total() - requests - answers
	maxRounds := 2 * nodes * (int(s.Now())/et + 1)
	if requests == 0 || requests%peers != 0 || requests/peers > maxRounds || answers > requests || rest > 6*peers {
		s.Fatalf("election in %d ticks took %d campaign requests (want whole rounds of %d, at most %d rounds), %d answers (want at most one each) and %d other messages (want at most %d)",
			s.Now(), requests, peers, maxRounds, answers, rest, 6*peers)
	}

	// A dozen agreements without ticks: per agreement an append and its
	// acknowledgement, then the commit index and its acknowledgement.
	s.Run(1)
	s.ResetStats()
	for i := range 12 {
		idx, term, err := s.Propose(l, val("m%d", i))
		if err != nil {
			s.Fatalf("propose: %v", err)
		}
		s.Settle()
		if !s.IsCommitted(idx, term) {
			s.Fatalf("proposal %d not committed without ticks", i)
		}
	}
	if got, limit := s.Stats().Total(), 12*4*peers; got > limit {
		s.Fatalf("12 agreements took %d messages; want at most %d", got, limit)
	}

	// An idle second: heartbeats and their answers only.
	s.ResetStats()
	s.Run(TicksPerSecond)
	st = s.Stats()
	hb := st.Sent[raft.MsgHeartbeat] + st.Sent[raft.MsgHeartbeatResp]
	if limit := 2 * peers * TicksPerSecond / raft.DefaultHeartbeatTick; st.Total() > limit || hb != st.Total() {
		s.Fatalf("an idle second took %d messages (%d heartbeats); want at most %d, all heartbeats", st.Total(), hb, limit)
	}
	t.Logf("messages: election ok, 12 agreements ok, idle second %d", st.Total())
}

package rafttest

import (
	"testing"

	"github.com/cairnkv/cairn/raft"
)

// Leader election (§5.2): one leader is elected when nothing fails, and it
// stays leader, in the same term, for as long as nothing fails.
func TestInitialElection(t *testing.T) {
	for _, seed := range seeds(1, 2, 3, 4, 5) {
		s := newSim(t, seed, Options{Nodes: 3})
		l := waitLeader(s)
		term := s.Status(l).Term
		s.Run(1) // a heartbeat tells everyone
		for _, id := range s.IDs() {
			if st := s.Status(id); st.Lead != l || st.Term != term {
				s.Fatalf("node %d follows %d in term %d; want leader %d in term %d", id, st.Lead, st.Term, l, term)
			}
		}
		s.Run(10 * et)
		if got := s.Leaders(); len(got) != 1 || got[0] != l || s.Status(l).Term != term {
			s.Fatalf("leaders %v in term %d after 10 quiet election timeouts; want only %d in term %d", got, s.Status(l).Term, l, term)
		}
		if n := s.Stats().LeaderChanges; n != 1 {
			s.Fatalf("%d leader changes with no failure; want 1", n)
		}
	}
}

// A leader cut off is replaced; when it returns there is still one leader;
// and no leader is elected without a quorum.
func TestReElection(t *testing.T) {
	for _, seed := range seeds(1, 2, 3) {
		s := newSim(t, seed, Options{Nodes: 3})
		l1 := waitLeader(s)

		s.Isolate(l1)
		l2 := waitLeaderAmong(s, except(s, l1), liveness)

		// The old leader rejoins: it must not disturb the new one.
		s.Reconnect(l1)
		s.Run(2 * et)
		if got := s.Leaders(); len(got) != 1 || got[0] != l2 {
			s.Fatalf("leaders %v after the old leader %d rejoined; want only %d", got, l1, l2)
		}

		// Cut everyone off from everyone: no quorum anywhere. Check-quorum
		// makes the leader step down within an election timeout, and nobody
		// may be elected after that.
		s.Partition()
		if !s.RunUntil(2*et, func() bool { return len(s.Leaders()) == 0 }) {
			s.Fatalf("leader %v still leads with no quorum after %d ticks", s.Leaders(), 2*et)
		}
		for range 10 * et {
			s.Tick()
			if ls := s.Leaders(); len(ls) > 0 {
				s.Fatalf("node %v became leader without a quorum", ls)
			}
		}

		// Two nodes make a quorum again.
		f := except(s, l2)[0]
		s.Partition([]raft.NodeID{l2, f})
		waitLeaderAmong(s, []raft.NodeID{l2, f}, liveness)
		s.Heal()
		s.Run(2 * et)
		if got := s.Leaders(); len(got) != 1 {
			s.Fatalf("leaders %v after healing; want one", got)
		}
	}
}

// Many elections on 7 nodes: repeatedly cut off 3 random nodes; the other 4
// (a majority) always elect a leader among themselves.
func TestManyElections(t *testing.T) {
	for _, seed := range seeds(1, 2) {
		s := newSim(t, seed, Options{Nodes: 7})
		r := testRand(s)
		waitLeader(s)
		for range 10 {
			perm := r.Perm(7)
			var out []raft.NodeID
			for _, k := range perm[:3] {
				out = append(out, raft.NodeID(k+1))
			}
			rest := except(s, out...)
			s.Partition(rest)
			s.Note("cut off %v", out)
			waitLeaderAmong(s, rest, liveness)
			s.Heal()
			s.Run(r.IntN(2 * et))
		}
		s.CheckLiveness(s.IDs(), liveness)
	}
}

// Pre-vote (thesis §9.6): a node rejoining from a partition does not raise
// the healthy group's term or depose its leader, because while cut off it
// only ever asked whether it could win, without changing its term.
func TestPreVote(t *testing.T) {
	for _, seed := range seeds(1, 2, 3) {
		s := newSim(t, seed, Options{Nodes: 3})
		l := waitLeader(s)
		term := s.Status(l).Term
		f := except(s, l)[0]

		s.Isolate(f)
		s.Run(10 * et) // f times out again and again
		if got := s.Status(f).Term; got != term {
			s.Fatalf("isolated node %d moved from term %d to %d: pre-vote should keep its term", f, term, got)
		}
		changes := s.Stats().LeaderChanges
		s.Reconnect(f)
		s.Run(5 * et)
		if s.Leader() != l || s.Status(l).Term != term || s.Stats().LeaderChanges != changes {
			s.Fatalf("after node %d rejoined, leader is %d in term %d; want %d still leading in term %d",
				f, s.Leader(), s.Status(s.Leader()).Term, l, term)
		}
	}
}

// Without pre-vote, the same isolated node raises its term at every
// timeout: the disruption pre-vote exists to prevent.
func TestWithoutPreVoteIsolatedNodeRaisesTerm(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3, DisablePreVote: true})
	l := waitLeader(s)
	term := s.Status(l).Term
	f := except(s, l)[0]
	s.Isolate(f)
	s.Run(10 * et)
	if got := s.Status(f).Term; got <= term+2 {
		s.Fatalf("isolated node %d is at term %d after 10 timeouts without pre-vote; want well past %d", f, got, term)
	}
	s.Reconnect(f)
	s.CheckLiveness(s.IDs(), LivenessTicks(s.opts))
}

// Check-quorum (thesis §6.2): a leader that cannot hear from a majority
// steps down within an election timeout, whether it is cut off entirely or
// only deaf (its messages still go out), and a new leader takes over.
func TestCheckQuorum(t *testing.T) {
	for _, mode := range []string{"isolated", "deaf"} {
		t.Run(mode, func(t *testing.T) {
			for _, seed := range seeds(1, 2, 3) {
				s := newSim(t, seed, Options{Nodes: 5})
				l := waitLeader(s)
				if mode == "isolated" {
					s.Isolate(l)
				} else {
					for _, f := range except(s, l) {
						s.Cut(f, l)
					}
				}
				if !s.RunUntil(2*et, func() bool { return s.Status(l).Role != raft.Leader }) {
					s.Fatalf("leader %d, cut off from the majority (%s), still leads after %d ticks", l, mode, 2*et)
				}
				l2 := waitLeaderAmong(s, except(s, l), liveness)
				s.Note("new leader %d", l2)
				s.Heal()
				s.CheckLiveness(s.IDs(), liveness)
			}
		})
	}
}

// The check-quorum lease on votes (thesis §4.2.3, §6.2): a follower that
// heard from the leader within an election timeout ignores vote requests.
// Pre-vote is off, so a node cut off from the leader for many election
// timeouts climbs through one term after another; when it can reach the
// group again, its vote requests (of a much later term, and with a stale
// log: the group committed writes meanwhile) must neither move a member of
// the healthy majority to a new term nor depose its leader. Without the
// lease, every member that sees such a request adopts its term, and the
// leader falls with the first heartbeat answered in that term.
//
// The node gets back in two ways: "deaf", its messages reach everyone but
// nothing reaches it; "around-the-leader", it and the followers hear each
// other but it and the leader do not. (A node fully reconnected answers the
// leader's next heartbeat, of a lower term, with its own later term, and
// the leader steps down by design, with the lease or without; pre-vote is
// what spares the group that: see TestPreVote.)
func TestCheckQuorumVoteLease(t *testing.T) {
	for _, mode := range []string{"deaf", "around-the-leader"} {
		t.Run(mode, func(t *testing.T) {
			for _, seed := range seeds(1, 2, 3) {
				s := newSim(t, seed, Options{Nodes: 5, DisablePreVote: true})
				l := waitLeader(s)
				s.Agree(val("a"), 5, liveness)
				term := s.Status(l).Term
				f := except(s, l)[0]
				majority := except(s, f)
				s.Isolate(f)
				for i := range 10 {
					if _, _, err := s.Propose(l, val("b%d", i)); err != nil {
						s.Fatalf("propose to %d: %v", l, err)
					}
					s.Run(et)
				}
				if got := s.Status(f).Term; got < term+5 {
					s.Fatalf("node %d, cut off for 10 election timeouts without pre-vote, is at term %d; want well past %d", f, got, term)
				}
				changes := s.Stats().LeaderChanges
				s.Note("node %d returns (%s) at term %d", f, mode, s.Status(f).Term)
				for _, o := range majority {
					if mode == "deaf" || o != l {
						s.Link(f, o)
					}
					if mode == "around-the-leader" && o != l {
						s.Link(o, f)
					}
				}
				for range 5 * et {
					s.Tick()
					for _, id := range majority {
						if got := s.Status(id).Term; got != term {
							s.Fatalf("node %d of the healthy majority moved from term %d to %d: node %d's vote requests were not ignored", id, term, got, f)
						}
					}
				}
				if got := s.LeaderAmong(majority); got != l || s.Stats().LeaderChanges != changes {
					s.Fatalf("leader of the majority is %d after %d leader changes; want %d still leading", got, s.Stats().LeaderChanges-changes, l)
				}
				// The majority still commits.
				idx, tm, err := s.Propose(l, val("c"))
				if err != nil || !s.RunUntil(et, func() bool { return s.IsCommitted(idx, tm) }) {
					s.Fatalf("proposal to %d not committed (%v)", l, err)
				}
			}
		})
	}
}

// Without check-quorum, nothing makes a cut-off leader step down.
func TestWithoutCheckQuorumIsolatedLeaderStays(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3, DisableCheckQuorum: true})
	l := waitLeader(s)
	s.Isolate(l)
	s.Run(5 * et)
	if s.Status(l).Role != raft.Leader {
		s.Fatalf("isolated leader %d stepped down without check-quorum", l)
	}
}

// Leadership transfer (thesis §3.10): the target, once caught up, is told
// to campaign at once and wins in the next term.
func TestLeadershipTransfer(t *testing.T) {
	t.Run("up-to-date", func(t *testing.T) {
		s := newSim(t, 1, Options{Nodes: 3})
		l := waitLeader(s)
		s.Agree(val("a"), 3, liveness)
		term := s.Status(l).Term
		to := except(s, l)[0]
		if err := s.TransferLeadership(l, to); err != nil {
			s.Fatalf("TransferLeadership: %v", err)
		}
		s.Settle()
		if s.Leader() != to || s.Status(to).Term != term+1 {
			s.Fatalf("after transfer from %d to %d: leader %d in term %d; want %d in term %d",
				l, to, s.Leader(), s.Status(s.Leader()).Term, to, term+1)
		}
		s.Agree(val("b"), 3, liveness)
	})
	t.Run("lagging-target", func(t *testing.T) {
		s := newSim(t, 1, Options{Nodes: 3})
		l := waitLeader(s)
		to := except(s, l)[0]
		s.Isolate(to)
		for i := range 20 {
			s.Agree(val("x%d", i), 2, liveness)
		}
		s.Reconnect(to)
		if err := s.TransferLeadership(l, to); err != nil {
			s.Fatalf("TransferLeadership: %v", err)
		}
		if !s.RunUntil(et, func() bool { return s.Leader() == to }) {
			s.Fatalf("lagging node %d did not take over within an election timeout", to)
		}
		// Leader completeness is checked by the Sim; the new leader's log
		// holds all 20 entries.
		s.Agree(val("y"), 3, liveness)
		s.CheckProposals()
	})
	t.Run("dead-target", func(t *testing.T) {
		s := newSim(t, 1, Options{Nodes: 3})
		l := waitLeader(s)
		to := except(s, l)[0]
		s.Crash(to)
		if err := s.TransferLeadership(l, to); err != nil {
			s.Fatalf("TransferLeadership: %v", err)
		}
		if _, _, err := s.Propose(l, val("during")); err == nil {
			s.Fatalf("leader %d accepted a proposal during a leadership transfer", l)
		}
		s.Run(2 * et) // the transfer is abandoned after an election timeout
		if s.Leader() != l {
			s.Fatalf("leader is %d; want %d to keep leading after the transfer to dead %d failed", s.Leader(), l, to)
		}
		s.Agree(val("after"), 2, liveness)
	})
	t.Run("not-leader", func(t *testing.T) {
		s := newSim(t, 1, Options{Nodes: 3})
		l := waitLeader(s)
		f := except(s, l)[0]
		if err := s.TransferLeadership(f, l); err == nil {
			s.Fatalf("follower %d accepted TransferLeadership", f)
		}
	})
}

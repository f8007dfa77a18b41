package raft

import (
	"strings"
	"testing"
)

// heartbeatRound ticks the leader once (HeartbeatTick is 1) and delivers
// everything, so a majority acknowledges a fresh heartbeat round.
func heartbeatRound(t *testing.T, env *interactionEnv) {
	t.Helper()
	env.node(1).Tick()
	env.mustStabilize(t)
}

// leaseReadNow asks the leader for a lease read and reports whether the
// very next Ready answers it without sending anything for it.
func leaseReadNow(t *testing.T, env *interactionEnv, id ReadID) bool {
	t.Helper()
	l := env.node(1)
	l.LeaseRead(id)
	rd := l.Ready()
	defer func() {
		if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		l.Advance(rd)
		env.queue = append(env.queue, rd.Messages...)
		env.queue = append(env.queue, rd.MessagesAfterPersist...)
	}()
	for _, rs := range rd.ReadStates {
		if rs.ID == id {
			return true
		}
	}
	return false
}

// TestLeaseRead: within its lease a leader answers a read with no network
// round; the lease runs ElectionTick-MaxClockDriftTicks ticks from the
// heartbeat a majority acknowledged, and then reads fall back to ReadIndex.
func TestLeaseRead(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	heartbeatRound(t, env)
	if !leaseReadNow(t, env, 1) {
		t.Fatal("lease read not answered at once within the lease")
	}
	env.mustStabilize(t)
	// Cut the leader off: no more acknowledgements. The lease lasts
	// ElectionTick-MaxClockDriftTicks ticks from the last acknowledged round.
	l := env.node(1)
	lease := l.r.cfg.ElectionTick - l.r.cfg.MaxClockDriftTicks
	for range lease - 1 {
		l.Tick()
		rd := l.Ready() // heartbeats lost
		l.Advance(rd)
	}
	if !leaseReadNow(t, env, 2) {
		t.Fatal("lease read refused before the lease ran out")
	}
	env.queue = nil
	l.Tick()
	l.Advance(l.Ready())
	env.queue = nil
	if leaseReadNow(t, env, 3) {
		t.Fatal("lease read answered after the lease ran out")
	}
	// It falls back to ReadIndex: answered once a round is acknowledged.
	if out := env.mustStabilize(t); !strings.Contains(out, "read 3 at index") {
		t.Fatalf("the read that fell back to ReadIndex was not answered:\n%s", out)
	}
}

// TestLeaseEndsWithTransfer: once the leader starts handing leadership
// over, the target campaigns without waiting for leases to run out, so the
// leader stops serving lease reads for the rest of its term.
func TestLeaseEndsWithTransfer(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	heartbeatRound(t, env)
	// Make the transfer wait (the target is not caught up): cut it off.
	env.setCut(1, 3, true)
	if _, _, err := env.node(1).Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	env.mustStabilize(t)
	if err := env.node(1).TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if leaseReadNow(t, env, 1) {
		t.Fatal("lease read answered during a leadership transfer")
	}
}

// TestLeaseNeedsCheckQuorum: without check-quorum followers grant votes at
// any time, so there is no lease: LeaseRead is ReadIndex.
func TestLeaseNeedsCheckQuorum(t *testing.T) {
	env := newTestCluster(t, 3, Config{DisableCheckQuorum: true})
	heartbeatRound(t, env)
	if leaseReadNow(t, env, 1) {
		t.Fatal("lease read answered without check-quorum")
	}
}

// TestRestartedNodeRefusesVotesForAnElectionTimeout: a restarted node may
// have acknowledged a leader's heartbeat just before it went down, and so
// promised not to vote for ElectionTick ticks; it keeps that promise after
// the restart, which is what makes leases safe across crashes.
func TestRestartedNodeRefusesVotesForAnElectionTimeout(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	heartbeatRound(t, env)
	st := env.node(2).Status()
	cfg := env.nodes[2].cfg
	cfg.Seed++
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vote := Message{Type: MsgVote, From: 3, To: 2, Term: st.Term + 1, Index: st.LastIndex, LogTerm: st.Term}
	if err := n.Step(vote); err != nil {
		t.Fatal(err)
	}
	if s := n.Status(); s.Term != st.Term || s.Vote != st.Vote {
		t.Fatalf("restarted node took the vote request at once: term %d vote %d", s.Term, s.Vote)
	}
	for range n.r.cfg.ElectionTick {
		n.Tick()
	}
	if n.Status().Role != Follower {
		t.Skip("the node campaigned itself; the promise has run out either way")
	}
	vote.Term = n.Status().Term + 1
	if err := n.Step(vote); err != nil {
		t.Fatal(err)
	}
	if n.Status().Vote != 3 {
		t.Fatalf("after an election timeout the restarted node still refuses to vote: %+v", n.Status())
	}
}

// TestCampaignKeepsLeasePromise: a follower that heard from the leader and
// is then told to Campaign still refuses other candidates' votes until an
// election timeout after it last heard from the leader: the leader may be
// serving lease reads on the strength of that promise.
func TestCampaignKeepsLeasePromise(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	heartbeatRound(t, env)
	f := env.node(2)
	f.Campaign()
	if f.Status().Role != PreCandidate {
		t.Fatalf("node 2 is %s after Campaign", f.Status().Role)
	}
	st := f.Status()
	for _, typ := range []MessageType{MsgPreVote, MsgVote} {
		if err := f.Step(Message{Type: typ, From: 3, To: 2, Term: st.Term + 1, Index: st.LastIndex + 5, LogTerm: st.Term}); err != nil {
			t.Fatal(err)
		}
	}
	rd := f.Ready()
	for _, m := range append(rd.Messages, rd.MessagesAfterPersist...) {
		if (m.Type == MsgPreVoteResp || m.Type == MsgVoteResp) && m.To == 3 && !m.Reject {
			t.Fatalf("granted %s to node 3 within its lease promise: %s", m.Type, DescribeReady(rd))
		}
	}
	if s := f.Status(); s.Term != st.Term || s.Vote == 3 {
		t.Fatalf("took node 3's vote request within its lease promise: %+v", s)
	}
}

package raft

import (
	"testing"
)

// TestLeaderCountsItselfOnlyOnceDurableWithAcksInFlight: the driver may
// step messages while a Ready is being written (doc.go). In a group of
// five, two followers' acknowledgements plus the leader's own entry that is
// still being written are not a majority: nothing commits until Advance
// says the leader's write is durable (thesis §10.2.1).
func TestLeaderCountsItselfOnlyOnceDurableWithAcksInFlight(t *testing.T) {
	env := newTestCluster(t, 5, Config{})
	n := env.node(1)
	index, term, err := n.Propose([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	// Followers 2 and 3 receive the MsgApp and acknowledge it before the
	// leader's own write finishes.
	for _, id := range []NodeID{2, 3} {
		if err := n.Step(Message{Type: MsgAppResp, From: id, To: 1, Term: term, Index: index}); err != nil {
			t.Fatal(err)
		}
	}
	if c := n.Status().Commit; c >= index {
		t.Fatalf("commit = %d with two followers and a leader write still in flight, want < %d", c, index)
	}
	if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	n.Advance(rd)
	if c := n.Status().Commit; c != index {
		t.Fatalf("commit = %d once the leader's write is durable, want %d", c, index)
	}
}

// TestStaleAppendAnsweredWithCommitIndex: a follower that receives an
// append older than its commit index answers with its commit index, which
// every leader's log shares, never with its last index, which may cover
// entries the leader does not have (the leader would count them toward a
// majority).
func TestStaleAppendAnsweredWithCommitIndex(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	f := env.node(2)
	st := f.Status()
	// Give the follower uncommitted entries of its own beyond the commit.
	if err := f.Step(Message{Type: MsgApp, From: 1, To: 2, Term: st.Term, Index: st.LastIndex, LogTerm: st.Term,
		Entries: []Entry{{Index: st.LastIndex + 1, Term: st.Term, Data: []byte("a")}, {Index: st.LastIndex + 2, Term: st.Term, Data: []byte("b")}},
		Commit:  st.Commit}); err != nil {
		t.Fatal(err)
	}
	env.processAll(t)
	env.queue = nil
	commit := f.Status().Commit
	if err := f.Step(Message{Type: MsgApp, From: 1, To: 2, Term: st.Term, Index: commit - 1, LogTerm: 1, Commit: commit}); err != nil {
		t.Fatal(err)
	}
	rd := f.Ready()
	var resp []Message
	for _, m := range append(rd.Messages, rd.MessagesAfterPersist...) {
		if m.Type == MsgAppResp {
			resp = append(resp, m)
		}
	}
	if len(resp) != 1 || resp[0].Reject || resp[0].Index != commit {
		t.Fatalf("answer to a stale append: %s, want an acknowledgement of the commit index %d", DescribeReady(rd), commit)
	}
}

// TestReadNotConfirmedByUnsentRound: an acknowledgement of a heartbeat
// round whose heartbeats have not left yet cannot be genuine; it confirms
// nothing (and must not corrupt the read bookkeeping: this once panicked).
func TestReadNotConfirmedByUnsentRound(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	l := env.node(1)
	term := l.Status().Term
	round := l.r.reads.round + 1
	l.ReadIndex(7)
	if err := l.Step(Message{Type: MsgHeartbeatResp, From: 3, To: 1, Term: term, Context: round}); err != nil {
		t.Fatal(err)
	}
	l.ReadIndex(8)
	rd := l.Ready()
	if len(rd.ReadStates) != 0 {
		t.Fatalf("read answered before its heartbeats left: %s", DescribeReady(rd))
	}
	if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	l.Advance(rd)
	// Now the round has been sent; a genuine acknowledgement confirms both.
	if err := l.Step(Message{Type: MsgHeartbeatResp, From: 3, To: 1, Term: term, Context: round}); err != nil {
		t.Fatal(err)
	}
	rd = l.Ready()
	if len(rd.ReadStates) != 2 {
		t.Fatalf("after a genuine acknowledgement: %s, want reads 7 and 8 answered", DescribeReady(rd))
	}
}

// TestTransferDoesNotExtendCheckQuorum: requesting leadership transfers
// must not keep a leader cut off from its followers in place; it still
// steps down after an election timeout without hearing from a majority.
func TestTransferDoesNotExtendCheckQuorum(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	l := env.node(1)
	for i := 0; i < 3*DefaultElectionTick && l.Status().Role == Leader; i++ {
		if i%(DefaultElectionTick-1) == 0 {
			to := NodeID(2 + (i/(DefaultElectionTick-1))%2)
			if err := l.TransferLeadership(to); err != nil {
				t.Fatal(err)
			}
		}
		l.Tick()
		_ = l.Ready() // messages go nowhere: the leader is cut off
		l.Advance(Ready{})
	}
	if r := l.Status().Role; r == Leader {
		t.Fatalf("a cut-off leader is still %s after %d ticks of transfer requests", r, 3*DefaultElectionTick)
	}
}

// TestHigherTermVoteRequestKeepsElectionTimer: seeing a higher term in a
// vote request the node rejects does not restart its election timer
// (Figure 2 restarts it only for the leader's AppendEntries or a granted
// vote), so candidates with stale logs cannot keep electable nodes from
// campaigning.
func TestHigherTermVoteRequestKeepsElectionTimer(t *testing.T) {
	env := newTestCluster(t, 3, Config{DisablePreVote: true, DisableCheckQuorum: true})
	f := env.node(2)
	for range 5 {
		f.Tick()
	}
	before := f.r.electionElapsed
	st := f.Status()
	// A candidate with an empty log in a higher term: rejected.
	if err := f.Step(Message{Type: MsgVote, From: 3, To: 2, Term: st.Term + 1, Index: 0, LogTerm: 0}); err != nil {
		t.Fatal(err)
	}
	if f.Status().Vote != None {
		t.Fatalf("voted for a candidate with a stale log")
	}
	if f.r.electionElapsed != before {
		t.Fatalf("election timer = %d after a rejected vote request, want %d", f.r.electionElapsed, before)
	}
}

// TestLeaderReprobesFollowerThatLostItsLog: a follower whose log was wiped
// rejects the append at the index it once acknowledged, with a hint far
// below. The leader must probe down from the hint instead of ignoring the
// rejection as stale forever (the wiped follower would never catch up).
func TestLeaderReprobesFollowerThatLostItsLog(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	l := env.node(1)
	for range 5 {
		if _, _, err := l.Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
		env.mustStabilize(t)
	}
	st := l.Status()
	match := st.Progress[3].Match
	if match != st.LastIndex {
		t.Fatalf("follower 3 match = %d, want %d", match, st.LastIndex)
	}
	// Follower 3 lost everything but the bootstrap entry.
	if err := l.Step(Message{Type: MsgAppResp, From: 3, To: 1, Term: st.Term, Index: match, Reject: true,
		RejectHint: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	pr := l.Status().Progress[3]
	if pr.Match != 0 || pr.Next > 2 || pr.State != StateProbe {
		t.Fatalf("after the wiped follower's rejection: %+v, want match 0, next <= 2, probing", pr)
	}
	rd := l.Ready()
	var probe *Message
	for i, m := range rd.Messages {
		if m.Type == MsgApp && m.To == 3 {
			probe = &rd.Messages[i]
		}
	}
	if probe == nil || probe.Index > 1 || len(probe.Entries) == 0 {
		t.Fatalf("no append from index <= 2 to the wiped follower: %s", DescribeReady(rd))
	}
	l.Advance(rd)
}

package raft

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// newTestCluster returns n bootstrapped nodes with the given config
// template (check-quorum and pre-vote as in tmpl), with node 1 elected
// leader and everything delivered.
func newTestCluster(t *testing.T, n int, tmpl Config) *interactionEnv {
	t.Helper()
	tmpl.Logger = discardLogger
	env := newInteractionEnv()
	var b strings.Builder
	if err := env.bootstrap(n, tmpl, &b); err != nil {
		t.Fatal(err)
	}
	env.nodes[1].node.Campaign()
	env.mustStabilize(t)
	if st := env.nodes[1].node.Status(); st.Role != Leader {
		t.Fatalf("node 1 is %s after campaigning", st.Role)
	}
	return env
}

func (env *interactionEnv) mustStabilize(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	if err := env.stabilize(env.ids, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (env *interactionEnv) node(id NodeID) *Node { return env.nodes[id].node }

// TestStepRejectsInvalidMessages: a message that cannot be right (wrong
// addressee, no sender, no term, malformed entries or snapshot, unknown
// type) is reported with an error and changes nothing: not the term, not
// the log, not the role, and no message is sent in reply.
func TestStepRejectsInvalidMessages(t *testing.T) {
	app := func(term Term, index Index, logTerm Term, ents ...Entry) Message {
		return Message{Type: MsgApp, From: 1, To: 2, Term: term, Index: index, LogTerm: logTerm, Entries: ents, Commit: 2}
	}
	e := func(index Index, term Term) Entry { return Entry{Index: index, Term: term, Data: []byte("x")} }
	for _, tc := range []struct {
		name    string
		m       Message
		wantErr error
	}{
		{"to another node", Message{Type: MsgHeartbeat, From: 1, To: 3, Term: 2}, ErrUnknownPeer},
		{"to nobody", Message{Type: MsgHeartbeat, From: 1, To: None, Term: 2}, ErrUnknownPeer},
		{"from nobody", Message{Type: MsgHeartbeat, From: None, To: 2, Term: 2}, ErrInvalidMessage},
		{"from itself", Message{Type: MsgHeartbeat, From: 2, To: 2, Term: 2}, ErrInvalidMessage},
		{"heartbeat without term", Message{Type: MsgHeartbeat, From: 1, To: 2}, ErrInvalidMessage},
		{"vote without term", Message{Type: MsgVote, From: 3, To: 2, Index: 9, LogTerm: 9}, ErrInvalidMessage},
		{"append without term", app(0, 2, 2, e(3, 2)), ErrInvalidMessage},
		{"append with a gap", app(2, 2, 2, e(4, 2)), ErrInvalidMessage},
		{"append with a repeated index", app(2, 2, 2, e(3, 2), e(3, 2)), ErrInvalidMessage},
		{"append going backwards", app(2, 2, 2, e(3, 2), e(2, 2)), ErrInvalidMessage},
		{"append with decreasing terms", app(3, 2, 2, e(3, 3), e(4, 2)), ErrInvalidMessage},
		{"append with an entry below the previous term", app(3, 2, 2, e(3, 1)), ErrInvalidMessage},
		{"append with an entry above the message term", app(2, 2, 2, e(3, 3)), ErrInvalidMessage},
		{"append whose previous term is above its term", app(2, 2, 3), ErrInvalidMessage},
		{"malformed append from a higher term", app(9, 2, 2, e(4, 9)), ErrInvalidMessage},
		{"snapshot message without snapshot", Message{Type: MsgSnap, From: 1, To: 2, Term: 2}, ErrInvalidMessage},
		{"snapshot at index 0", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Term: 1}}, ErrInvalidMessage},
		{"snapshot from a future term", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, Term: 3}}, ErrInvalidMessage},
		{"snapshot in term 0", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, ConfState: NewConfState(1, 2, 3)}}, ErrInvalidMessage},
		{"snapshot without voters", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, Term: 2}}, ErrInvalidMessage},
		{"snapshot with unsorted voters", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, Term: 2, ConfState: ConfState{Voters: []NodeID{3, 1, 2}}}}, ErrInvalidMessage},
		{"snapshot with a duplicate voter", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, Term: 2, ConfState: ConfState{Voters: []NodeID{1, 2, 2}}}}, ErrInvalidMessage},
		{"snapshot with voter 0", Message{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &SnapshotMeta{Index: 9, Term: 2, ConfState: ConfState{Voters: []NodeID{0, 1, 2}}}}, ErrInvalidMessage},
		{"append whose index overflows", app(2, ^Index(0), 2, Entry{Index: 0, Term: 2}), ErrInvalidMessage},
		{"type zero", Message{From: 1, To: 2, Term: 2}, ErrInvalidMessage},
		{"unknown type", Message{Type: 99, From: 1, To: 2, Term: 2}, ErrInvalidMessage},
	} {
		for _, target := range []NodeID{2, 1} {
			env := newTestCluster(t, 3, Config{})
			m := tc.m
			if target == 1 {
				// The same message, addressed to the leader (from node 2).
				if m.To == 2 {
					m.To = 1
				} else if m.To == 1 {
					m.To = 2
				}
				if m.From == 1 {
					m.From = 2
				} else if m.From == 2 {
					m.From = 1
				}
			}
			n := env.node(target)
			before := n.Status()
			lastBefore := n.r.log.lastIndex()
			err := n.Step(m)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s (to node %d): Step = %v, want %v", tc.name, target, err, tc.wantErr)
			}
			if after := n.Status(); !reflect.DeepEqual(before, after) {
				t.Errorf("%s (to node %d): status changed\nbefore %+v\nafter  %+v", tc.name, target, before, after)
			}
			if n.HasReady() {
				t.Errorf("%s (to node %d): produced a Ready: %s", tc.name, target, DescribeReady(n.Ready()))
			}
			if n.r.log.lastIndex() != lastBefore {
				t.Errorf("%s (to node %d): log changed", tc.name, target)
			}
		}
	}
}

// TestStepAcceptsValidAppend is the control for the test above: the same
// shape of message, well formed, is accepted.
func TestStepAcceptsValidAppend(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	n := env.node(2)
	m := Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 2, LogTerm: 2, Commit: 2,
		Entries: []Entry{{Index: 3, Term: 2, Data: []byte("a")}, {Index: 4, Term: 2, Data: []byte("b")}}}
	if err := n.Step(m); err != nil {
		t.Fatalf("Step: %v", err)
	}
	if last := n.Status().LastIndex; last != 4 {
		t.Errorf("last index = %d, want 4", last)
	}
}

// TestVoteOncePerTerm: "each server will vote for at most one candidate in
// a given term, on a first-come-first-served basis" (§5.2), and the vote
// leaves only after it is durable.
func TestVoteOncePerTerm(t *testing.T) {
	env := newInteractionEnv()
	var b strings.Builder
	if err := env.bootstrap(3, Config{DisablePreVote: true, Logger: discardLogger}, &b); err != nil {
		t.Fatal(err)
	}
	n := env.node(3)
	vote := func(from NodeID) Message {
		return Message{Type: MsgVote, From: from, To: 3, Term: 2, Index: 1, LogTerm: 1}
	}
	if err := n.Step(vote(1)); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.Messages) != 0 || len(rd.MessagesAfterPersist) != 1 || rd.MessagesAfterPersist[0].Reject {
		t.Fatalf("first vote: %s", DescribeReady(rd))
	}
	if rd.HardState.Vote != 1 || !rd.MustSync {
		t.Errorf("the granted vote is not persisted with a sync: %s", DescribeReady(rd))
	}
	n.Advance(rd)
	if err := n.Step(vote(2)); err != nil {
		t.Fatal(err)
	}
	rd = n.Ready()
	if len(rd.MessagesAfterPersist) != 1 || !rd.MessagesAfterPersist[0].Reject {
		t.Errorf("second candidate of the same term: %s", DescribeReady(rd))
	}
	n.Advance(rd)
	// Asking again (a retransmission) is granted again: same candidate.
	if err := n.Step(vote(1)); err != nil {
		t.Fatal(err)
	}
	rd = n.Ready()
	if len(rd.MessagesAfterPersist) != 1 || rd.MessagesAfterPersist[0].Reject {
		t.Errorf("retransmitted request of the voted-for candidate: %s", DescribeReady(rd))
	}
}

// TestStaleTermMessagesIgnored: "if a server receives a request with a
// stale term number, it rejects the request" (§5.1); stale responses are
// dropped; a stale leader's append is answered with the current term so
// that it steps down.
func TestStaleTermMessagesIgnored(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	// Move everyone to term 3 with node 2 as leader.
	if err := env.node(1).TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	env.mustStabilize(t)
	n := env.node(3)
	if st := n.Status(); st.Term != 3 || st.Lead != 2 {
		t.Fatalf("node 3: term %d lead %d", st.Term, st.Lead)
	}
	before := n.Status()
	for _, m := range []Message{
		{Type: MsgVote, From: 1, To: 3, Term: 2, Index: 99, LogTerm: 2},
		{Type: MsgVoteResp, From: 1, To: 3, Term: 2},
		{Type: MsgHeartbeatResp, From: 1, To: 3, Term: 2},
		{Type: MsgTimeoutNow, From: 1, To: 3, Term: 2},
	} {
		if err := n.Step(m); err != nil {
			t.Fatal(err)
		}
		if n.HasReady() {
			t.Errorf("stale %s produced %s", m.Type, DescribeReady(n.Ready()))
		}
	}
	if after := n.Status(); !reflect.DeepEqual(before, after) {
		t.Errorf("stale messages changed the state: %+v", after)
	}
	if err := n.Step(Message{Type: MsgApp, From: 1, To: 3, Term: 2, Index: 3, LogTerm: 2}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.MessagesAfterPersist) != 1 || rd.MessagesAfterPersist[0].Term != 3 || rd.MessagesAfterPersist[0].To != 1 {
		t.Errorf("stale append: %s, want a response in term 3 to node 1", DescribeReady(rd))
	}
}

// TestLeaderCountsItselfOnlyOnceDurable: the leader's own entries count
// toward a majority only once the Ready carrying them is acknowledged with
// Advance (thesis §10.2.1). The MsgApps for them are in the same Ready's
// Messages, so replication overlaps the leader's write.
func TestLeaderCountsItselfOnlyOnceDurable(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		env := newTestCluster(t, 1, Config{})
		n := env.node(1)
		index, _, err := n.Propose([]byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		rd := n.Ready()
		if len(rd.Entries) != 1 || len(rd.CommittedEntries) != 0 || n.Status().Commit == index {
			t.Fatalf("committed before the write: %s", DescribeReady(rd))
		}
		if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		n.Advance(rd)
		if n.Status().Commit != index {
			t.Fatalf("commit = %d after the write, want %d", n.Status().Commit, index)
		}
		rd = n.Ready()
		if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != index {
			t.Errorf("next Ready: %s, want %d applied", DescribeReady(rd), index)
		}
	})
	t.Run("three nodes", func(t *testing.T) {
		env := newTestCluster(t, 3, Config{})
		n := env.node(1)
		index, _, err := n.Propose([]byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		rd := n.Ready()
		if len(rd.Messages) != 2 || len(rd.Entries) != 1 {
			t.Fatalf("the MsgApps do not leave with the write: %s", DescribeReady(rd))
		}
		if m := n.Status().Progress[1].Match; m >= index {
			t.Errorf("leader's own match = %d before its write, want < %d", m, index)
		}
		if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		n.Advance(rd)
		if m := n.Status().Progress[1].Match; m != index {
			t.Errorf("leader's own match = %d after its write, want %d", m, index)
		}
		if n.Status().Commit == index {
			t.Errorf("committed with the leader's vote alone")
		}
		env.queue = append(env.queue, rd.Messages...)
		env.mustStabilize(t)
		if n.Status().Commit != index {
			t.Errorf("commit = %d after the followers acknowledged, want %d", n.Status().Commit, index)
		}
	})
}

// TestProposeErrors: what Propose, ProposeConfChange and
// TransferLeadership refuse, and that a refusal appends nothing.
func TestProposeErrors(t *testing.T) {
	env := newTestCluster(t, 3, Config{MaxUncommittedEntriesSize: 10})
	leader, follower := env.node(1), env.node(2)
	last := func() Index { return leader.Status().LastIndex }

	if _, _, err := follower.Propose([]byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Propose on a follower = %v, want ErrNotLeader", err)
	}
	if err := follower.TransferLeadership(3); !errors.Is(err, ErrNotLeader) {
		t.Errorf("TransferLeadership on a follower = %v, want ErrNotLeader", err)
	}
	before := last()
	if _, _, err := leader.Propose(); !errors.Is(err, ErrEmptyProposal) {
		t.Errorf("Propose() = %v, want ErrEmptyProposal", err)
	}
	if err := leader.TransferLeadership(9); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("TransferLeadership(9) = %v, want ErrUnknownPeer", err)
	}
	if _, _, err := leader.ProposeConfChange(ConfState{Voters: []NodeID{2, 2}}); !errors.Is(err, ErrBadConfState) {
		t.Errorf("ProposeConfChange(duplicate voters) = %v, want ErrBadConfState", err)
	}
	if last() != before {
		t.Fatalf("refused proposals appended entries")
	}

	// The uncommitted-size limit: one proposal is always accepted when
	// nothing is uncommitted, whatever its size; past the limit proposals
	// are refused until the log commits.
	if _, _, err := leader.Propose([]byte("0123456789abcdef")); err != nil {
		t.Fatalf("first proposal over the limit: %v", err)
	}
	if _, _, err := leader.Propose([]byte("y")); !errors.Is(err, ErrUncommittedLimit) {
		t.Errorf("proposal past the limit = %v, want ErrUncommittedLimit", err)
	}
	env.mustStabilize(t)
	if _, _, err := leader.Propose([]byte("y")); err != nil {
		t.Errorf("proposal after the log committed = %v", err)
	}
	env.mustStabilize(t)

	// One configuration change at a time.
	if _, _, err := leader.ProposeConfChange(NewConfState(1, 2, 3)); err != nil {
		t.Fatalf("ProposeConfChange: %v", err)
	}
	if _, _, err := leader.ProposeConfChange(NewConfState(1, 2, 3)); !errors.Is(err, ErrConfChangeInProgress) {
		t.Errorf("second ProposeConfChange = %v, want ErrConfChangeInProgress", err)
	}
	env.mustStabilize(t)
	if _, _, err := leader.ProposeConfChange(NewConfState(1, 2, 3)); err != nil {
		t.Errorf("ProposeConfChange after the first committed = %v", err)
	}
	env.mustStabilize(t)

	// No proposals while leadership is being transferred.
	env.cut[[2]NodeID{1, 3}], env.cut[[2]NodeID{3, 1}] = true, true
	if _, _, err := leader.Propose([]byte("z")); err != nil {
		t.Fatal(err)
	}
	env.mustStabilize(t) // node 3 misses "z"
	if err := leader.TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := leader.Propose([]byte("w")); !errors.Is(err, ErrTransferInProgress) {
		t.Errorf("Propose during a transfer = %v, want ErrTransferInProgress", err)
	}
	if err := leader.TransferLeadership(3); err != nil {
		t.Errorf("repeating the transfer = %v", err)
	}
	if err := leader.TransferLeadership(1); err != nil {
		t.Errorf("transfer to itself = %v", err)
	}
}

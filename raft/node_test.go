package raft

import (
	"fmt"
	"strings"
	"testing"
)

// processAll handles every pending Ready of every live node once (no
// delivery).
func (env *interactionEnv) processAll(t *testing.T) {
	t.Helper()
	var b strings.Builder
	for _, id := range env.ids {
		if n := env.nodes[id]; n.node != nil {
			if err := env.processReady(id, &b); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// stabilizeObserving is stabilize without output, calling observe on every
// message as it is sent.
func (env *interactionEnv) stabilizeObserving(t *testing.T, observe func(Message)) {
	t.Helper()
	var b strings.Builder
	for range 1000 {
		env.processAll(t)
		if len(env.queue) == 0 {
			return
		}
		for _, m := range env.queue {
			observe(m)
		}
		for _, id := range env.ids {
			env.deliverMsgs(id, &b)
		}
	}
	t.Fatal("no quiescence")
}

// queued returns the queued messages of type typ addressed to to.
func (env *interactionEnv) queued(typ MessageType, to NodeID) []Message {
	var out []Message
	for _, m := range env.queue {
		if m.Type == typ && m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// TestProposalsAreBatched: one Propose with several commands becomes one
// MsgApp per follower, and one Ready for the leader's disk.
func TestProposalsAreBatched(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	if _, _, err := env.node(1).Propose([]byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	rd := env.node(1).Ready()
	if len(rd.Entries) != 3 {
		t.Errorf("persisted in one Ready: %d entries, want 3", len(rd.Entries))
	}
	for _, to := range []NodeID{2, 3} {
		var apps []Message
		for _, m := range rd.Messages {
			if m.Type == MsgApp && m.To == to {
				apps = append(apps, m)
			}
		}
		if len(apps) != 1 || len(apps[0].Entries) != 3 {
			t.Errorf("to %d: %d MsgApps (%v), want one carrying 3 entries", to, len(apps), apps)
		}
	}
}

// TestEachEntrySentOnceInSteadyState: with a healthy group, each entry
// reaches each follower in exactly one MsgApp.
func TestEachEntrySentOnceInSteadyState(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	sent := map[NodeID]map[Index]int{2: {}, 3: {}}
	for i := range 20 {
		if _, _, err := env.node(1).Propose([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			env.node(1).Tick() // heartbeats interleave with replication
		}
		for range 100 {
			env.processAll(t)
			if len(env.queue) == 0 {
				break
			}
			for _, m := range env.queue {
				if m.Type == MsgApp {
					for _, e := range m.Entries {
						sent[m.To][e.Index]++
					}
				}
			}
			var b strings.Builder
			for _, id := range env.ids {
				env.deliverMsgs(id, &b)
			}
		}
	}
	for to, byIndex := range sent {
		if len(byIndex) != 20 {
			t.Errorf("follower %d received %d distinct entries, want 20", to, len(byIndex))
		}
		for index, n := range byIndex {
			if n != 1 {
				t.Errorf("entry %d sent to %d %d times", index, to, n)
			}
		}
	}
}

// TestPipelineWindow: in the replicate state the leader keeps up to
// MaxInflightMsgs MsgApps in flight to a follower that has not answered,
// then pauses; a heartbeat response lets one more through (the window's
// messages may all have been lost).
func TestPipelineWindow(t *testing.T) {
	env := newTestCluster(t, 3, Config{MaxInflightMsgs: 2})
	leader := env.node(1)
	if st := leader.Status().Progress[2]; st.State != StateReplicate {
		t.Fatalf("follower 2 is in %s", st.State)
	}
	for i := range 5 {
		if _, _, err := leader.Propose([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	env.processAll(t)
	if got := len(env.queued(MsgApp, 2)); got != 2 {
		t.Errorf("%d MsgApps in flight to 2, want 2 (the window)", got)
	}
	if got := leader.Status().Progress[2].Inflight; got != 2 {
		t.Errorf("inflight = %d, want 2", got)
	}
	// The window's messages are lost; a heartbeat round trip lets one
	// more MsgApp out, carrying everything not yet sent.
	env.queue = nil
	leader.Tick()
	var b strings.Builder
	env.processAll(t)
	env.deliverMsgs(2, &b)
	env.deliverMsgs(3, &b)
	env.processAll(t)
	env.deliverMsgs(1, &b)
	env.queue = slicesDeleteType(env.queue, MsgApp, 3)
	env.processAll(t)
	apps := env.queued(MsgApp, 2)
	if len(apps) != 1 || len(apps[0].Entries) == 0 {
		t.Fatalf("after a heartbeat response: MsgApps to 2 = %v, want one with entries", apps)
	}
	// Eventually everything is caught up.
	env.mustStabilize(t)
	leader.Tick()
	env.mustStabilize(t)
	if st := env.node(2).Status(); st.Commit != leader.Status().Commit {
		t.Errorf("follower 2 commit %d, leader %d", st.Commit, leader.Status().Commit)
	}
}

func slicesDeleteType(q []Message, typ MessageType, to NodeID) []Message {
	out := q[:0]
	for _, m := range q {
		if !(m.Type == typ && m.To == to) {
			out = append(out, m)
		}
	}
	return out
}

// TestMaxSizePerMsg: a MsgApp carries at most MaxSizePerMsg bytes of
// entries (but always at least one entry).
func TestMaxSizePerMsg(t *testing.T) {
	// Entry size is 24 + payload; payload 76 makes each entry 100 bytes.
	env := newTestCluster(t, 3, Config{MaxSizePerMsg: 250})
	leader := env.node(1)
	isolate := func(on bool) {
		env.cut[[2]NodeID{1, 2}], env.cut[[2]NodeID{2, 1}] = on, on
	}
	isolate(true)
	payload := make([]byte, 76)
	for range 7 {
		if _, _, err := leader.Propose(payload); err != nil {
			t.Fatal(err)
		}
	}
	env.mustStabilize(t)
	isolate(false)
	var maxEnts int
	leader.Tick()
	env.stabilizeObserving(t, func(m Message) {
		if m.Type != MsgApp || m.To != 2 {
			return
		}
		maxEnts = max(maxEnts, len(m.Entries))
		var size uint64
		for _, e := range m.Entries {
			size += e.size()
		}
		if size > 250 && len(m.Entries) > 1 {
			t.Errorf("MsgApp with %d entries, %d bytes > 250", len(m.Entries), size)
		}
	})
	if maxEnts != 2 {
		t.Errorf("largest MsgApp carried %d entries, want 2", maxEnts)
	}
	if a, b := env.node(2).Status().LastIndex, leader.Status().LastIndex; a != b {
		t.Errorf("follower 2 did not catch up: %d vs %d", a, b)
	}
}

// TestMaxCommittedSizePerReady: committed entries are handed out in
// batches of at most MaxCommittedSizePerReady bytes, in order.
func TestMaxCommittedSizePerReady(t *testing.T) {
	env := newTestCluster(t, 1, Config{MaxCommittedSizePerReady: 250})
	n := env.node(1)
	payload := make([]byte, 76) // 100-byte entries
	cmds := [][]byte{payload, payload, payload, payload, payload}
	if _, _, err := n.Propose(cmds...); err != nil {
		t.Fatal(err)
	}
	var batches []int
	next := n.Status().Applied + 1
	for n.HasReady() {
		rd := n.Ready()
		if err := env.nodes[1].storage.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		if len(rd.CommittedEntries) > 0 {
			batches = append(batches, len(rd.CommittedEntries))
			for _, e := range rd.CommittedEntries {
				if e.Index != next {
					t.Fatalf("applied %d, want %d", e.Index, next)
				}
				next++
			}
		}
		n.Advance(rd)
	}
	if fmt.Sprint(batches) != "[2 2 1]" {
		t.Errorf("committed entries per Ready = %v, want [2 2 1]", batches)
	}
}

// TestVoteSurvivesRestart: a vote is durable before it is sent, so a node
// that crashes after voting does not vote for someone else in that term.
func TestVoteSurvivesRestart(t *testing.T) {
	env := newInteractionEnv()
	var b strings.Builder
	if err := env.bootstrap(3, Config{DisablePreVote: true, Logger: discardLogger}, &b); err != nil {
		t.Fatal(err)
	}
	n3 := env.nodes[3]
	if err := n3.node.Step(Message{Type: MsgVote, From: 1, To: 3, Term: 2, Index: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	if err := env.processReady(3, &b); err != nil {
		t.Fatal(err)
	}
	granted := env.queued(MsgVoteResp, 1)
	if len(granted) != 1 || granted[0].Reject {
		t.Fatalf("vote for 1: %v", granted)
	}
	// Crash and restart node 3 from its storage.
	n3.crash()
	if err := n3.restart(); err != nil {
		t.Fatal(err)
	}
	node := n3.node
	if st := node.Status(); st.Term != 2 || st.Vote != 1 {
		t.Fatalf("after restart: term %d vote %d, want 2 1", st.Term, st.Vote)
	}
	env.queue = nil
	if err := node.Step(Message{Type: MsgVote, From: 2, To: 3, Term: 2, Index: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	if err := env.processReady(3, &b); err != nil {
		t.Fatal(err)
	}
	resp := env.queued(MsgVoteResp, 2)
	if len(resp) != 1 || !resp[0].Reject {
		t.Errorf("after restart, a second candidate of term 2 got %v, want a rejection", resp)
	}
}

// TestReadIndexForwardedToNonLeader: a follower whose idea of the leader
// is stale forwards its read to a node that is not the leader; that node
// refuses, and the reads are dropped (the caller retries), never answered
// with a wrong index.
func TestReadIndexForwardedToNonLeader(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	n3 := env.node(3)
	n3.r.lead = 2 // stale knowledge of who leads
	n3.ReadIndex(7)
	var b strings.Builder
	if err := env.stabilize(env.ids, &b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, fmt.Sprintf("2->3 MsgReadIndexResp Term:2 Batch:%d Rejected", n3.r.reads.fwdSeq)) {
		t.Errorf("no rejection from node 2:\n%s", out)
	}
	if strings.Contains(out, "read 7") {
		t.Errorf("read 7 was answered:\n%s", out)
	}
}

// TestReadIndexSingleNode: a group of one is its own majority: a read is
// answered without any message, once the leader has committed in its term.
func TestReadIndexSingleNode(t *testing.T) {
	env := newTestCluster(t, 1, Config{})
	n := env.node(1)
	n.ReadIndex(3)
	rd := n.Ready()
	if len(rd.ReadStates) != 1 || rd.ReadStates[0] != (ReadState{ID: 3, Index: n.Status().Commit}) || len(rd.Messages) != 0 {
		t.Errorf("Ready = %s", DescribeReady(rd))
	}
}

// TestReportUnreachable: a leader told a follower is unreachable stops
// pipelining to it and probes; the next exchange restores pipelining.
func TestReportUnreachable(t *testing.T) {
	env := newTestCluster(t, 3, Config{})
	leader := env.node(1)
	leader.ReportUnreachable(2)
	if st := leader.Status().Progress[2].State; st != StateProbe {
		t.Errorf("after ReportUnreachable: %s, want Probe", st)
	}
	env.node(2).ReportUnreachable(1) // on a follower: no effect, no panic
	if _, _, err := leader.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	env.mustStabilize(t)
	if st := leader.Status().Progress[2].State; st != StateReplicate {
		t.Errorf("after a round trip: %s, want Replicate", st)
	}
}

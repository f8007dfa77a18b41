package raft

import (
	"fmt"
	"slices"
	"testing"
)

func TestProgressBecomeProbe(t *testing.T) {
	for _, tc := range []struct {
		name     string
		p        progress
		wantNext Index
	}{
		{"from replicate", progress{state: StateReplicate, match: 1, next: 5}, 2},
		{"from snapshot, snapshot ahead of match", progress{state: StateSnapshot, match: 1, next: 5, pendingSnapshot: 10}, 11},
		{"from snapshot, match ahead of snapshot", progress{state: StateSnapshot, match: 15, next: 16, pendingSnapshot: 10}, 16},
		{"from snapshot that failed", progress{state: StateSnapshot, match: 1, next: 5}, 2},
	} {
		p := tc.p
		p.inflights = newInflights(4)
		p.inflights.add(3)
		p.probeSent = true
		p.becomeProbe()
		if p.state != StateProbe || p.next != tc.wantNext || p.match != tc.p.match {
			t.Errorf("%s: state=%s match=%d next=%d, want Probe %d %d", tc.name, p.state, p.match, p.next, tc.p.match, tc.wantNext)
		}
		if p.probeSent || p.pendingSnapshot != 0 || p.inflights.count != 0 {
			t.Errorf("%s: probeSent=%t pendingSnapshot=%d inflight=%d, want all reset", tc.name, p.probeSent, p.pendingSnapshot, p.inflights.count)
		}
	}
}

func TestProgressBecomeReplicate(t *testing.T) {
	p := progress{state: StateProbe, match: 1, next: 5, probeSent: true, inflights: newInflights(4)}
	p.becomeReplicate()
	if p.state != StateReplicate || p.match != 1 || p.next != 2 || p.probeSent {
		t.Errorf("state=%s match=%d next=%d probeSent=%t, want Replicate 1 2 false", p.state, p.match, p.next, p.probeSent)
	}
}

func TestProgressBecomeSnapshot(t *testing.T) {
	p := progress{state: StateProbe, match: 1, next: 5, inflights: newInflights(4)}
	p.becomeSnapshot(10)
	if p.state != StateSnapshot || p.match != 1 || p.pendingSnapshot != 10 {
		t.Errorf("state=%s match=%d pending=%d, want Snapshot 1 10", p.state, p.match, p.pendingSnapshot)
	}
	if !p.isPaused() {
		t.Error("a follower receiving a snapshot is not paused")
	}
}

func TestProgressMaybeUpdate(t *testing.T) {
	const match, next = 3, 5
	for _, tc := range []struct {
		update    Index
		wantMatch Index
		wantNext  Index
		wantOK    bool
	}{
		{match - 1, match, next, false}, // stale
		{match, match, next, false},     // duplicate
		{match + 1, match + 1, next, true},
		{match + 2, match + 2, next + 1, true},
		{match + 3, match + 3, next + 2, true},
	} {
		p := progress{match: match, next: next, probeSent: true}
		ok := p.maybeUpdate(tc.update)
		if ok != tc.wantOK || p.match != tc.wantMatch || p.next != tc.wantNext {
			t.Errorf("maybeUpdate(%d) = %t, match=%d next=%d; want %t %d %d",
				tc.update, ok, p.match, p.next, tc.wantOK, tc.wantMatch, tc.wantNext)
		}
		if ok && p.probeSent {
			t.Errorf("maybeUpdate(%d): probeSent not cleared by news", tc.update)
		}
	}
}

func TestProgressMaybeDecrTo(t *testing.T) {
	for _, tc := range []struct {
		state    ProgressState
		match    Index
		next     Index
		rejected Index
		hint     Index
		wantOK   bool
		wantNext Index
	}{
		// Replicate: a rejection at or below match is stale; any other
		// falls back to match+1.
		{StateReplicate, 5, 10, 5, 5, false, 10},
		{StateReplicate, 5, 10, 4, 4, false, 10},
		{StateReplicate, 5, 10, 9, 9, true, 6},
		{StateReplicate, 5, 10, 7, 2, true, 6},
		// Probe: only the rejection of the probe in flight (next-1) counts.
		{StateProbe, 0, 2, 0, 0, false, 2},
		{StateProbe, 5, 10, 5, 5, false, 10},
		{StateProbe, 5, 10, 8, 8, false, 10},
		// next = min(rejected, hint+1), never at or below match.
		{StateProbe, 0, 10, 9, 9, true, 9},
		{StateProbe, 0, 10, 9, 100, true, 9},
		{StateProbe, 0, 10, 9, 4, true, 5},
		{StateProbe, 0, 10, 9, 0, true, 1},
		{StateProbe, 5, 10, 9, 2, true, 6},
		{StateProbe, 0, 1, 0, 0, true, 1},
	} {
		name := fmt.Sprintf("%s match=%d next=%d rejected=%d hint=%d", tc.state, tc.match, tc.next, tc.rejected, tc.hint)
		p := progress{state: tc.state, match: tc.match, next: tc.next, probeSent: true, inflights: newInflights(4)}
		ok := p.maybeDecrTo(tc.rejected, tc.hint)
		if ok != tc.wantOK || p.next != tc.wantNext {
			t.Errorf("%s: = %t next=%d, want %t %d", name, ok, p.next, tc.wantOK, tc.wantNext)
		}
		if tc.state == StateProbe && ok && p.probeSent {
			t.Errorf("%s: probeSent not cleared", name)
		}
		if p.match != tc.match {
			t.Errorf("%s: match changed to %d", name, p.match)
		}
	}
}

func TestProgressSentEntriesAndPause(t *testing.T) {
	// Probe: one message at a time, whatever it carries.
	p := newProgress(5, 2)
	if p.isPaused() {
		t.Fatal("fresh probe is paused")
	}
	p.sentEntries(0, 0)
	if !p.isPaused() || p.next != 5 {
		t.Errorf("after a probe: paused=%t next=%d, want true 5", p.isPaused(), p.next)
	}

	// Replicate: pipelined up to the window, next advances optimistically;
	// empty messages take no slot.
	p = newProgress(5, 2)
	p.becomeReplicate()
	p.sentEntries(0, 0)
	if p.inflights.count != 0 || p.isPaused() {
		t.Errorf("an empty MsgApp took a window slot")
	}
	p.sentEntries(3, 3)
	if p.next != 4 || p.isPaused() {
		t.Errorf("after one: next=%d paused=%t, want 4 false", p.next, p.isPaused())
	}
	p.sentEntries(2, 5)
	if p.next != 6 || !p.isPaused() {
		t.Errorf("after two: next=%d paused=%t, want 6 true (window of 2 full)", p.next, p.isPaused())
	}
	p.inflights.freeLE(3)
	if p.isPaused() {
		t.Error("still paused after an acknowledgement freed a slot")
	}
}

func TestInflightsAdd(t *testing.T) {
	in := newInflights(10)
	for i := range 5 {
		in.add(Index(i))
	}
	if in.start != 0 || in.count != 5 || in.full() {
		t.Fatalf("start=%d count=%d full=%t, want 0 5 false", in.start, in.count, in.full())
	}
	for i := 5; i < 10; i++ {
		in.add(Index(i))
	}
	if !in.full() || !slices.Equal(in.buf, []Index{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("full=%t buf=%v", in.full(), in.buf)
	}
	in.add(100) // full: must not overwrite anything
	if in.count != 10 || slices.Contains(in.buf, 100) {
		t.Errorf("add on a full window changed it: count=%d buf=%v", in.count, in.buf)
	}

	// Wrap around.
	in = newInflights(10)
	in.start = 5
	for i := range 10 {
		in.add(Index(i))
	}
	if !slices.Equal(in.buf, []Index{5, 6, 7, 8, 9, 0, 1, 2, 3, 4}) {
		t.Errorf("wrapped buf = %v", in.buf)
	}
}

func TestInflightsFreeLE(t *testing.T) {
	in := newInflights(10)
	for i := range 10 {
		in.add(Index(i))
	}
	in.freeLE(4)
	if in.start != 5 || in.count != 5 {
		t.Errorf("freeLE(4): start=%d count=%d, want 5 5", in.start, in.count)
	}
	in.freeLE(4) // nothing more at or below 4
	if in.count != 5 {
		t.Errorf("freeLE(4) again: count=%d, want 5", in.count)
	}
	in.freeLE(8)
	if in.start != 9 || in.count != 1 {
		t.Errorf("freeLE(8): start=%d count=%d, want 9 1", in.start, in.count)
	}
	// Wrap around.
	for i := 10; i < 15; i++ {
		in.add(Index(i))
	}
	in.freeLE(12)
	if in.start != 3 || in.count != 2 {
		t.Errorf("freeLE(12) wrapped: start=%d count=%d, want 3 2", in.start, in.count)
	}
	in.freeLE(100)
	if in.count != 0 {
		t.Errorf("freeLE(100): count=%d, want 0", in.count)
	}
}

func TestInflightsFreeFirstAndReset(t *testing.T) {
	in := newInflights(3)
	for i := range 3 {
		in.add(Index(i + 1))
	}
	in.freeFirst()
	if in.start != 1 || in.count != 2 || in.full() {
		t.Errorf("freeFirst: start=%d count=%d", in.start, in.count)
	}
	in.add(4)
	if !in.full() || in.buf[0] != 4 {
		t.Errorf("add after freeFirst: buf=%v count=%d", in.buf, in.count)
	}
	in.reset()
	if in.count != 0 || in.full() {
		t.Errorf("reset: count=%d", in.count)
	}
	in.freeFirst() // on empty: no-op
	if in.count != 0 {
		t.Errorf("freeFirst on empty: count=%d", in.count)
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := quorum(n); got != want {
			t.Errorf("quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestCommittedIndex(t *testing.T) {
	for _, tc := range []struct {
		voters []NodeID
		match  map[NodeID]Index
		want   Index
	}{
		{nil, nil, 0},
		{[]NodeID{1}, map[NodeID]Index{1: 7}, 7},
		{[]NodeID{1, 2}, map[NodeID]Index{1: 7, 2: 5}, 5},
		{[]NodeID{1, 2, 3}, map[NodeID]Index{1: 5, 2: 3, 3: 1}, 3},
		{[]NodeID{1, 2, 3}, map[NodeID]Index{1: 5, 2: 5, 3: 1}, 5},
		{[]NodeID{1, 2, 3}, map[NodeID]Index{1: 5}, 0},
		{[]NodeID{1, 2, 3, 4}, map[NodeID]Index{1: 5, 2: 4, 3: 3, 4: 1}, 3},
		{[]NodeID{1, 2, 3, 4, 5}, map[NodeID]Index{1: 9, 2: 8, 3: 2, 4: 1}, 2},
		{[]NodeID{1, 2, 3, 4, 5}, map[NodeID]Index{1: 9, 2: 8, 3: 8, 4: 1, 5: 0}, 8},
		// Progress of a non-voter does not count.
		{[]NodeID{1, 2, 3}, map[NodeID]Index{1: 5, 9: 5, 8: 5}, 0},
	} {
		got := committedIndex(tc.voters, func(id NodeID) Index { return tc.match[id] })
		if got != tc.want {
			t.Errorf("committedIndex(%v, %v) = %d, want %d", tc.voters, tc.match, got, tc.want)
		}
	}
}

func TestTallyVotes(t *testing.T) {
	v3 := []NodeID{1, 2, 3}
	v4 := []NodeID{1, 2, 3, 4}
	for _, tc := range []struct {
		voters []NodeID
		votes  map[NodeID]bool
		want   voteResult
	}{
		{[]NodeID{1}, map[NodeID]bool{1: true}, voteWon},
		{[]NodeID{1}, map[NodeID]bool{1: false}, voteLost},
		{[]NodeID{1}, nil, votePending},
		{v3, map[NodeID]bool{1: true}, votePending},
		{v3, map[NodeID]bool{1: true, 2: true}, voteWon},
		{v3, map[NodeID]bool{1: true, 2: false}, votePending},
		{v3, map[NodeID]bool{1: true, 2: false, 3: false}, voteLost},
		{v3, map[NodeID]bool{1: true, 2: false, 3: true}, voteWon},
		{v4, map[NodeID]bool{1: true, 2: true}, votePending},
		{v4, map[NodeID]bool{1: true, 2: true, 3: false}, votePending},
		{v4, map[NodeID]bool{1: true, 2: true, 3: false, 4: false}, voteLost}, // split vote
		{v4, map[NodeID]bool{1: true, 2: true, 3: true}, voteWon},
		// Votes from non-voters are ignored.
		{v3, map[NodeID]bool{1: true, 7: true, 8: true}, votePending},
		{v3, map[NodeID]bool{1: true, 7: false, 8: false}, votePending},
	} {
		if got := tallyVotes(tc.voters, tc.votes); got != tc.want {
			t.Errorf("tallyVotes(%v, %v) = %d, want %d", tc.voters, tc.votes, got, tc.want)
		}
	}
}

func TestProgressStateString(t *testing.T) {
	for s, want := range map[ProgressState]string{StateProbe: "Probe", StateReplicate: "Replicate",
		StateSnapshot: "Snapshot", 9: "ProgressState(9)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

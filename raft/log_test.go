package raft

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

const noLimit = ^uint64(0)

// entsAt returns entries at indexes first, first+1, ... with the given
// terms.
func entsAt(first Index, terms ...Term) []Entry {
	ents := make([]Entry, len(terms))
	for i, t := range terms {
		ents[i] = Entry{Index: first + Index(i), Term: t}
	}
	return ents
}

// newTestLog returns a raftLog over a MemoryStorage holding snap (if not
// empty) and stable, with unstable appended on top (not yet persisted).
func newTestLog(t *testing.T, snap SnapshotMeta, stable, unstable []Entry) (*raftLog, *MemoryStorage) {
	t.Helper()
	s := NewMemoryStorage()
	if !snap.IsEmpty() {
		if err := s.ApplySnapshot(snap); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(stable); err != nil {
		t.Fatal(err)
	}
	l, err := newLog(s, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(unstable) > 0 {
		l.append(unstable...)
	}
	return l, s
}

// sameEntries compares entries by index and term.
func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return x.Index == y.Index && x.Term == y.Term })
}

// termsOf returns "index/term" of every entry the log holds, stable or not.
func termsOf(t *testing.T, l *raftLog) []string {
	t.Helper()
	var out []string
	for i := l.firstIndex(); i <= l.lastIndex(); i++ {
		term, err := l.term(i)
		if err != nil {
			t.Fatalf("term(%d): %v", i, err)
		}
		out = append(out, fmt.Sprintf("%d/%d", i, term))
	}
	return out
}

func TestLogFindConflict(t *testing.T) {
	for _, tc := range []struct {
		ents []Entry
		want Index
	}{
		// No conflict, nothing new.
		{nil, 0},
		{entsAt(1, 1, 2, 3), 0},
		{entsAt(2, 2, 3), 0},
		{entsAt(3, 3), 0},
		// No conflict, new entries: the first new one.
		{entsAt(1, 1, 2, 3, 4, 4), 4},
		{entsAt(2, 2, 3, 4, 4), 4},
		{entsAt(3, 3, 4, 4), 4},
		{entsAt(4, 4, 4), 4},
		// Conflicts: the first entry whose term differs.
		{entsAt(1, 4, 4), 1},
		{entsAt(2, 1, 4, 4), 2},
		{entsAt(3, 1, 2, 4, 4), 3},
	} {
		for _, split := range []string{"stable", "unstable"} {
			t.Run(fmt.Sprintf("%v/%s", tc.ents, split), func(t *testing.T) {
				var l *raftLog
				if split == "stable" {
					l, _ = newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 3), nil)
				} else {
					l, _ = newTestLog(t, SnapshotMeta{}, nil, entsAt(1, 1, 2, 3))
				}
				if got := l.findConflict(tc.ents); got != tc.want {
					t.Errorf("findConflict = %d, want %d", got, tc.want)
				}
			})
		}
	}
}

func TestLogFindConflictByTerm(t *testing.T) {
	type tcase struct {
		index    Index
		term     Term
		want     Index
		wantTerm Term
	}
	for _, tc := range []struct {
		name  string
		snap  SnapshotMeta
		ents  []Entry
		cases []tcase
	}{
		{
			name: "from index 1",
			ents: entsAt(1, 2, 2, 5, 5, 5),
			cases: []tcase{
				{100, 2, 100, 0}, // beyond the log: unknown, keep the index
				{5, 6, 5, 5},
				{5, 5, 5, 5},
				{5, 4, 2, 2}, // skip the whole term-5 run
				{5, 2, 2, 2},
				{5, 1, 0, 0}, // nothing at or below term 1
				{1, 2, 1, 2},
				{1, 1, 0, 0},
				{0, 0, 0, 0},
			},
		},
		{
			name: "after a snapshot at 10/3",
			snap: SnapshotMeta{Index: 10, Term: 3},
			ents: entsAt(11, 3, 3, 4, 4, 4),
			cases: []tcase{
				{30, 3, 30, 0},
				{14, 9, 14, 4},
				{14, 4, 14, 4},
				{14, 3, 12, 3},
				{14, 2, 9, 0}, // runs into the compacted prefix: stop there
				{11, 5, 11, 3},
				{10, 5, 10, 3}, // the snapshot's own index has a known term
				{10, 3, 10, 3},
				{10, 2, 9, 0},
				{9, 2, 9, 0},
				{4, 2, 4, 0},
				{0, 0, 0, 0},
			},
		},
	} {
		for _, split := range []string{"stable", "unstable"} {
			stable, unstable := tc.ents, []Entry(nil)
			if split == "unstable" {
				stable, unstable = nil, tc.ents
			}
			l, _ := newTestLog(t, tc.snap, stable, unstable)
			for _, c := range tc.cases {
				gotIndex, gotTerm := l.findConflictByTerm(c.index, c.term)
				if gotIndex != c.want || gotTerm != c.wantTerm {
					t.Errorf("%s/%s: findConflictByTerm(%d, %d) = %d/%d, want %d/%d",
						tc.name, split, c.index, c.term, gotIndex, gotTerm, c.want, c.wantTerm)
				}
			}
		}
	}
}

// TestLogMaybeAppend is the receiver's side of AppendEntries (§5.3): the
// consistency check on (index, logTerm), appending new entries, truncating
// a conflicting suffix, and committing min(leaderCommit, last new index).
func TestLogMaybeAppend(t *testing.T) {
	prev := entsAt(1, 1, 2, 3)
	const commit = 1
	for _, tc := range []struct {
		name         string
		index        Index
		logTerm      Term
		committed    Index
		ents         []Entry
		wantLastNew  Index
		wantConflict Index
		wantOK       bool
		wantCommit   Index
		wantLog      []string
	}{
		{name: "prev term mismatch", index: 3, logTerm: 2, committed: 3, ents: entsAt(4, 4),
			wantCommit: commit, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "prev beyond last", index: 4, logTerm: 4, committed: 3, ents: entsAt(5, 4),
			wantCommit: commit, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "heartbeat-like, commit capped by last new", index: 3, logTerm: 3, committed: 4,
			wantLastNew: 3, wantOK: true, wantCommit: 3, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "commit follows leader", index: 3, logTerm: 3, committed: 2,
			wantLastNew: 3, wantOK: true, wantCommit: 2, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "commit never decreases", index: 3, logTerm: 3, committed: 0,
			wantLastNew: 3, wantOK: true, wantCommit: 1, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "old prefix, commit capped at what it covers", index: 0, logTerm: 0, committed: 3,
			ents: entsAt(1, 1), wantLastNew: 1, wantOK: true, wantCommit: 1,
			wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "append one", index: 3, logTerm: 3, committed: 3, ents: entsAt(4, 4),
			wantLastNew: 4, wantConflict: 4, wantOK: true, wantCommit: 3,
			wantLog: []string{"1/1", "2/2", "3/3", "4/4"}},
		{name: "append two, commit all", index: 3, logTerm: 3, committed: 5, ents: entsAt(4, 4, 4),
			wantLastNew: 5, wantConflict: 4, wantOK: true, wantCommit: 5,
			wantLog: []string{"1/1", "2/2", "3/3", "4/4", "5/4"}},
		{name: "already held: no append", index: 1, logTerm: 1, committed: 3, ents: entsAt(2, 2),
			wantLastNew: 2, wantOK: true, wantCommit: 2, wantLog: []string{"1/1", "2/2", "3/3"}},
		{name: "truncate conflicting last entry", index: 2, logTerm: 2, committed: 3, ents: entsAt(3, 4),
			wantLastNew: 3, wantConflict: 3, wantOK: true, wantCommit: 3,
			wantLog: []string{"1/1", "2/2", "3/4"}},
		{name: "truncate conflicting suffix", index: 1, logTerm: 1, committed: 0, ents: entsAt(2, 4, 4, 4),
			wantLastNew: 4, wantConflict: 2, wantOK: true, wantCommit: 1,
			wantLog: []string{"1/1", "2/4", "3/4", "4/4"}},
		{name: "shorter message matching a prefix never truncates", index: 1, logTerm: 1, committed: 1,
			ents: entsAt(2, 2), wantLastNew: 2, wantOK: true, wantCommit: 1,
			wantLog: []string{"1/1", "2/2", "3/3"}},
	} {
		for _, split := range []string{"stable", "unstable"} {
			t.Run(tc.name+"/"+split, func(t *testing.T) {
				var l *raftLog
				if split == "stable" {
					l, _ = newTestLog(t, SnapshotMeta{}, prev, nil)
				} else {
					l, _ = newTestLog(t, SnapshotMeta{}, prev[:1], prev[1:])
				}
				l.committed = commit
				lastNew, conflict, ok := l.maybeAppend(tc.index, tc.logTerm, tc.committed, tc.ents)
				if lastNew != tc.wantLastNew || conflict != tc.wantConflict || ok != tc.wantOK {
					t.Errorf("maybeAppend = (%d, %d, %t), want (%d, %d, %t)",
						lastNew, conflict, ok, tc.wantLastNew, tc.wantConflict, tc.wantOK)
				}
				if l.committed != tc.wantCommit {
					t.Errorf("committed = %d, want %d", l.committed, tc.wantCommit)
				}
				if got := termsOf(t, l); !slices.Equal(got, tc.wantLog) {
					t.Errorf("log = %v, want %v", got, tc.wantLog)
				}
			})
		}
	}
}

// TestLogMaybeAppendRefusesToChangeCommitted: a message that would replace a
// committed entry is refused and the log is left alone (Leader
// Completeness, §5.4, says no real leader sends one).
func TestLogMaybeAppendRefusesToChangeCommitted(t *testing.T) {
	for _, committed := range []Index{2, 3} {
		l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 3), nil)
		l.committed = committed
		before := termsOf(t, l)
		if _, _, ok := l.maybeAppend(1, 1, 3, entsAt(2, 4, 4)); ok {
			t.Errorf("committed=%d: maybeAppend replacing index 2 succeeded", committed)
		}
		if got := termsOf(t, l); !slices.Equal(got, before) {
			t.Errorf("committed=%d: log changed to %v", committed, got)
		}
		if l.committed != committed {
			t.Errorf("commit moved to %d", l.committed)
		}
	}
}

// TestLogTruncateStableSuffixThenPersist: replacing entries that are
// already in storage keeps the log consistent before and after the driver
// persists the replacement.
func TestLogTruncateStableSuffixThenPersist(t *testing.T) {
	l, s := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 2, 2), nil)
	if _, _, ok := l.maybeAppend(2, 2, 0, entsAt(3, 3)); !ok {
		t.Fatal("maybeAppend failed")
	}
	want := []string{"1/1", "2/2", "3/3"}
	if got := termsOf(t, l); !slices.Equal(got, want) {
		t.Fatalf("before persisting: log = %v, want %v", got, want)
	}
	if l.stableLastIndex() != 2 {
		t.Errorf("stableLastIndex = %d, want 2 (index 3 is being replaced)", l.stableLastIndex())
	}
	ents, err := l.slice(1, 4, noLimit)
	if err != nil || len(ents) != 3 || ents[2].Term != 3 {
		t.Fatalf("slice(1, 4) = %v, %v", ents, err)
	}
	// The driver persists the Ready's entries, then advances.
	if err := s.Append(l.unstable.entries); err != nil {
		t.Fatal(err)
	}
	l.stableTo(3, 3)
	if got := termsOf(t, l); !slices.Equal(got, want) {
		t.Fatalf("after persisting: log = %v, want %v", got, want)
	}
	if len(l.unstable.entries) != 0 || l.unstable.offset != 4 {
		t.Errorf("unstable = %d entries from %d, want none from 4", len(l.unstable.entries), l.unstable.offset)
	}
	if last, _ := s.LastIndex(); last != 3 {
		t.Errorf("storage last index = %d, want 3", last)
	}
}

func TestLogTermAcrossBoundaries(t *testing.T) {
	// snapshot 3/1, storage 4..6 (terms 1, 2, 2), unstable 7..9 (terms 3, 3, 4).
	l, _ := newTestLog(t, SnapshotMeta{Index: 3, Term: 1}, entsAt(4, 1, 2, 2), entsAt(7, 3, 3, 4))
	for _, tc := range []struct {
		i       Index
		want    Term
		wantErr error
	}{
		{0, 0, nil}, // the empty prefix
		{2, 0, ErrCompacted},
		{3, 1, nil}, // the snapshot's index
		{4, 1, nil},
		{6, 2, nil},
		{7, 3, nil},
		{9, 4, nil},
		{10, 0, ErrUnavailable},
	} {
		got, err := l.term(tc.i)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("term(%d) = %d, %v; want %d, %v", tc.i, got, err, tc.want, tc.wantErr)
		}
	}
	if l.firstIndex() != 4 || l.lastIndex() != 9 || l.lastTerm() != 4 || l.stableLastIndex() != 6 {
		t.Errorf("first=%d last=%d lastTerm=%d stableLast=%d, want 4 9 4 6",
			l.firstIndex(), l.lastIndex(), l.lastTerm(), l.stableLastIndex())
	}
}

func TestLogTermWithUnstableSnapshot(t *testing.T) {
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 1), nil)
	l.restore(SnapshotMeta{Index: 10, Term: 5})
	if got, err := l.term(10); got != 5 || err != nil {
		t.Errorf("term(10) = %d, %v; want 5", got, err)
	}
	if _, err := l.term(9); !errors.Is(err, ErrCompacted) {
		t.Errorf("term(9) err = %v, want ErrCompacted", err)
	}
	if _, err := l.term(11); !errors.Is(err, ErrUnavailable) {
		t.Errorf("term(11) err = %v, want ErrUnavailable", err)
	}
	if l.firstIndex() != 11 || l.lastIndex() != 10 || l.committed != 10 {
		t.Errorf("first=%d last=%d committed=%d, want 11 10 10", l.firstIndex(), l.lastIndex(), l.committed)
	}
	if l.hasNextCommittedEnts() {
		t.Error("entries behind the snapshot are offered for applying")
	}
	l.append(entsAt(11, 5)...)
	if got, err := l.term(11); got != 5 || err != nil {
		t.Errorf("after append: term(11) = %d, %v", got, err)
	}
}

func TestLogSliceAcrossBoundaries(t *testing.T) {
	// Each entry's size is 24 + len(data); every entry here has 1 byte of
	// data, so size 25.
	withData := func(ents []Entry) []Entry {
		for i := range ents {
			ents[i].Data = []byte{byte('a' + i)}
		}
		return ents
	}
	const sz = 25
	l, _ := newTestLog(t, SnapshotMeta{Index: 3, Term: 1}, withData(entsAt(4, 1, 2, 2)), withData(entsAt(7, 3, 3, 4)))
	for _, tc := range []struct {
		lo, hi  Index
		maxSize uint64
		want    []Index
		wantErr error
	}{
		{4, 4, noLimit, nil, nil},
		{4, 10, noLimit, []Index{4, 5, 6, 7, 8, 9}, nil},
		{5, 8, noLimit, []Index{5, 6, 7}, nil},  // across the boundary
		{4, 7, noLimit, []Index{4, 5, 6}, nil},  // storage only
		{7, 10, noLimit, []Index{7, 8, 9}, nil}, // unstable only
		{3, 5, noLimit, nil, ErrCompacted},
		{8, 11, noLimit, nil, ErrUnavailable},
		// Size limits, always at least one entry.
		{4, 10, 0, []Index{4}, nil},
		{7, 10, 0, []Index{7}, nil},
		{4, 10, 2 * sz, []Index{4, 5}, nil},
		{4, 10, 2*sz + sz/2, []Index{4, 5}, nil},
		{4, 10, 4 * sz, []Index{4, 5, 6, 7}, nil}, // limit reached in unstable part
		{5, 10, 3*sz - 1, []Index{5, 6}, nil},
		{5, 10, 3 * sz, []Index{5, 6, 7}, nil},
	} {
		got, err := l.slice(tc.lo, tc.hi, tc.maxSize)
		var idx []Index
		for _, e := range got {
			idx = append(idx, e.Index)
		}
		if !slices.Equal(idx, tc.want) || !errors.Is(err, tc.wantErr) {
			t.Errorf("slice(%d, %d, %d) = %v, %v; want %v, %v", tc.lo, tc.hi, tc.maxSize, idx, err, tc.want, tc.wantErr)
		}
	}
	// Appending to a slice the log handed out never writes into the log.
	for _, r := range [][2]Index{{7, 9}, {5, 8}, {4, 6}} {
		got, err := l.slice(r[0], r[1], noLimit)
		if err != nil {
			t.Fatal(err)
		}
		_ = append(got, Entry{Index: 99, Term: 99})
		if tm, _ := l.term(r[1]); tm == 99 {
			t.Errorf("appending to slice(%d, %d) overwrote entry %d", r[0], r[1], r[1])
		}
	}
}

func TestUnstableStableTo(t *testing.T) {
	for _, tc := range []struct {
		name       string
		offset     Index
		ents       []Entry
		snap       *SnapshotMeta
		index      Index
		term       Term
		wantOffset Index
		wantLen    int
	}{
		{"empty", 0, nil, nil, 5, 1, 0, 0},
		{"one, stable", 5, entsAt(5, 1), nil, 5, 1, 6, 0},
		{"prefix stable", 5, entsAt(5, 1, 1), nil, 5, 1, 6, 1},
		{"replaced entry: term differs", 6, entsAt(6, 2), nil, 6, 1, 6, 1},
		{"below offset", 5, entsAt(5, 1), nil, 4, 1, 5, 1},
		{"below offset, other term", 5, entsAt(5, 1), nil, 4, 2, 5, 1},
		{"beyond last", 5, entsAt(5, 1), nil, 6, 1, 5, 1},
		{"with snapshot", 5, entsAt(5, 1), &SnapshotMeta{Index: 4, Term: 1}, 5, 1, 6, 0},
		{"with snapshot, its own index", 5, entsAt(5, 1), &SnapshotMeta{Index: 4, Term: 1}, 4, 1, 5, 1},
	} {
		u := unstable{offset: tc.offset, entries: tc.ents, snapshot: tc.snap}
		u.stableTo(tc.index, tc.term)
		if u.offset != tc.wantOffset || len(u.entries) != tc.wantLen {
			t.Errorf("%s: offset=%d len=%d, want %d %d", tc.name, u.offset, len(u.entries), tc.wantOffset, tc.wantLen)
		}
	}
}

// TestLogStableToAfterReplacement: a Ready carried entries 4/1 and 5/1; a
// new leader replaced them with 4/2 before the Ready was acknowledged. The
// stale acknowledgement must not mark the replacement durable.
func TestLogStableToAfterReplacement(t *testing.T) {
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 1, 1), entsAt(4, 1, 1))
	if _, _, ok := l.maybeAppend(3, 1, 0, entsAt(4, 2)); !ok {
		t.Fatal("maybeAppend failed")
	}
	l.stableTo(5, 1) // the stale Ready's last entry
	if l.unstable.offset != 4 || len(l.unstable.entries) != 1 || l.unstable.entries[0].Term != 2 {
		t.Errorf("unstable = %v from %d, want [4/2] from 4", l.unstable.entries, l.unstable.offset)
	}
	if l.stableLastIndex() != 3 {
		t.Errorf("stableLastIndex = %d, want 3", l.stableLastIndex())
	}
	l.stableTo(4, 2)
	if l.unstable.offset != 5 || len(l.unstable.entries) != 0 {
		t.Errorf("after the real ack: unstable = %v from %d", l.unstable.entries, l.unstable.offset)
	}
}

func TestUnstableTruncateAndAppend(t *testing.T) {
	for _, tc := range []struct {
		name       string
		offset     Index
		ents, add  []Entry
		wantOffset Index
		want       []Entry
	}{
		{"append", 5, entsAt(5, 1), entsAt(6, 1, 1), 5, entsAt(5, 1, 1, 1)},
		{"replace all unstable", 5, entsAt(5, 1), entsAt(5, 2, 2), 5, entsAt(5, 2, 2)},
		{"replace stable too", 5, entsAt(5, 1), entsAt(4, 2, 2, 2), 4, entsAt(4, 2, 2, 2)},
		{"truncate and append", 5, entsAt(5, 1, 1, 1), entsAt(6, 2), 5, entsAt(5, 1, 2)},
		{"truncate and append more", 5, entsAt(5, 1, 1, 1), entsAt(7, 2, 2), 5, entsAt(5, 1, 1, 2, 2)},
	} {
		u := unstable{offset: tc.offset, entries: slices.Clone(tc.ents)}
		old := u.entries
		oldCopy := slices.Clone(old)
		u.truncateAndAppend(tc.add)
		if u.offset != tc.wantOffset || !sameEntries(u.entries, tc.want) {
			t.Errorf("%s: got %v from %d, want %v from %d", tc.name, u.entries, u.offset, tc.want, tc.wantOffset)
		}
		// A Ready may still hold the old slice: truncation must not write
		// into it.
		if !sameEntries(old, oldCopy) {
			t.Errorf("%s: the old entries slice was overwritten: %v", tc.name, old)
		}
	}
}

func TestLogCommitTo(t *testing.T) {
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 3), nil)
	l.committed = 2
	l.commitTo(1) // never decreases
	if l.committed != 2 {
		t.Errorf("committed = %d after commitTo(1), want 2", l.committed)
	}
	l.commitTo(4) // beyond the log: ignored
	if l.committed != 2 {
		t.Errorf("committed = %d after commitTo(4), want 2", l.committed)
	}
	l.commitTo(3)
	if l.committed != 3 {
		t.Errorf("committed = %d after commitTo(3), want 3", l.committed)
	}
}

// TestLogMaybeCommitOnlyCurrentTerm is the Figure 8 rule at the log level:
// an index is committed by counting replicas only if its entry is of the
// leader's term (§5.4.2).
func TestLogMaybeCommitOnlyCurrentTerm(t *testing.T) {
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 2, 4), nil)
	l.committed = 1
	if l.maybeCommit(3, 4) {
		t.Errorf("committed index 3 (term 2) in term 4")
	}
	if l.committed != 1 {
		t.Errorf("committed = %d, want 1", l.committed)
	}
	if !l.maybeCommit(4, 4) || l.committed != 4 {
		t.Errorf("did not commit index 4 (term 4) in term 4; committed = %d", l.committed)
	}
	if l.maybeCommit(3, 2) {
		t.Error("maybeCommit moved the commit index backwards")
	}
}

func TestLogNextCommittedEnts(t *testing.T) {
	withData := entsAt(1, 1, 1, 1, 1)
	for i := range withData {
		withData[i].Data = make([]byte, 6) // size 30
	}
	for _, tc := range []struct {
		name      string
		applied   Index
		committed Index
		maxSize   uint64
		want      []Index
	}{
		{"nothing committed beyond applied", 3, 3, noLimit, nil},
		{"all", 0, 4, noLimit, []Index{1, 2, 3, 4}},
		{"from applied", 2, 4, noLimit, []Index{3, 4}},
		{"size limited", 0, 4, 60, []Index{1, 2}},
		{"at least one", 0, 4, 1, []Index{1}},
	} {
		s := NewMemoryStorage()
		if err := s.Append(withData); err != nil {
			t.Fatal(err)
		}
		l, err := newLog(s, tc.maxSize)
		if err != nil {
			t.Fatal(err)
		}
		l.committed, l.applied = tc.committed, tc.applied
		var got []Index
		for _, e := range l.nextCommittedEnts() {
			got = append(got, e.Index)
		}
		if !slices.Equal(got, tc.want) || l.hasNextCommittedEnts() != (len(tc.want) > 0) {
			t.Errorf("%s: nextCommittedEnts = %v (has=%t), want %v", tc.name, got, l.hasNextCommittedEnts(), tc.want)
		}
	}
}

func TestLogAppliedTo(t *testing.T) {
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 1, 1), nil)
	l.committed = 2
	l.appliedTo(3) // beyond committed: ignored
	if l.applied != 0 {
		t.Errorf("applied = %d, want 0", l.applied)
	}
	l.appliedTo(2)
	l.appliedTo(1) // never decreases
	if l.applied != 2 {
		t.Errorf("applied = %d, want 2", l.applied)
	}
}

func TestLogIsUpToDate(t *testing.T) {
	// Last entry 3/2 (index 3, term 2).
	l, _ := newTestLog(t, SnapshotMeta{}, entsAt(1, 1, 2, 2), nil)
	for _, tc := range []struct {
		last Index
		term Term
		want bool
	}{
		{2, 3, true}, // higher last term wins whatever the length
		{3, 3, true},
		{4, 3, true},
		{2, 2, false}, // same term, shorter
		{3, 2, true},  // same term, same length
		{4, 2, true},  // same term, longer
		{5, 1, false}, // lower last term loses whatever the length
	} {
		if got := l.isUpToDate(tc.last, tc.term); got != tc.want {
			t.Errorf("isUpToDate(%d, %d) = %t, want %t", tc.last, tc.term, got, tc.want)
		}
	}
}

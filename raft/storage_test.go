package raft

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// newStorage returns a MemoryStorage whose log is a snapshot at ents[0]
// (index and term) followed by ents[1:].
func newStorage(t *testing.T, ents []Entry) *MemoryStorage {
	t.Helper()
	s := NewMemoryStorage()
	if err := s.ApplySnapshot(SnapshotMeta{Index: ents[0].Index, Term: ents[0].Term}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ents[1:]); err != nil {
		t.Fatal(err)
	}
	return s
}

// storedTerms returns "index/term" for every entry of s (dummy included).
func storedTerms(s *MemoryStorage) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.mu.ents {
		out = append(out, fmt.Sprintf("%d/%d", e.Index, e.Term))
	}
	return out
}

func TestMemoryStorageTerm(t *testing.T) {
	s := newStorage(t, entsAt(3, 3, 4, 5))
	for _, tc := range []struct {
		i       Index
		want    Term
		wantErr error
	}{
		{2, 0, ErrCompacted},
		{3, 3, nil},
		{4, 4, nil},
		{5, 5, nil},
		{6, 0, ErrUnavailable},
	} {
		got, err := s.Term(tc.i)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("Term(%d) = %d, %v; want %d, %v", tc.i, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestMemoryStorageEntries(t *testing.T) {
	ents := entsAt(3, 3, 4, 5, 6)
	for i := range ents {
		ents[i].Data = []byte("xy") // size 26
	}
	const sz = 26
	s := newStorage(t, ents)
	for _, tc := range []struct {
		lo, hi  Index
		maxSize uint64
		want    []Index
		wantErr error
	}{
		{2, 6, noLimit, nil, ErrCompacted},
		{3, 4, noLimit, nil, ErrCompacted}, // the snapshot's index holds no entry
		{4, 5, noLimit, []Index{4}, nil},
		{4, 7, noLimit, []Index{4, 5, 6}, nil},
		{4, 8, noLimit, nil, ErrUnavailable},
		{4, 7, 0, []Index{4}, nil},
		{4, 7, 2 * sz, []Index{4, 5}, nil},
		{4, 7, 2*sz + sz/2, []Index{4, 5}, nil},
		{4, 7, 3*sz - 1, []Index{4, 5}, nil},
		{4, 7, 3 * sz, []Index{4, 5, 6}, nil},
	} {
		got, err := s.Entries(tc.lo, tc.hi, tc.maxSize)
		var idx []Index
		for _, e := range got {
			idx = append(idx, e.Index)
		}
		if !slices.Equal(idx, tc.want) || !errors.Is(err, tc.wantErr) {
			t.Errorf("Entries(%d, %d, %d) = %v, %v; want %v, %v", tc.lo, tc.hi, tc.maxSize, idx, err, tc.want, tc.wantErr)
		}
	}
	// What Entries returns is the caller's: later appends don't change it.
	got, _ := s.Entries(4, 6, noLimit)
	if err := s.Append(entsAt(5, 9, 9)); err != nil {
		t.Fatal(err)
	}
	if got[1].Term != 5 {
		t.Errorf("a returned entry changed under the caller: %v", got)
	}
}

func TestMemoryStorageFirstLastIndex(t *testing.T) {
	s := newStorage(t, entsAt(3, 3, 4, 5))
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 4 || last != 5 {
		t.Errorf("first=%d last=%d, want 4 5", first, last)
	}
	if _, err := s.CreateSnapshot(4, ConfState{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(4); err != nil {
		t.Fatal(err)
	}
	first, _ = s.FirstIndex()
	if first != 5 {
		t.Errorf("after Compact(4): first=%d, want 5", first)
	}
	// Fresh storage: the empty log, FirstIndex = LastIndex+1.
	s = NewMemoryStorage()
	first, _ = s.FirstIndex()
	last, _ = s.LastIndex()
	if first != 1 || last != 0 {
		t.Errorf("fresh: first=%d last=%d, want 1 0", first, last)
	}
}

func TestMemoryStorageCompact(t *testing.T) {
	for _, tc := range []struct {
		i         Index
		wantErr   bool
		wantFirst Index
		wantTerm  Term // of the new dummy
		wantLen   int  // stored entries, the snapshot's dummy included
	}{
		{2, true, 4, 3, 4}, // already compacted
		{3, true, 4, 3, 4}, // the snapshot's own index
		{4, false, 5, 4, 3},
		{5, false, 6, 5, 2},
		{6, true, 4, 3, 4}, // beyond the snapshot
	} {
		s := newStorage(t, entsAt(3, 3, 4, 5, 6))
		if _, err := s.CreateSnapshot(5, ConfState{}); err != nil {
			t.Fatal(err)
		}
		err := s.Compact(tc.i)
		if (err != nil) != tc.wantErr {
			t.Errorf("Compact(%d) error = %v, want error %t", tc.i, err, tc.wantErr)
		}
		if tc.i <= 3 && !errors.Is(err, ErrCompacted) {
			t.Errorf("Compact(%d) error = %v, want ErrCompacted", tc.i, err)
		}
		first, _ := s.FirstIndex()
		dummyTerm, _ := s.Term(first - 1)
		if first != tc.wantFirst || dummyTerm != tc.wantTerm || len(storedTerms(s)) != tc.wantLen {
			t.Errorf("Compact(%d): first=%d term(first-1)=%d len=%d; want %d %d %d",
				tc.i, first, dummyTerm, len(storedTerms(s)), tc.wantFirst, tc.wantTerm, tc.wantLen)
		}
	}
}

func TestMemoryStorageCreateSnapshot(t *testing.T) {
	cs := NewConfState(1, 2, 3)
	for _, tc := range []struct {
		i       Index
		want    SnapshotMeta
		wantErr error
	}{
		{4, SnapshotMeta{Index: 4, Term: 4, ConfState: cs}, nil},
		{5, SnapshotMeta{Index: 5, Term: 5, ConfState: cs}, nil},
		{3, SnapshotMeta{}, ErrSnapOutOfDate}, // not newer than the stored one
		{2, SnapshotMeta{}, ErrSnapOutOfDate},
		{6, SnapshotMeta{}, ErrUnavailable}, // beyond the log
	} {
		s := newStorage(t, entsAt(3, 3, 4, 5))
		got, err := s.CreateSnapshot(tc.i, cs)
		if !errors.Is(err, tc.wantErr) || got.Index != tc.want.Index || got.Term != tc.want.Term || !got.ConfState.Equal(tc.want.ConfState) {
			t.Errorf("CreateSnapshot(%d) = %+v, %v; want %+v, %v", tc.i, got, err, tc.want, tc.wantErr)
		}
		if err == nil {
			if snap, _ := s.Snapshot(); snap.Index != tc.i {
				t.Errorf("Snapshot() after CreateSnapshot(%d) = %+v", tc.i, snap)
			}
			// CreateSnapshot does not compact.
			if first, _ := s.FirstIndex(); first != 4 {
				t.Errorf("CreateSnapshot compacted: first=%d", first)
			}
		}
	}
	// Creating the same snapshot twice is refused.
	s := newStorage(t, entsAt(3, 3, 4, 5))
	if _, err := s.CreateSnapshot(4, cs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(4, cs); !errors.Is(err, ErrSnapOutOfDate) {
		t.Errorf("second CreateSnapshot(4) = %v, want ErrSnapOutOfDate", err)
	}
}

func TestMemoryStorageAppend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ents    []Entry
		wantErr bool
		want    []string
	}{
		{"all compacted: skipped", entsAt(1, 1, 2), false, []string{"3/3", "4/4", "5/5"}},
		{"identical", entsAt(3, 3, 4, 5), false, []string{"3/3", "4/4", "5/5"}},
		{"overwrite suffix", entsAt(3, 3, 6, 6), false, []string{"3/3", "4/6", "5/6"}},
		{"extend", entsAt(3, 3, 4, 5, 5), false, []string{"3/3", "4/4", "5/5", "6/5"}},
		{"truncate incoming compacted part", entsAt(2, 3, 3, 5), false, []string{"3/3", "4/5"}},
		{"truncate existing", entsAt(4, 5), false, []string{"3/3", "4/5"}},
		{"append at end", entsAt(6, 5), false, []string{"3/3", "4/4", "5/5", "6/5"}},
		{"gap", entsAt(7, 5), true, []string{"3/3", "4/4", "5/5"}},
		{"empty", nil, false, []string{"3/3", "4/4", "5/5"}},
	} {
		s := newStorage(t, entsAt(3, 3, 4, 5))
		err := s.Append(tc.ents)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: Append error = %v, want error %t", tc.name, err, tc.wantErr)
		}
		if got := storedTerms(s); !slices.Equal(got, tc.want) {
			t.Errorf("%s: stored %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMemoryStorageApplySnapshot(t *testing.T) {
	s := NewMemoryStorage()
	cs := NewConfState(1, 2)
	if err := s.ApplySnapshot(SnapshotMeta{Index: 4, Term: 4, ConfState: cs}); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 5 {
		t.Errorf("first = %d, want 5", first)
	}
	if last, _ := s.LastIndex(); last != 4 {
		t.Errorf("last = %d, want 4", last)
	}
	if term, _ := s.Term(4); term != 4 {
		t.Errorf("Term(4) = %d, want 4", term)
	}
	if _, got, _ := s.InitialState(); !got.Equal(cs) {
		t.Errorf("conf = %v, want %v", got, cs)
	}
	for _, old := range []SnapshotMeta{{Index: 3, Term: 3}, {Index: 4, Term: 4}} {
		if err := s.ApplySnapshot(old); !errors.Is(err, ErrSnapOutOfDate) {
			t.Errorf("ApplySnapshot(%+v) = %v, want ErrSnapOutOfDate", old, err)
		}
	}
	// A newer snapshot replaces the whole log, entries beyond it included.
	if err := s.Append(entsAt(5, 4, 4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplySnapshot(SnapshotMeta{Index: 6, Term: 5, ConfState: cs}); err != nil {
		t.Fatal(err)
	}
	if got := storedTerms(s); !slices.Equal(got, []string{"6/5"}) {
		t.Errorf("after a newer snapshot: %v", got)
	}
}

func TestMemoryStorageHardState(t *testing.T) {
	s := NewMemoryStorage()
	if hs, _, err := s.InitialState(); !hs.IsEmpty() || err != nil {
		t.Errorf("fresh InitialState = %+v, %v", hs, err)
	}
	want := HardState{Term: 3, Vote: 2, Commit: 1}
	s.SetHardState(want)
	if hs, _, _ := s.InitialState(); hs != want {
		t.Errorf("InitialState = %+v, want %+v", hs, want)
	}
}

// TestMemoryStorageConfTracking: InitialState reports the configuration at
// the end of the stored log, following appends, truncations and snapshots.
func TestMemoryStorageConfTracking(t *testing.T) {
	s := NewMemoryStorage()
	if err := Bootstrap(s, 3, 1, 2); err != nil {
		t.Fatal(err)
	}
	conf := func() ConfState { _, cs, _ := s.InitialState(); return cs }
	if hs, cs, _ := s.InitialState(); !cs.Equal(NewConfState(1, 2, 3)) || hs != (HardState{Term: 1, Commit: 1}) {
		t.Fatalf("after Bootstrap: %+v %v", hs, cs)
	}
	cc := Entry{Index: 3, Term: 2, Type: EntryConfChange, Data: NewConfState(1, 2, 3, 4).Marshal()}
	if err := s.Append([]Entry{{Index: 2, Term: 2, Type: EntryNoop}, cc}); err != nil {
		t.Fatal(err)
	}
	if !conf().Equal(NewConfState(1, 2, 3, 4)) {
		t.Errorf("after a conf change entry: %v", conf())
	}
	// Truncating the conf change away reverts to the earlier one.
	if err := s.Append(entsAt(3, 3)); err != nil {
		t.Fatal(err)
	}
	if !conf().Equal(NewConfState(1, 2, 3)) {
		t.Errorf("after truncating it: %v", conf())
	}
	// A malformed configuration entry is ignored.
	if err := s.Append([]Entry{{Index: 4, Term: 3, Type: EntryConfChange, Data: []byte{9}}}); err != nil {
		t.Fatal(err)
	}
	if !conf().Equal(NewConfState(1, 2, 3)) {
		t.Errorf("after a malformed entry: %v", conf())
	}
	if err := s.ApplySnapshot(SnapshotMeta{Index: 10, Term: 4, ConfState: NewConfState(5)}); err != nil {
		t.Fatal(err)
	}
	if !conf().Equal(NewConfState(5)) {
		t.Errorf("after a snapshot: %v", conf())
	}
}

func TestLimitSize(t *testing.T) {
	ents := entsAt(1, 1, 1, 1) // size 24 each
	for _, tc := range []struct {
		max  uint64
		want int
	}{
		{0, 1}, {23, 1}, {24, 1}, {47, 1}, {48, 2}, {72, 3}, {noLimit, 3},
	} {
		if got := len(limitSize(ents, tc.max)); got != tc.want {
			t.Errorf("limitSize(3 entries, %d) kept %d, want %d", tc.max, got, tc.want)
		}
	}
	if got := limitSize(nil, 0); len(got) != 0 {
		t.Errorf("limitSize(nil) = %v", got)
	}
}

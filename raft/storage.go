package raft

import (
	"fmt"
	"slices"
	"sync"
)

// Storage is the core's read-only view of a node's durable state. The
// driver writes to it (what each Ready says to persist); the core reads
// from it at start and whenever it needs entries that are already stable.
//
// The log held by a Storage is a contiguous run of entries
// [FirstIndex, LastIndex], preceded by a snapshot whose Index is
// FirstIndex-1. Implementations must be safe for the core to call while the
// driver is not writing (the driver owns both, so one goroutine suffices).
type Storage interface {
	// InitialState returns the persisted HardState and the configuration
	// in force at the end of the stored log.
	InitialState() (HardState, ConfState, error)
	// Entries returns entries in [lo, hi), stopping early once their total
	// size exceeds maxSize (but always returning at least one entry when
	// lo < hi). It returns ErrCompacted for lo < FirstIndex and
	// ErrUnavailable for hi > LastIndex+1.
	Entries(lo, hi Index, maxSize uint64) ([]Entry, error)
	// Term returns the term of entry i, for i in [FirstIndex-1, LastIndex].
	// The term of FirstIndex-1 is the snapshot's term.
	Term(i Index) (Term, error)
	// FirstIndex returns the index of the first entry still held (which may
	// be LastIndex+1 when the log is empty after a snapshot).
	FirstIndex() (Index, error)
	// LastIndex returns the index of the last entry held.
	LastIndex() (Index, error)
	// Snapshot returns the metadata of the most recent snapshot, or
	// ErrSnapshotTemporarilyUnavailable if it cannot be sent right now.
	Snapshot() (SnapshotMeta, error)
}

// MemoryStorage is a Storage held in memory, for tests and the simulator.
// (The consensus state machine itself takes no locks; this storage does,
// because drivers and test harnesses read it from other goroutines.)
// Everything in it counts as durable: a simulated crash keeps it and loses
// only what the core had not yet handed over in a Ready.
//
// Its methods may be called from several goroutines.
type MemoryStorage struct {
	mu struct {
		sync.Mutex
		hard HardState
		snap SnapshotMeta
		// ents[0] is a dummy entry standing for the snapshot: its Index and
		// Term are the snapshot's. Real entries follow.
		ents []Entry
		// conf is the configuration at the end of ents, kept current as
		// entries are appended and truncated.
		conf ConfState
	}
}

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage {
	s := &MemoryStorage{}
	s.mu.ents = []Entry{{}}
	return s
}

// InitialState implements Storage.
func (s *MemoryStorage) InitialState() (HardState, ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hard, s.mu.conf, nil
}

// SetHardState saves the HardState.
func (s *MemoryStorage) SetHardState(h HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.hard = h
}

func (s *MemoryStorage) offsetLocked() Index { return s.mu.ents[0].Index }

func (s *MemoryStorage) lastIndexLocked() Index {
	return s.offsetLocked() + Index(len(s.mu.ents)) - 1
}

// Entries implements Storage.
func (s *MemoryStorage) Entries(lo, hi Index, maxSize uint64) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.offsetLocked()
	if lo <= off {
		return nil, ErrCompacted
	}
	if hi > s.lastIndexLocked()+1 {
		return nil, fmt.Errorf("%w: entries [%d, %d) beyond last index %d", ErrUnavailable, lo, hi, s.lastIndexLocked())
	}
	ents := limitSize(s.mu.ents[lo-off:hi-off], maxSize)
	// Hand out a copy of the slice header's backing range so that a later
	// append by the driver cannot change what the caller holds.
	return slices.Clone(ents), nil
}

// Term implements Storage.
func (s *MemoryStorage) Term(i Index) (Term, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.offsetLocked()
	if i < off {
		return 0, ErrCompacted
	}
	if i > s.lastIndexLocked() {
		return 0, ErrUnavailable
	}
	return s.mu.ents[i-off].Term, nil
}

// FirstIndex implements Storage.
func (s *MemoryStorage) FirstIndex() (Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offsetLocked() + 1, nil
}

// LastIndex implements Storage.
func (s *MemoryStorage) LastIndex() (Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastIndexLocked(), nil
}

// Snapshot implements Storage.
func (s *MemoryStorage) Snapshot() (SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.snap, nil
}

// ApplySnapshot replaces the whole log with the snapshot described by m.
// A snapshot older than the stored one is refused with ErrSnapOutOfDate.
func (s *MemoryStorage) ApplySnapshot(m SnapshotMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Index <= s.mu.snap.Index && !s.mu.snap.IsEmpty() {
		return ErrSnapOutOfDate
	}
	s.mu.snap = m
	s.mu.ents = []Entry{{Index: m.Index, Term: m.Term}}
	s.mu.conf = m.ConfState
	return nil
}

// CreateSnapshot records that the state machine has a snapshot at index i
// (which must be stored and not yet compacted) with configuration cs, and
// returns its metadata. It does not discard entries; Compact does.
func (s *MemoryStorage) CreateSnapshot(i Index, cs ConfState) (SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i <= s.mu.snap.Index && !s.mu.snap.IsEmpty() {
		return SnapshotMeta{}, ErrSnapOutOfDate
	}
	off := s.offsetLocked()
	if i < off || i > s.lastIndexLocked() {
		return SnapshotMeta{}, fmt.Errorf("%w: snapshot index %d outside [%d, %d]", ErrUnavailable, i, off, s.lastIndexLocked())
	}
	s.mu.snap = SnapshotMeta{Index: i, Term: s.mu.ents[i-off].Term, ConfState: cs}
	return s.mu.snap, nil
}

// Compact discards entries up to and including i, which must not be beyond
// the latest snapshot's index: the log always starts right after a snapshot.
func (s *MemoryStorage) Compact(i Index) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.offsetLocked()
	if i <= off {
		return ErrCompacted
	}
	if i > s.mu.snap.Index {
		return fmt.Errorf("raft: compact %d is beyond snapshot %d", i, s.mu.snap.Index)
	}
	ents := make([]Entry, 1, 1+len(s.mu.ents)-int(i-off))
	ents[0] = Entry{Index: i, Term: s.mu.ents[i-off].Term}
	s.mu.ents = append(ents, s.mu.ents[i-off+1:]...)
	return nil
}

// Append stores entries, replacing any stored entries at the same or higher
// indexes. Entries must be contiguous and must not leave a gap after the
// stored log. Entries already folded into a snapshot are skipped.
func (s *MemoryStorage) Append(ents []Entry) error {
	if len(ents) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.offsetLocked() + 1
	if last := ents[len(ents)-1].Index; last < first {
		return nil
	}
	if ents[0].Index < first {
		ents = ents[first-ents[0].Index:]
	}
	if ents[0].Index > s.lastIndexLocked()+1 {
		return fmt.Errorf("raft: append at %d leaves a gap after last index %d", ents[0].Index, s.lastIndexLocked())
	}
	truncated := ents[0].Index <= s.lastIndexLocked()
	s.mu.ents = append(s.mu.ents[:ents[0].Index-s.offsetLocked()], ents...)
	if truncated {
		s.recomputeConfLocked()
	} else {
		for i := range ents {
			s.noteConfLocked(&ents[i])
		}
	}
	return nil
}

func (s *MemoryStorage) noteConfLocked(e *Entry) {
	if e.Type != EntryConfChange {
		return
	}
	if cs, err := UnmarshalConfState(e.Data); err == nil {
		s.mu.conf = cs
	}
}

func (s *MemoryStorage) recomputeConfLocked() {
	s.mu.conf = s.mu.snap.ConfState
	for i := 1; i < len(s.mu.ents); i++ {
		s.noteConfLocked(&s.mu.ents[i])
	}
}

// limitSize returns the longest prefix of ents whose total size is at most
// maxSize, but never fewer than one entry.
func limitSize(ents []Entry, maxSize uint64) []Entry {
	if len(ents) == 0 {
		return ents
	}
	size := ents[0].size()
	for i := 1; i < len(ents); i++ {
		size += ents[i].size()
		if size > maxSize {
			return ents[:i]
		}
	}
	return ents
}

package wal

import (
	"fmt"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// logState is the log as the records describe it: what Save appends to and
// what replay rebuilds. It mirrors raft.MemoryStorage's semantics (the
// reference implementation of raft.Storage), and adds what the WAL needs
// to know which segments still matter.
//
// Invariant (after Open and after every Save or Compact): offset ==
// compacted, and ents[i].Index == offset+1+i.
type logState struct {
	hs   raft.HardState
	snap raft.SnapshotMeta

	// compacted is the index the log has been compacted to (the entries up
	// to it are gone); compactedTerm is its term.
	compacted     raft.Index
	compactedTerm raft.Term

	// offset is the index just before ents[0], offsetTerm its term. Live,
	// offset == compacted. During replay from a checkpoint, offset starts at
	// the checkpoint's last index (the entries before it are in older
	// segments, which replay skips), and meets compacted again by the end.
	offset     raft.Index
	offsetTerm raft.Term
	ents       []raft.Entry

	// conf is the configuration at the end of the log: the latest
	// EntryConfChange entry's, else the snapshot's.
	conf raft.ConfState

	// runs says in which segment each entry of ents was written: entries
	// are appended in index order and truncated from the end, so segment
	// numbers never decrease along the log, and a few runs describe it.
	// Invariant: runs[0].from == offset+1 when ents is not empty; runs is
	// empty when ents is.
	runs []run
}

type run struct {
	seq  uint64
	from raft.Index
}

func (s *logState) last() raft.Index { return s.offset + raft.Index(len(s.ents)) }

// term returns the term of entry i, for i in [offset, last].
func (s *logState) term(i raft.Index) (raft.Term, bool) {
	if i < s.offset || i > s.last() {
		return 0, false
	}
	if i == s.offset {
		return s.offsetTerm, true
	}
	return s.ents[i-s.offset-1].Term, true
}

// oldestLiveSeq returns the segment number the oldest entry still in the
// log was written in, or current if the log holds no entries. Segments
// before it hold nothing replay needs.
func (s *logState) oldestLiveSeq(current uint64) uint64 {
	if len(s.runs) == 0 {
		return current
	}
	return s.runs[0].seq
}

func (s *logState) setHardState(hs raft.HardState) { s.hs = hs }

// installSnapshot replaces the whole log with the snapshot meta describes.
func (s *logState) installSnapshot(meta raft.SnapshotMeta) {
	s.snap = meta
	s.compacted, s.compactedTerm = meta.Index, meta.Term
	s.offset, s.offsetTerm = meta.Index, meta.Term
	s.ents = nil
	s.runs = nil
	s.conf = meta.ConfState
}

// compact records the snapshot meta describes and drops the entries up to
// and including to, whose term is toTerm.
func (s *logState) compact(meta raft.SnapshotMeta, to raft.Index, toTerm raft.Term) {
	s.snap = meta
	if to > s.compacted {
		s.compacted, s.compactedTerm = to, toTerm
	}
	if to < s.offset {
		return
	}
	if to == s.offset {
		s.offsetTerm = toTerm
		return
	}
	if to >= s.last() {
		s.ents = nil
		s.runs = nil
	} else {
		s.ents = slices.Clone(s.ents[to-s.offset:])
		i := 0
		for i+1 < len(s.runs) && s.runs[i+1].from <= to+1 {
			i++
		}
		s.runs = slices.Delete(s.runs, 0, i)
		s.runs[0].from = to + 1
	}
	s.offset, s.offsetTerm = to, toTerm
}

// truncate drops the entries after index after. In a replay that started
// from a checkpoint, after may lie before offset (an entry written in a
// skipped segment is being replaced); the log then restarts at after.
func (s *logState) truncate(after raft.Index) error {
	if after >= s.last() {
		return nil
	}
	if after < s.compacted {
		return fmt.Errorf("truncation after %d reaches below the compaction point %d", after, s.compacted)
	}
	if after < s.offset {
		s.ents = nil
		s.runs = nil
		s.offset = after
		if after == s.compacted {
			s.offsetTerm = s.compactedTerm
		} else {
			s.offsetTerm = 0 // unknown until a compaction reaches past it
		}
	} else {
		s.ents = s.ents[:after-s.offset]
		for len(s.runs) > 0 && s.runs[len(s.runs)-1].from > after {
			s.runs = s.runs[:len(s.runs)-1]
		}
	}
	s.recomputeConf()
	return nil
}

// appendEntry appends e, written in segment seq, which must follow the
// last entry. Entries at or before offset are already compacted and are
// skipped.
func (s *logState) appendEntry(e raft.Entry, seq uint64) error {
	if e.Index <= s.offset {
		return nil
	}
	if e.Index != s.last()+1 {
		return fmt.Errorf("entry %d does not follow the last index %d", e.Index, s.last())
	}
	s.ents = append(s.ents, e)
	if len(s.runs) == 0 || s.runs[len(s.runs)-1].seq != seq {
		s.runs = append(s.runs, run{seq: seq, from: e.Index})
	}
	s.noteConf(&s.ents[len(s.ents)-1])
	return nil
}

func (s *logState) noteConf(e *raft.Entry) {
	if e.Type != raft.EntryConfChange {
		return
	}
	if cs, err := raft.UnmarshalConfState(e.Data); err == nil {
		s.conf = cs
	}
}

func (s *logState) recomputeConf() {
	s.conf = s.snap.ConfState
	for i := range s.ents {
		s.noteConf(&s.ents[i])
	}
}

// checkpoint returns the record that opens a new segment: enough to start
// a replay there.
func (s *logState) checkpoint() record {
	lastTerm, _ := s.term(s.last())
	return record{
		kind:     kindCheckpoint,
		prev:     s.last(),
		prevTerm: lastTerm,
		to:       s.compacted,
		toTerm:   s.compactedTerm,
		hs:       s.hs,
		snap:     s.snap,
	}
}

// startFrom resets s to the state a checkpoint record describes.
func (s *logState) startFrom(r *record) {
	*s = logState{
		hs:            r.hs,
		snap:          r.snap,
		compacted:     r.to,
		compactedTerm: r.toTerm,
		offset:        r.prev,
		offsetTerm:    r.prevTerm,
	}
}

// apply applies one replayed record written in segment seq.
func (s *logState) apply(r *record, seq uint64) error {
	switch r.kind {
	case kindEntry:
		return s.appendEntry(r.entry, seq)
	case kindHardState:
		s.setHardState(r.hs)
	case kindSnapshot:
		s.installSnapshot(r.snap)
	case kindCompact:
		if t, ok := s.term(r.to); ok && r.to > s.offset && t != r.toTerm {
			return fmt.Errorf("compaction to %d says term %d, the log has %d", r.to, r.toTerm, t)
		}
		s.compact(r.snap, r.to, r.toTerm)
	case kindTruncate:
		return s.truncate(r.to)
	case kindCheckpoint:
		return s.verifyCheckpoint(r)
	default:
		return fmt.Errorf("unexpected %v record", r.kind)
	}
	return nil
}

// verifyCheckpoint checks that a segment's opening checkpoint agrees with
// the state replayed from the segments before it. A disagreement means a
// segment is missing or was rewritten.
func (s *logState) verifyCheckpoint(r *record) error {
	if r.prev != s.last() {
		return fmt.Errorf("segment starts after index %d, the previous segments end at %d", r.prev, s.last())
	}
	if t, _ := s.term(s.last()); r.prev > s.offset && t != r.prevTerm {
		return fmt.Errorf("segment starts after term %d, the previous segments end with term %d", r.prevTerm, t)
	}
	if r.to != s.compacted || r.toTerm != s.compactedTerm {
		return fmt.Errorf("segment says the log is compacted to %d/%d, the previous segments say %d/%d", r.toTerm, r.to, s.compactedTerm, s.compacted)
	}
	if r.hs != s.hs {
		return fmt.Errorf("segment says hard state %s, the previous segments say %s", raft.DescribeHardState(r.hs), raft.DescribeHardState(s.hs))
	}
	if r.snap.Index != s.snap.Index || r.snap.Term != s.snap.Term || !r.snap.ConfState.Equal(s.snap.ConfState) {
		return fmt.Errorf("segment says snapshot %s, the previous segments say %s", raft.DescribeSnapshot(r.snap), raft.DescribeSnapshot(s.snap))
	}
	return nil
}

// finishReplay checks the replayed log is whole and settles conf.
func (s *logState) finishReplay() error {
	if s.offset != s.compacted {
		return fmt.Errorf("entries (%d, %d] are missing: the log is compacted only to %d and the segments holding them are gone", s.compacted, s.offset, s.compacted)
	}
	s.offsetTerm = s.compactedTerm
	s.recomputeConf()
	return nil
}

// limitSize returns the longest prefix of ents whose total size is at most
// maxSize, but never fewer than one entry. Sizes count as in raft: the
// data plus 24 bytes.
func limitSize(ents []raft.Entry, maxSize uint64) []raft.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := uint64(len(ents[0].Data)) + 24
	for i := 1; i < len(ents); i++ {
		size += uint64(len(ents[i].Data)) + 24
		if size > maxSize {
			return ents[:i]
		}
	}
	return ents
}

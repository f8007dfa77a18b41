package raft

import (
	"errors"
	"fmt"
)

// raftLog is the core's view of its log: the stable part lives in Storage,
// the part not yet handed to the driver for persistence lives in unstable.
//
//	 snapshot   stable entries (Storage)      unstable entries
//	[..........][s.first ........ s.last][u.offset ........ last]
//	                                ^committed         ^applied <= committed
//
// Invariant: applied <= committed <= lastIndex().
// Invariant: firstIndex()-1 <= applied (nothing behind a snapshot is
// applied again).
type raftLog struct {
	storage  Storage
	unstable unstable
	// committed is the highest index known to be committed (§5.3).
	committed Index
	// applied is the highest index handed to the state machine and
	// acknowledged by Advance.
	applied Index
	// maxApplyingSize bounds the bytes of committed entries per Ready.
	maxApplyingSize uint64
}

func newLog(storage Storage, maxApplyingSize uint64) (*raftLog, error) {
	first, err := storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading first index: %w", err)
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading last index: %w", err)
	}
	l := &raftLog{storage: storage, maxApplyingSize: maxApplyingSize}
	l.unstable.offset = last + 1
	l.committed = first - 1
	l.applied = first - 1
	return l, nil
}

func (l *raftLog) String() string {
	return fmt.Sprintf("committed=%d applied=%d unstable.offset=%d len(unstable)=%d",
		l.committed, l.applied, l.unstable.offset, len(l.unstable.entries))
}

// firstIndex is the first index whose entry the log still holds.
func (l *raftLog) firstIndex() Index {
	if l.unstable.snapshot != nil {
		return l.unstable.snapshot.Index + 1
	}
	i, err := l.storage.FirstIndex()
	if err != nil {
		// Storage reads of indexes cannot fail for a healthy store; treat a
		// failing store as holding nothing beyond what is unstable.
		return l.unstable.offset
	}
	return i
}

// lastIndex is the index of the last entry, stable or not.
func (l *raftLog) lastIndex() Index {
	if n := len(l.unstable.entries); n > 0 {
		return l.unstable.offset + Index(n) - 1
	}
	if l.unstable.snapshot != nil {
		return l.unstable.snapshot.Index
	}
	i, err := l.storage.LastIndex()
	if err != nil {
		return l.unstable.offset - 1
	}
	return i
}

// stableLastIndex is the last index already durable (handed out in a Ready
// and acknowledged by Advance).
func (l *raftLog) stableLastIndex() Index { return l.unstable.offset - 1 }

func (l *raftLog) lastTerm() Term {
	t, err := l.term(l.lastIndex())
	if err != nil {
		return 0
	}
	return t
}

// term returns the term of entry i. Index 0 has term 0; an index behind the
// snapshot yields ErrCompacted, one beyond the end ErrUnavailable.
func (l *raftLog) term(i Index) (Term, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	if i == 0 {
		return 0, nil
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	if i < l.firstIndex()-1 {
		return 0, ErrCompacted
	}
	t, err := l.storage.Term(i)
	if err != nil {
		return 0, err
	}
	return t, nil
}

func (l *raftLog) matchTerm(i Index, t Term) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as ours: the election restriction (§5.4.1).
func (l *raftLog) isUpToDate(lasti Index, term Term) bool {
	if canaryNoElectionRestriction {
		return true
	}
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// maybeAppend applies an AppendEntries whose entries follow (index,
// logTerm). It fails, changing nothing, when our log does not contain that
// entry: the consistency check (§5.3). On success it returns the index of
// the last entry the message covered and the index from which entries were
// appended (0 if the log already held them all), and commits up to
// min(committed, that last index).
func (l *raftLog) maybeAppend(index Index, logTerm Term, committed Index, ents []Entry) (lastNew, conflict Index, ok bool) {
	if !canaryNoConsistencyCheck && !l.matchTerm(index, logTerm) {
		return 0, 0, false
	}
	lastNew = index + Index(len(ents))
	if conflict = l.findConflict(ents); conflict != 0 {
		if conflict <= l.committed {
			// A leader never asks us to change committed entries (Leader
			// Completeness, §5.4); a message that does is a lie or a bug
			// upstream. Refuse it rather than corrupt the log.
			return 0, 0, false
		}
		l.append(ents[conflict-index-1:]...)
	}
	l.commitTo(min(committed, lastNew))
	return lastNew, conflict, true
}

// findConflict returns the index of the first entry of ents that is not in
// our log (a different term at that index, or beyond our last index), or 0
// when our log already holds all of them.
func (l *raftLog) findConflict(ents []Entry) Index {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index j <= index whose term is at
// most term, with that term. A leader that learns a follower's log has term
// t at index i skips every one of its own entries with a term above t in
// one step: the fast backtracking of §5.3 ("the follower can include the
// term of the conflicting entry").
func (l *raftLog) findConflictByTerm(index Index, term Term) (Index, Term) {
	for ; index > 0; index-- {
		t, err := l.term(index)
		if err != nil {
			// Compacted or unavailable: index is as good as we can do.
			return index, 0
		}
		if t <= term {
			return index, t
		}
	}
	return 0, 0
}

// append adds entries to the end of the log, truncating any conflicting
// suffix first. It returns the new last index.
func (l *raftLog) append(ents ...Entry) Index {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

// slice returns entries in [lo, hi), at most maxSize bytes (but at least
// one entry).
func (l *raftLog) slice(lo, hi Index, maxSize uint64) ([]Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		return nil, ErrUnavailable
	}
	var ents []Entry
	if lo < l.unstable.offset {
		stored, err := l.storage.Entries(lo, min(hi, l.unstable.offset), maxSize)
		if err != nil {
			return nil, err
		}
		if Index(len(stored)) < min(hi, l.unstable.offset)-lo {
			return stored, nil // hit the size limit
		}
		ents = stored
	}
	if hi > l.unstable.offset {
		u := l.unstable.slice(max(lo, l.unstable.offset), hi)
		if len(ents) > 0 {
			// Copy so that appending never writes into Storage's array.
			combined := make([]Entry, 0, len(ents)+len(u))
			combined = append(append(combined, ents...), u...)
			ents = combined
		} else {
			ents = u
		}
	}
	return limitSize(ents, maxSize), nil
}

// entriesFrom returns entries from i to the end, at most maxSize bytes.
func (l *raftLog) entriesFrom(i Index, maxSize uint64) ([]Entry, error) {
	if i > l.lastIndex() {
		return nil, nil
	}
	return l.slice(i, l.lastIndex()+1, maxSize)
}

func (l *raftLog) commitTo(i Index) {
	if i > l.committed {
		if i > l.lastIndex() {
			// Only a buggy or lying leader asks this; ignore rather than
			// commit entries we do not hold.
			return
		}
		l.committed = i
	}
}

// maybeCommit commits up to i if entry i is from term t. Only entries of
// the leader's current term are committed by counting replicas (§5.4.2,
// Figure 8); earlier ones are committed indirectly with them.
func (l *raftLog) maybeCommit(i Index, t Term) bool {
	if i <= l.committed {
		return false
	}
	if !canaryCommitPrevTerm && !l.matchTerm(i, t) {
		return false
	}
	l.commitTo(i)
	return true
}

// hasNextCommittedEnts reports whether committed entries wait to be applied.
func (l *raftLog) hasNextCommittedEnts() bool {
	return l.committed > l.applied && l.applied+1 >= l.firstIndex()
}

// nextCommittedEnts returns committed entries not yet applied, within the
// per-Ready byte limit.
func (l *raftLog) nextCommittedEnts() []Entry {
	if !l.hasNextCommittedEnts() {
		return nil
	}
	ents, err := l.slice(l.applied+1, l.committed+1, l.maxApplyingSize)
	if err != nil {
		return nil
	}
	return ents
}

func (l *raftLog) appliedTo(i Index) {
	if i > l.applied && i <= l.committed {
		l.applied = i
	}
}

func (l *raftLog) stableTo(i Index, t Term) { l.unstable.stableTo(i, t) }

func (l *raftLog) stableSnapTo(i Index) { l.unstable.stableSnapTo(i) }

// restore replaces the log with a snapshot (§7).
func (l *raftLog) restore(s SnapshotMeta) {
	l.committed = s.Index
	l.unstable.restore(s)
}

// snapshot returns the snapshot the log starts from.
func (l *raftLog) snapshot() (SnapshotMeta, error) {
	if l.unstable.snapshot != nil {
		return *l.unstable.snapshot, nil
	}
	return l.storage.Snapshot()
}

// isStorageError reports whether err is a real storage failure rather than
// one of the control errors (compacted, unavailable) the log uses.
func isStorageError(err error) bool {
	return err != nil && !errors.Is(err, ErrCompacted) && !errors.Is(err, ErrUnavailable) &&
		!errors.Is(err, ErrSnapshotTemporarilyUnavailable)
}

// unstable holds what the core has accepted but the driver has not yet
// made durable: at most one snapshot, then entries from offset on.
//
// Invariant: if snapshot != nil, offset == snapshot.Index+1.
type unstable struct {
	snapshot *SnapshotMeta
	entries  []Entry
	offset   Index
}

func (u *unstable) maybeTerm(i Index) (Term, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Index == i {
			return u.snapshot.Term, true
		}
		return 0, false
	}
	if last := u.offset + Index(len(u.entries)) - 1; len(u.entries) == 0 || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// stableTo drops entries up to i from unstable once they are durable, but
// only if entry i still has term t: a newer leader may have replaced it
// while it was being written, and then the replacement is still unstable.
func (u *unstable) stableTo(i Index, t Term) {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return
	}
	n := int(i + 1 - u.offset)
	u.entries = u.entries[n:]
	if len(u.entries) == 0 {
		u.entries = nil
	}
	u.offset = i + 1
}

func (u *unstable) stableSnapTo(i Index) {
	if u.snapshot != nil && u.snapshot.Index == i {
		u.snapshot = nil
	}
}

func (u *unstable) restore(s SnapshotMeta) {
	u.offset = s.Index + 1
	u.entries = nil
	u.snapshot = &s
}

func (u *unstable) truncateAndAppend(ents []Entry) {
	from := ents[0].Index
	switch {
	case from == u.offset+Index(len(u.entries)):
		// The common case: straight after the last entry.
		u.entries = append(u.entries, ents...)
	case from <= u.offset:
		// Replaces everything unstable (and stable entries from `from` on,
		// which the driver overwrites when it persists these).
		u.offset = from
		u.entries = append([]Entry(nil), ents...)
	default:
		// Truncate to from, then append. Copy so the old array, which a
		// Ready may still reference, is never written.
		keep := u.entries[:from-u.offset]
		u.entries = append(append(make([]Entry, 0, len(keep)+len(ents)), keep...), ents...)
	}
}

func (u *unstable) slice(lo, hi Index) []Entry {
	return u.entries[lo-u.offset : hi-u.offset : hi-u.offset]
}

package rafttest

import "github.com/cairnkv/cairn/raft"

// diskLog mirrors the log a node's MemoryStorage holds, entry by entry, with
// the chain hash of every prefix. The simulator keeps it in step with the
// storage (it performs every write to both), so that the invariant checks
// can compare prefixes of durable logs in constant time.
//
//	 offset       offset+1     ...     last()
//	[compacted ][ terms[0] ][ ... ][ terms[n-1] ]
//
// Invariant: offset is the storage's FirstIndex()-1, and last() its
// LastIndex(). The entry at offset is compacted (folded into a snapshot or
// the bootstrap's empty prefix) but its term and chain hash are known.
type diskLog struct {
	offset      raft.Index
	offsetTerm  raft.Term
	offsetChain uint64
	terms       []raft.Term
	chains      []uint64
}

func newDiskLog() diskLog { return diskLog{offsetChain: emptyChain} }

func (l *diskLog) last() raft.Index { return l.offset + raft.Index(len(l.terms)) }

// chainAt returns the chain hash of the prefix ending at i, if the log still
// holds i (or i is the compaction point).
func (l *diskLog) chainAt(i raft.Index) (uint64, bool) {
	switch {
	case i == l.offset:
		return l.offsetChain, true
	case i < l.offset || i > l.last():
		return 0, false
	}
	return l.chains[i-l.offset-1], true
}

// lastTerm returns the term of the last entry (or of the compaction point).
func (l *diskLog) lastTerm() raft.Term {
	if n := len(l.terms); n > 0 {
		return l.terms[n-1]
	}
	return l.offsetTerm
}

// notAfter reports whether the log is no more up-to-date (§5.4.1) than a
// log whose last entry is (term, index): a node holding it would vote for
// a candidate with that last entry.
func (l *diskLog) notAfter(term raft.Term, index raft.Index) bool {
	t := l.lastTerm()
	return t < term || t == term && l.last() <= index
}

// termAt returns the term of entry i, if the log holds it.
func (l *diskLog) termAt(i raft.Index) (raft.Term, bool) {
	switch {
	case i == l.offset:
		return l.offsetTerm, true
	case i < l.offset || i > l.last():
		return 0, false
	}
	return l.terms[i-l.offset-1], true
}

// truncateAppend replaces everything from first on with the given terms and
// chains. first must be in [offset+1, last()+1].
func (l *diskLog) truncateAppend(first raft.Index, terms []raft.Term, chains []uint64) {
	k := int(first - l.offset - 1)
	l.terms = append(l.terms[:k], terms...)
	l.chains = append(l.chains[:k], chains...)
}

// compact drops entries up to and including i (offset < i <= last()).
func (l *diskLog) compact(i raft.Index) {
	k := int(i - l.offset)
	l.offsetTerm = l.terms[k-1]
	l.offsetChain = l.chains[k-1]
	l.terms = append(l.terms[:0], l.terms[k:]...)
	l.chains = append(l.chains[:0], l.chains[k:]...)
	l.offset = i
}

// reset replaces the whole log with a snapshot's point.
func (l *diskLog) reset(index raft.Index, term raft.Term, chain uint64) {
	l.offset, l.offsetTerm, l.offsetChain = index, term, chain
	l.terms, l.chains = l.terms[:0], l.chains[:0]
}

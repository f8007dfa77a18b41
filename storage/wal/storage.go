package wal

import (
	"fmt"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

var _ raft.Storage = (*WAL)(nil)

// InitialState implements raft.Storage.
func (w *WAL) InitialState() (raft.HardState, raft.ConfState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.st.hs, w.mu.st.conf, nil
}

// Entries implements raft.Storage.
func (w *WAL) Entries(lo, hi raft.Index, maxSize uint64) ([]raft.Entry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &w.mu.st
	if lo <= st.offset {
		return nil, raft.ErrCompacted
	}
	if hi > st.last()+1 {
		return nil, fmt.Errorf("%w: entries [%d, %d) beyond last index %d", raft.ErrUnavailable, lo, hi, st.last())
	}
	if lo >= hi {
		return nil, nil
	}
	ents := limitSize(st.ents[lo-st.offset-1:hi-st.offset-1], maxSize)
	return slices.Clone(ents), nil
}

// Term implements raft.Storage.
func (w *WAL) Term(i raft.Index) (raft.Term, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &w.mu.st
	if i < st.offset {
		return 0, raft.ErrCompacted
	}
	t, ok := st.term(i)
	if !ok {
		return 0, raft.ErrUnavailable
	}
	return t, nil
}

// FirstIndex implements raft.Storage.
func (w *WAL) FirstIndex() (raft.Index, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.st.offset + 1, nil
}

// LastIndex implements raft.Storage.
func (w *WAL) LastIndex() (raft.Index, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.st.last(), nil
}

// Snapshot implements raft.Storage.
func (w *WAL) Snapshot() (raft.SnapshotMeta, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.st.snap, nil
}

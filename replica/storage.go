package replica

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairnkv/cairn/raft"
)

// LogStore is a replica's durable Raft state: the log, the hard state and
// the metadata of the latest snapshot. The core reads it through the
// embedded raft.Storage; the replica writes it, from its run goroutine only,
// through Save and Compact.
//
// *wal.WAL implements it for disk (OpenDisk opens one in a data
// directory); MemoryLogStore is the in-memory implementation for tests.
//
// Errors. Save and Compact report a full disk with an error wrapping
// ErrNoSpace or syscall.ENOSPC (as wal.ErrNoSpace errors do), and must then
// have written nothing and changed nothing: the replica keeps running (see
// doc.go, "A full disk"). Any other error is fatal: the replica stops with
// an error wrapping ErrLogFailed and the cause.
type LogStore interface {
	raft.Storage

	// Save makes durable what one Ready asks to persist, as one atomic
	// step: a crash leaves either all of it or none of it. In order:
	// snap (if non-nil) replaces the whole log; ents are appended,
	// replacing any stored entries at the same or higher indexes; hs (if
	// not empty) replaces the hard state. When sync is set, Save returns
	// only once all of it is on stable storage.
	//
	// An error other than a full disk is fatal to the replica: it cannot
	// know what was written.
	Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, sync bool) error

	// Compact records that the snapshot described by meta is durable in the
	// SnapshotStore (so that it can be sent to followers that need it, and
	// loaded at restart), then discards the entries up to and including
	// compactTo, which is at most meta.Index. Entries already discarded
	// are not an error.
	Compact(meta raft.SnapshotMeta, compactTo raft.Index) error
}

// SnapshotStore holds snapshot data: the bytes a StateMachine writes and
// reads, named by the snapshot's index and term. It may be used from
// several goroutines at once (the run goroutine creates and opens
// snapshots; a transport goroutine stages incoming ones).
type SnapshotStore interface {
	// Create starts writing the data of the snapshot meta describes. The
	// data becomes visible to Open only once the sink's Close succeeds.
	Create(meta raft.SnapshotMeta) (SnapshotSink, error)
	// Open returns a reader of the data of the snapshot meta describes
	// (matched by index and term), or an error wrapping
	// ErrSnapshotNotFound. The caller closes it.
	Open(meta raft.SnapshotMeta) (io.ReadCloser, error)
	// Prune deletes the snapshots whose index is below keep. Readers
	// already open may still read them to the end.
	Prune(keep raft.Index) error
}

// SnapshotSink receives one snapshot's data. Close commits it; Cancel
// discards it. Exactly one of them must be called.
type SnapshotSink interface {
	io.WriteCloser
	Cancel() error
}

// MemoryLogStore is a LogStore over a raft.MemoryStorage. Everything saved
// counts as durable, so a test "crashes" a replica by stopping it and
// "restarts" it with a new Replica over the same MemoryLogStore.
//
// Save's parts are applied one after the other; that is atomic enough
// because only the replica's run goroutine writes or reads the log (the
// core reads it from the same goroutine), and a stop never interrupts a
// Save.
type MemoryLogStore struct {
	*raft.MemoryStorage
}

var _ LogStore = (*MemoryLogStore)(nil)

// NewMemoryLogStore returns a LogStore over ms, which is typically new and
// bootstrapped with raft.Bootstrap.
func NewMemoryLogStore(ms *raft.MemoryStorage) *MemoryLogStore {
	return &MemoryLogStore{MemoryStorage: ms}
}

// Save implements LogStore.
func (s *MemoryLogStore) Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, _ bool) error {
	if snap != nil {
		if err := s.ApplySnapshot(*snap); err != nil {
			return fmt.Errorf("replica: save snapshot %d: %w", snap.Index, err)
		}
	}
	if err := s.Append(ents); err != nil {
		return fmt.Errorf("replica: save entries: %w", err)
	}
	if !hs.IsEmpty() {
		s.SetHardState(hs)
	}
	return nil
}

// Compact implements LogStore.
func (s *MemoryLogStore) Compact(meta raft.SnapshotMeta, compactTo raft.Index) error {
	got, err := s.CreateSnapshot(meta.Index, meta.ConfState)
	if err != nil {
		return fmt.Errorf("replica: record snapshot %d: %w", meta.Index, err)
	}
	if got.Term != meta.Term {
		return fmt.Errorf("replica: snapshot %d has term %d in the log, %d in the state machine", meta.Index, got.Term, meta.Term)
	}
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	if compactTo < first {
		return nil // nothing (more) to discard
	}
	if err := s.MemoryStorage.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("replica: compact to %d: %w", compactTo, err)
	}
	return nil
}

// MemorySnapshotStore is a SnapshotStore in memory, safe for concurrent
// use. Each snapshot is one immutable byte slice, so readers never block
// writers.
type MemorySnapshotStore struct {
	mu struct {
		sync.Mutex
		snaps map[snapKey][]byte
	}
}

var _ SnapshotStore = (*MemorySnapshotStore)(nil)

// snapKey names a snapshot. The term is part of the name because two
// snapshots at one index from different histories are different data.
type snapKey struct {
	index raft.Index
	term  raft.Term
}

func keyOf(m raft.SnapshotMeta) snapKey { return snapKey{m.Index, m.Term} }

// NewMemorySnapshotStore returns an empty MemorySnapshotStore.
func NewMemorySnapshotStore() *MemorySnapshotStore {
	s := &MemorySnapshotStore{}
	s.mu.snaps = make(map[snapKey][]byte)
	return s
}

// Create implements SnapshotStore.
func (s *MemorySnapshotStore) Create(meta raft.SnapshotMeta) (SnapshotSink, error) {
	return &memorySink{store: s, key: keyOf(meta)}, nil
}

// Open implements SnapshotStore.
func (s *MemorySnapshotStore) Open(meta raft.SnapshotMeta) (io.ReadCloser, error) {
	s.mu.Lock()
	data, ok := s.mu.snaps[keyOf(meta)]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: index %d term %d", ErrSnapshotNotFound, meta.Index, meta.Term)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Prune implements SnapshotStore.
func (s *MemorySnapshotStore) Prune(keep raft.Index) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.mu.snaps {
		if k.index < keep {
			delete(s.mu.snaps, k)
		}
	}
	return nil
}

// Len returns how many snapshots the store holds (for tests).
func (s *MemorySnapshotStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.snaps)
}

// errSinkClosed is returned by a memorySink used after Close or Cancel.
var errSinkClosed = errors.New("replica: snapshot sink already closed")

// memorySink buffers a snapshot and publishes it on Close.
type memorySink struct {
	store  *MemorySnapshotStore
	key    snapKey
	buf    bytes.Buffer
	closed bool
}

func (k *memorySink) Write(p []byte) (int, error) {
	if k.closed {
		return 0, errSinkClosed
	}
	return k.buf.Write(p)
}

func (k *memorySink) Close() error {
	if k.closed {
		return errSinkClosed
	}
	k.closed = true
	k.store.mu.Lock()
	k.store.mu.snaps[k.key] = k.buf.Bytes()
	k.store.mu.Unlock()
	return nil
}

func (k *memorySink) Cancel() error {
	if k.closed {
		return errSinkClosed
	}
	k.closed = true
	k.buf = bytes.Buffer{}
	return nil
}

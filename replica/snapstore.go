package replica

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/snap"
)

// FileSnapshotStore is a SnapshotStore over a directory of snapshot files
// (a *snap.Store): each snapshot is written under a temporary name,
// synced, renamed and the directory synced when its sink is closed, and
// checksummed; a reader reports damage instead of io.EOF. Safe for
// concurrent use, as snap.Store is.
type FileSnapshotStore struct {
	s *snap.Store
}

var _ SnapshotStore = (*FileSnapshotStore)(nil)

// NewFileSnapshotStore returns a SnapshotStore over s.
func NewFileSnapshotStore(s *snap.Store) *FileSnapshotStore {
	return &FileSnapshotStore{s: s}
}

// Store returns the underlying snapshot file store.
func (f *FileSnapshotStore) Store() *snap.Store { return f.s }

// Create implements SnapshotStore. The sink is a *snap.Writer: Close
// commits the file durably, Cancel removes it.
func (f *FileSnapshotStore) Create(meta raft.SnapshotMeta) (SnapshotSink, error) {
	w, err := f.s.Create(meta)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Open implements SnapshotStore. A missing snapshot is an error wrapping
// both ErrSnapshotNotFound and snap.ErrNotFound; a damaged one wraps
// snap.ErrCorrupt.
func (f *FileSnapshotStore) Open(meta raft.SnapshotMeta) (io.ReadCloser, error) {
	r, err := f.s.Open(meta)
	if errors.Is(err, snap.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Prune implements SnapshotStore. The newest snapshot is always kept;
// readers already open may read pruned snapshots to the end.
func (f *FileSnapshotStore) Prune(keep raft.Index) error { return f.s.Prune(keep) }

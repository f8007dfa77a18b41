package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/storage/wal"
)

// A replica's data directory holds its durable state:
//
//	<dir>/wal/    the write-ahead log (storage/wal): entries, hard state,
//	              and the metadata of the latest snapshot
//	<dir>/snap/   snapshot files (storage/snap)
//
// Wiping the directory is the repair path for damaged data
// (docs/storage.md).

// WALDir returns the directory of a data directory's write-ahead log.
func WALDir(dataDir string) string { return filepath.Join(dataDir, "wal") }

// SnapDir returns the directory of a data directory's snapshot files.
func SnapDir(dataDir string) string { return filepath.Join(dataDir, "snap") }

// DiskOptions configures OpenDisk. The zero value is usable.
type DiskOptions struct {
	// FS is the filesystem. Default: vfs.Default.
	FS vfs.FS
	// SegmentSize is the WAL's segment size. Default:
	// wal.DefaultSegmentSize.
	SegmentSize int64
	// Logger receives recovery notices. Default: slog.Default().
	Logger *slog.Logger

	// Bootstrap lists the initial voters of a brand-new group. When the
	// directory holds no Raft state, OpenDisk writes the group's bootstrap
	// state (raft.BootstrapState) before returning; once it holds state,
	// Bootstrap is ignored.
	//
	// Set it only when creating the group. A replica joining an existing
	// group, or repaired by wiping its directory, must start without it:
	// it then starts empty, catches up from its peers, and neither votes
	// nor campaigns until it has (see Replica's catch-up mode in doc.go).
	// Bootstrapping a wiped replica would make it vote as if it had never
	// voted or acknowledged anything.
	Bootstrap []raft.NodeID
}

// Disk is a replica's durable state, opened from its data directory.
type Disk struct {
	// Dir is the data directory.
	Dir string
	// Log is the write-ahead log: the replica's Config.Log.
	Log *wal.WAL
	// Snapshots holds the snapshot files: the replica's Config.Snapshots.
	Snapshots *FileSnapshotStore
	// Fresh reports that the directory held no Raft state when opened
	// (whether or not OpenDisk then bootstrapped it).
	Fresh bool
	// Bootstrapped reports that OpenDisk wrote the bootstrap state.
	Bootstrapped bool
}

// OpenDisk opens (creating if needed) a replica's durable state in the
// data directory dir: it replays the write-ahead log, opens the snapshot
// files, checks that they agree, and bootstraps a brand-new group if
// opts.Bootstrap says to. The Disk's Log and Snapshots are the replica's
// Config.Log and Config.Snapshots:
//
//	d, err := replica.OpenDisk(dir, replica.DiskOptions{Bootstrap: voters}) // voters: only when creating the group
//	...
//	r, err := replica.New(replica.Config{ID: id, Log: d.Log, Snapshots: d.Snapshots, ...})
//	...
//	r.Stop()
//	d.Close()
//
// Close the Disk after the replica has stopped.
//
// A torn write at the log's tail (a crash mid-write) is cut off, and
// OpenDisk succeeds. Damaged data anywhere else makes it refuse, with an
// error wrapping ErrDataCorrupt and the storage package's *CorruptError
// (wal.ErrCorrupt, snap.ErrCorrupt), which names the file and the offset:
// starting on such data could lose entries this replica acknowledged. The
// repair path is in docs/storage.md.
func OpenDisk(dir string, opts DiskOptions) (*Disk, error) {
	for _, id := range opts.Bootstrap {
		if id == raft.None {
			return nil, fmt.Errorf("%w: Bootstrap names node 0", ErrInvalidConfig)
		}
	}
	snaps, err := snap.Open(SnapDir(dir), snap.Options{FS: opts.FS, Logger: opts.Logger})
	if err != nil {
		return nil, openError(dir, err)
	}
	log, err := wal.Open(WALDir(dir), wal.Options{FS: opts.FS, SegmentSize: opts.SegmentSize, Logger: opts.Logger})
	if err != nil {
		return nil, openError(dir, err)
	}
	d := &Disk{Dir: dir, Log: log, Snapshots: NewFileSnapshotStore(snaps)}
	fail := func(err error) (*Disk, error) {
		log.Close()
		return nil, err
	}
	if d.Fresh, err = isEmptyLog(log); err != nil {
		return fail(fmt.Errorf("replica: open data directory %s: %w", dir, err))
	}
	if d.Fresh && len(opts.Bootstrap) > 0 {
		hs, ents := raft.BootstrapState(opts.Bootstrap...)
		if err := log.Save(hs, ents, nil, true); err != nil {
			return fail(fmt.Errorf("replica: bootstrap %s: %w", dir, err))
		}
		d.Bootstrapped = true
	}
	// The log's snapshot must be there to restore from: the replica wrote
	// it durably before the log recorded it.
	if meta, _ := log.Snapshot(); !meta.IsEmpty() {
		rd, err := snaps.Open(meta)
		if err != nil {
			if !errors.Is(err, snap.ErrCorrupt) {
				err = fmt.Errorf("the log starts after snapshot %d (term %d), which %s does not hold: %w",
					meta.Index, meta.Term, SnapDir(dir), err)
			}
			return fail(openError(dir, err))
		}
		rd.Close()
	}
	return d, nil
}

// Close closes the write-ahead log.
func (d *Disk) Close() error { return d.Log.Close() }

// openError wraps an error from opening dir's data, marking damage with
// ErrDataCorrupt and saying what to do about it.
func openError(dir string, err error) error {
	if errors.Is(err, wal.ErrCorrupt) || errors.Is(err, snap.ErrCorrupt) || errors.Is(err, snap.ErrNotFound) {
		return fmt.Errorf("%w: %s: %w (the replica refuses to start on it; to repair, wipe %s and restart the replica without bootstrapping, so that it catches up from its peers: docs/storage.md)",
			ErrDataCorrupt, dir, err, dir)
	}
	return fmt.Errorf("replica: open data directory %s: %w", dir, err)
}

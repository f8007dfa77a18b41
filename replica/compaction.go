package replica

import (
	"errors"
	"fmt"
	"math"

	"github.com/cairnkv/cairn/raft"
)

// This file is the compaction policy: when the replica snapshots its state
// machine, and how much of the log it keeps behind the snapshot. It runs on
// the run goroutine, after Advance.
//
// The policy bounds the log (Config's comment states the bound;
// docs/storage.md turns it into a bound on the WAL's segments): a snapshot
// is due once SnapshotEvery entries or SnapshotBytes bytes of entry data
// have been applied since the latest one, and compaction then keeps the
// newest CompactionMargin entries before the snapshot, fewer if they hold
// more than CompactionMarginBytes.

// maybeSnapshot snapshots the state machine and compacts the log when the
// policy says a snapshot is due. The data is durable in the snapshot store
// before the log store records it and discards entries, so a crash at any
// point leaves a log that starts at or before a snapshot that exists.
//
// A failure to write the snapshot (or a full disk when recording it) is not
// fatal: the log merely grows, and the snapshot is tried again once the
// policy's amount of entries or bytes has been applied since the failure.
// A log store that fails any other way is: the error wraps ErrLogFailed.
//
// The snapshot is taken on the run goroutine, which pauses the group's
// progress on this replica while it is written; a state machine with
// copy-on-write snapshots will let it move off the run goroutine later.
func (r *Replica) maybeSnapshot() error {
	if r.applied <= r.snapIndex || !r.snapshotDue() {
		return nil
	}
	meta := raft.SnapshotMeta{Index: r.applied, Term: r.appliedTerm, ConfState: r.conf}
	err := r.snapshot(meta)
	if errors.Is(err, ErrLogFailed) {
		return err
	}
	if err != nil {
		r.logger.Warn("snapshot failed; the log grows until the next attempt", "term", uint64(r.term), "index", uint64(meta.Index), "err", err)
		r.snapFailed = true
		r.snapFailedIndex, r.snapFailedBytes = r.applied, r.sinceSnapBytes
		return nil
	}
	r.logger.Debug("snapshot taken", "term", uint64(r.term), "index", uint64(meta.Index))
	return nil
}

// snapshotDue reports whether the policy calls for a snapshot now: enough
// entries or bytes applied since the latest snapshot, or, after a failed
// attempt, since that attempt.
func (r *Replica) snapshotDue() bool {
	entries, bytes := uint64(r.applied-r.snapIndex), r.sinceSnapBytes
	if r.snapFailed {
		entries, bytes = uint64(r.applied-r.snapFailedIndex), r.sinceSnapBytes-r.snapFailedBytes
	}
	return entries >= r.cfg.SnapshotEvery || bytes >= r.cfg.SnapshotBytes
}

func (r *Replica) snapshot(meta raft.SnapshotMeta) error {
	sink, err := r.cfg.Snapshots.Create(meta)
	if err != nil {
		return err
	}
	if err := r.cfg.StateMachine.Snapshot(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("state machine: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	// The log keeps every entry the state machine may lose in a crash:
	// nothing above its durable index is discarded (restart.go starts a
	// state machine that persists its applied index where it is, and the
	// log must hold what follows). The snapshot bounds it too: compaction
	// never passes meta.Index, which is durable in the snapshot store.
	compactTo := min(r.compactionPoint(meta.Index), r.syncStateMachine())
	if err := r.cfg.Log.Compact(meta, compactTo); err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("record snapshot %d: %w", meta.Index, err)
		}
		return fmt.Errorf("%w: record snapshot %d and compact to %d: %w", ErrLogFailed, meta.Index, compactTo, err)
	}
	r.snapIndex, r.sinceSnapBytes, r.snapFailed = meta.Index, 0, false
	if err := r.cfg.Snapshots.Prune(meta.Index); err != nil {
		r.logger.Warn("pruning snapshots", "term", uint64(r.term), "err", err)
	}
	return nil
}

// syncStateMachine makes the state machine's applied state durable, if it
// persists lazily (Syncer), and returns the index up to which it is
// durable: the log may be compacted no further. A failed Sync is not
// fatal (the log is the source of truth, and still holds everything since
// the last index the state machine made durable); the log is then
// compacted no further than that index, and the next snapshot tries
// again. A state machine without Syncer counts as durable up to applied.
func (r *Replica) syncStateMachine() raft.Index {
	s, ok := r.cfg.StateMachine.(Syncer)
	if !ok {
		return r.applied
	}
	idx, err := s.Sync()
	if err != nil {
		r.logger.Warn("state machine sync failed: the log is compacted no further than its last durable index",
			"term", uint64(r.term), "durable", uint64(r.durable), "applied", uint64(r.applied), "err", err)
		return r.durable
	}
	r.durable = max(r.durable, min(idx, r.applied))
	return r.durable
}

// compactionPoint returns the index to compact the log to for a snapshot
// at snapIndex: the log keeps the newest CompactionMargin entries up to
// snapIndex, fewer if their data exceeds CompactionMarginBytes.
func (r *Replica) compactionPoint(snapIndex raft.Index) raft.Index {
	to := snapIndex - min(snapIndex, raft.Index(r.cfg.CompactionMargin))
	first, err := r.cfg.Log.FirstIndex()
	if err != nil {
		return to
	}
	lo := max(to+1, first)
	if lo > snapIndex {
		return to // the margin is compacted already
	}
	// A copy of at most CompactionMargin entry headers; the data is shared.
	ents, err := r.cfg.Log.Entries(lo, snapIndex+1, math.MaxUint64)
	if err != nil {
		return to
	}
	var size uint64
	kept := 0
	for i := len(ents) - 1; i >= 0; i-- {
		size += uint64(len(ents[i].Data))
		if size > r.cfg.CompactionMarginBytes {
			break
		}
		kept++
	}
	return snapIndex - raft.Index(kept)
}

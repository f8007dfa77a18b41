package replica

import (
	"fmt"
	"io"

	"github.com/cairnkv/cairn/raft"
)

// This file is where a replica starts: which snapshot (if any) it restores
// before it creates its Raft node, and at which applied index the node
// starts. It runs in New, before the run goroutine.
//
// The log store holds everything committed after its latest snapshot S,
// and some entries before it (the compaction margin). The state machine is
// either empty (an in-memory one knows nothing after a restart), or, when
// it persists its applied index (AppliedIndexer), at some index A of the
// same committed history: what survived of what it applied.
//
//   - A >= S: the state machine already reflects everything the snapshot
//     does, and more. Restoring S would only take it back to S; the
//     replica starts at A instead, and the node hands it the committed
//     entries after A, which the log holds: A is at most the log's last
//     index, because the replica persists every entry before applying it
//     (a state machine ahead of the log means the log was lost or
//     replaced, and New refuses to start with ErrDataCorrupt).
//   - A < S, and the log still holds (A, S] with no entry for the state
//     machine among them (only no-ops and configuration entries: a
//     snapshot taken right after a new leader's no-op): the state machine
//     is in S's state already. The replica starts at S, without a restore.
//   - A < S otherwise (or an in-memory state machine): the replica
//     restores S and starts there.
//
// Either way, each committed entry's effects are in the state machine
// exactly once: those at or below the starting point through the state
// it starts from, the others applied once, in order, by the run goroutine.
// For a state machine that persists lazily, as kv's does, compaction
// syncs it first and discards nothing past its durable index (Syncer), so
// a crash leaves A in one of the first two cases; the restore is left for
// a state machine whose data was lost, or that failed to sync.
//
// A snapshot that is not restored is still read to its end once, so that a
// checksumming snapshot store finds damage at start (docs/storage.md).

// findStart restores the state machine if it must and sets the applied
// index, term and configuration the node starts from.
func (r *Replica) findStart() error {
	snap, err := r.cfg.Log.Snapshot()
	if err != nil {
		return fmt.Errorf("replica: read snapshot metadata: %w", err)
	}
	if ai, ok := r.cfg.StateMachine.(AppliedIndexer); ok {
		switch idx := ai.AppliedIndex(); {
		case idx > 0 && idx >= snap.Index:
			return r.startAt(idx, snap)
		case !snap.IsEmpty() && r.onlyControlEntries(idx, snap.Index):
			// Nothing between idx and the snapshot changes the state
			// machine (a snapshot taken right after a leader's no-op,
			// say): it is in the snapshot's state already.
			return r.startAt(snap.Index, snap)
		case !snap.IsEmpty():
			r.logger.Info("state machine is behind the latest snapshot: restoring it",
				"applied", uint64(idx), "snapshot", uint64(snap.Index))
		}
	}
	if snap.IsEmpty() {
		return nil
	}
	return r.restoreStateMachine(snap)
}

// startAt starts the replica at index idx, which the state machine has
// applied, without restoring it: idx is at or past the log's snapshot
// snap. The term and configuration in force at idx come from the log.
func (r *Replica) startAt(idx raft.Index, snap raft.SnapshotMeta) error {
	last, err := r.cfg.Log.LastIndex()
	if err != nil {
		return fmt.Errorf("replica: read the log store: %w", err)
	}
	if idx > last {
		return fmt.Errorf("%w: the state machine has applied entry %d, but the log ends at %d: "+
			"the log was lost or replaced while the state machine kept its data (wipe both, or restore both)",
			ErrDataCorrupt, idx, last)
	}
	if !snap.IsEmpty() {
		// Not restored, but checked all the same: a damaged snapshot must
		// stop the replica now (docs/storage.md, recovery rules), not
		// fail every transfer to a follower later.
		if err := r.verifySnapshot(snap); err != nil {
			return err
		}
	}
	term := snap.Term
	if idx > snap.Index {
		if term, err = r.cfg.Log.Term(idx); err != nil {
			return fmt.Errorf("replica: read the term of applied entry %d: %w", idx, err)
		}
	}
	// The configuration in force at idx: the snapshot's, changed by the
	// configuration entries after it. The scan also counts the entry data
	// applied since the snapshot, for the compaction policy.
	conf, since := snap.ConfState, uint64(0)
	for lo := snap.Index + 1; lo <= idx; {
		ents, err := r.cfg.Log.Entries(lo, idx+1, 4<<20)
		if err != nil {
			return fmt.Errorf("replica: read entries [%d, %d] to start at the state machine's applied index: %w", lo, idx, err)
		}
		for i := range ents {
			e := &ents[i]
			if e.Type == raft.EntryConfChange {
				if conf, err = raft.UnmarshalConfState(e.Data); err != nil {
					return fmt.Errorf("replica: configuration entry %d: %w", e.Index, err)
				}
			}
			since += uint64(len(e.Data))
		}
		lo = ents[len(ents)-1].Index + 1
	}
	r.applied, r.appliedTerm, r.conf = idx, term, conf
	r.snapIndex, r.sinceSnapBytes = snap.Index, since
	r.logger.Info("starting at the state machine's applied index",
		"applied", uint64(idx), "applied_term", uint64(term), "snapshot", uint64(snap.Index))
	return nil
}

// onlyControlEntries reports whether the log holds every entry in (from,
// to] and none of them reaches the state machine (no-ops and
// configuration entries only). It stops at the first entry that does.
func (r *Replica) onlyControlEntries(from, to raft.Index) bool {
	for lo := from + 1; lo <= to; {
		ents, err := r.cfg.Log.Entries(lo, to+1, 1<<20)
		if err != nil {
			return false // compacted away, or unreadable: restore instead
		}
		for i := range ents {
			if ents[i].Type == raft.EntryNormal {
				return false
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return true
}

// verifySnapshot reads the data of snapshot meta to its end, which makes a
// checksumming store (snap.Reader) check it.
func (r *Replica) verifySnapshot(meta raft.SnapshotMeta) error {
	data, err := r.cfg.Snapshots.Open(meta)
	if err != nil {
		return fmt.Errorf("open snapshot %d: %w", meta.Index, err)
	}
	_, err = io.Copy(io.Discard, data)
	if cerr := data.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("verify snapshot %d: %w", meta.Index, err)
	}
	return nil
}

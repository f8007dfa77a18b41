package replica

import (
	"io"

	"github.com/cairnkv/cairn/raft"
)

// StateMachine is the application a replica keeps consistent with its
// group: every replica applies the same commands in the same order, so
// every replica's state machine goes through the same states.
//
// Apply, Snapshot and Restore are called from the replica's run goroutine
// only, one at a time. A state machine that is also read by other
// goroutines (a linearizable read after Replica.ReadIndex, say) must guard
// its own state.
type StateMachine interface {
	// Apply applies committed commands, in log order, and returns one
	// result per entry; the proposer of each entry receives its result
	// from Propose. Only EntryNormal entries reach Apply (the replica
	// handles no-ops and configuration entries itself), and each entry's
	// Index and Term are set. Apply must be deterministic. A command that
	// fails on its own terms (a failed compare-and-swap, say) reports it
	// in its result; a non-nil error means the state machine itself is
	// broken, and stops the replica.
	Apply(entries []raft.Entry) ([]any, error)

	// Snapshot writes the state machine's current state, which reflects
	// exactly the entries applied so far, to w. The data may be large: it
	// is streamed, never required to fit in one slice.
	Snapshot(w io.Writer) error

	// Restore replaces the state machine's whole state with the one a
	// Snapshot wrote, read from r.
	Restore(r io.Reader) error
}

// AppliedIndexer is implemented by a state machine that persists its
// applied index with its data (as kv's Pebble engine does, in the same
// atomic batch). AppliedIndex returns the index of the last entry whose
// effects the state machine holds: after a restart, whatever survived.
//
// A replica whose state machine implements it starts there (see "Restart"
// in doc.go): it neither restores a snapshot the state machine has already
// passed nor hands Apply an entry at or below AppliedIndex again. Entries
// that reach the state machine only through the replica (no-ops and
// configuration entries) do not move AppliedIndex, so it may trail the
// replica's own applied index by a few of them; they are simply handled
// again after a restart.
//
// Only entries the replica handed to Apply, or a Restore, may move it;
// it must never run ahead of them. It is called by New before the run
// goroutine starts.
type AppliedIndexer interface {
	AppliedIndex() raft.Index
}

// Syncer is implemented by a state machine that persists what it applies
// lazily (kv commits without fsync): its durable applied index may lag
// AppliedIndex, and a crash may take it back to that durable index.
// Sync makes everything applied so far durable and returns the applied
// index that now is.
//
// The replica calls it, on its run goroutine, before it compacts its log,
// and never discards an entry above the index it returned (compaction.go):
// whatever a crash takes away from the state machine is still in the log
// (or in the snapshot the log starts at) to be applied again. A state
// machine that implements AppliedIndexer but not Syncer is taken to make
// everything durable as it applies it.
type Syncer interface {
	Sync() (raft.Index, error)
}

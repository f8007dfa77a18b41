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

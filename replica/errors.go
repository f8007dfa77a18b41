package replica

import (
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/raft"
)

// Errors returned by a Replica. Callers branch on them with errors.Is; the
// returned errors usually wrap them with detail.
var (
	// ErrStopped is returned by every call on a replica that has stopped,
	// and fails every future still pending when it stops. When the replica
	// stopped because of a fatal error (a failed disk write, a broken state
	// machine), the error wraps that cause too.
	ErrStopped = errors.New("replica: stopped")

	// ErrNotLeader is wrapped by the *NotLeaderError that Propose and
	// TransferLeadership return on a replica that does not lead its group.
	ErrNotLeader = errors.New("replica: not the leader")

	// ErrNotCommitted is returned for a proposal that was appended to the
	// log but will never be applied: another leader's entry took its place
	// (the entry at its index was committed with another term), or an
	// entry of a later term was committed before its index, so that no
	// entry of its term can ever be committed there. The command had no
	// effect; it is safe to propose it again.
	ErrNotCommitted = errors.New("replica: proposal dropped: not committed")

	// ErrOutcomeUnknown is returned for a proposal whose index was folded
	// into a snapshot received from the leader before this replica could
	// apply the entry itself: it may or may not have been committed, and
	// its result is not available. (A context that expires while waiting
	// leaves the outcome unknown too, but returns ctx.Err().)
	ErrOutcomeUnknown = errors.New("replica: proposal outcome unknown")

	// ErrEmptyCommand is returned by Propose for a command of no bytes.
	ErrEmptyCommand = errors.New("replica: empty command")

	// ErrTransferTimeout is returned by TransferLeadership when the target
	// has not become leader within a few election timeouts (the core gives
	// up on a transfer after one).
	ErrTransferTimeout = errors.New("replica: leadership transfer timed out")

	// ErrSnapshotNotFound is returned by a SnapshotStore's Open for a
	// snapshot it does not hold.
	ErrSnapshotNotFound = errors.New("replica: snapshot not found")

	// ErrSnapshotWithoutData is returned by Step for a MsgSnap: a snapshot
	// message must arrive through StepSnapshot, with its data.
	ErrSnapshotWithoutData = errors.New("replica: MsgSnap must be delivered with its data through StepSnapshot")

	// ErrLogFailed is wrapped by the fatal error of a replica whose
	// LogStore failed (a write or fsync error, say wal.ErrIO): it stopped,
	// because it cannot know what reached the disk, and after a failed
	// fsync the kernel may already have dropped the data. It is the cause
	// that Stop and Err return and that every pending and later call's
	// ErrStopped wraps. The process should exit with this error and be
	// restarted: the restart reads back what the disk really holds.
	ErrLogFailed = errors.New("replica: log store failed")

	// ErrNoSpace is returned by Propose on a leader whose disk is full:
	// the command was refused before it entered the log, and had no
	// effect. Reads keep working, and proposals are accepted again as soon
	// as the leader has written what it held when the disk filled up (it
	// retries at every tick). A LogStore may also return it (or an error
	// wrapping syscall.ENOSPC, as *wal.WAL does) from Save and Compact to
	// say that nothing was written for lack of space.
	ErrNoSpace = errors.New("replica: no space left on the device")

	// ErrDataCorrupt is wrapped by OpenDisk's error when the data directory
	// holds damaged data (a checksum failure before the log's tail, a gap
	// between segments, a damaged snapshot, a snapshot the log needs but
	// the directory lacks). The replica must not start on it: it could
	// have acknowledged entries that are gone. The error names the file
	// and offset; docs/storage.md gives the repair path.
	//
	// New returns it too for a state machine that has applied entries its
	// log does not hold (AppliedIndexer past the log's last index): the
	// log was lost or replaced while the state machine kept its data.
	ErrDataCorrupt = errors.New("replica: data directory is damaged")

	// ErrInvalidConfig is wrapped by every error Config.Validate returns.
	ErrInvalidConfig = errors.New("replica: invalid config")
)

// NotLeaderError is returned by calls that only a leader can serve. It
// wraps ErrNotLeader and carries the replica's best guess of who leads.
type NotLeaderError struct {
	// Leader is the leader this replica knows of, or raft.None when it
	// knows of none (an election is under way, or it is cut off).
	Leader raft.NodeID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == raft.None {
		return "replica: not the leader (leader unknown)"
	}
	return fmt.Sprintf("replica: not the leader (try node %d)", e.Leader)
}

// Unwrap makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

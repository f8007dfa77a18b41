package replica

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cairnkv/cairn/raft"
)

// GroupID names a Raft group (one shard's replicas). It only labels logs
// for now; the sharding work routes messages by it.
type GroupID uint64

// Config configures one Replica. Zero values take the defaults documented
// on each field (filled in by Validate).
type Config struct {
	// ID is this replica's identity within its group. Required, non-zero.
	ID raft.NodeID
	// Group is the group the replica belongs to (for logs).
	Group GroupID

	// Raft configures the consensus core. Its ID, Storage and Applied are
	// filled in by the replica (from ID, Log, and the state machine's
	// applied index or the latest snapshot: see AppliedIndexer) and must
	// be left zero; its Logger defaults to Logger.
	Raft raft.Config

	// Log is the durable Raft state. Required. For a brand-new group it
	// must hold the bootstrap state (raft.Bootstrap or raft.BootstrapState).
	Log LogStore
	// Snapshots holds snapshot data. Required.
	Snapshots SnapshotStore
	// StateMachine is what the committed commands are applied to.
	// Required. A state machine that persists its applied index should
	// implement AppliedIndexer, and Syncer if it persists lazily.
	StateMachine StateMachine
	// Transport carries messages to peers. Required.
	Transport Transport
	// Ticks is the replica's clock. Required.
	Ticks TickSource

	// The compaction policy. After applying entries, the replica snapshots
	// its state machine and compacts its log when either trigger fires:
	// SnapshotEvery entries, or SnapshotBytes bytes of entry data, applied
	// since the latest snapshot. Compaction keeps a margin of entries behind
	// the snapshot, so that a follower a little behind catches up from the
	// log rather than by a whole snapshot: the newest CompactionMargin
	// entries, fewer if they hold more than CompactionMarginBytes of data.
	//
	// Together they bound the log, which the WAL holds both on disk and in
	// memory: at most SnapshotEvery+CompactionMargin entries and about
	// SnapshotBytes+CompactionMarginBytes of entry data (plus one applied
	// batch of overshoot and the entries appended but not yet applied).
	// docs/storage.md turns that into a bound on the WAL's segments.

	// SnapshotEvery is how many applied entries trigger a snapshot.
	// Default 10000.
	SnapshotEvery uint64
	// SnapshotBytes is how many bytes of applied entry data (Entry.Data)
	// trigger a snapshot. Default 64 MiB.
	SnapshotBytes uint64
	// CompactionMargin is how many entries before a snapshot's index stay
	// in the log after compaction. Default SnapshotEvery/10. At most
	// SnapshotEvery.
	CompactionMargin uint64
	// CompactionMarginBytes caps the entry data the margin keeps: the
	// margin is the newest entries before the snapshot that fit in it.
	// Default SnapshotBytes/8. At most SnapshotBytes.
	CompactionMarginBytes uint64

	// MaxProposalBatch bounds how many queued proposals the replica hands
	// the core in one Propose call. Default 1024.
	MaxProposalBatch int
	// MaxStepBatch bounds how many queued inbound messages the replica
	// steps before it processes a Ready; it is also the inbound queue's
	// capacity. Default 256.
	MaxStepBatch int

	// Logger receives the replica's log lines, with node and group
	// attributes added. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultSnapshotEvery    = 10000
	DefaultSnapshotBytes    = 64 << 20
	DefaultMaxProposalBatch = 1024
	DefaultMaxStepBatch     = 256
)

// Validate fills in defaults and reports every problem it finds, each
// wrapping ErrInvalidConfig (the core's own checks happen in New).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.ID == raft.None {
		bad("ID must not be zero")
	}
	if c.Raft.ID != raft.None {
		bad("Raft.ID is set from ID; leave it zero")
	}
	if c.Raft.Storage != nil {
		bad("Raft.Storage is set from Log; leave it nil")
	}
	if c.Raft.Applied != 0 {
		bad("Raft.Applied is set from the state machine's applied index or the latest snapshot; leave it zero")
	}
	if c.Log == nil {
		bad("Log is required")
	}
	if c.Snapshots == nil {
		bad("Snapshots is required")
	}
	if c.StateMachine == nil {
		bad("StateMachine is required")
	}
	if c.Transport == nil {
		bad("Transport is required")
	}
	if c.Ticks == nil {
		bad("Ticks is required")
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.CompactionMargin == 0 {
		c.CompactionMargin = c.SnapshotEvery / 10
	}
	if c.CompactionMarginBytes == 0 {
		c.CompactionMarginBytes = c.SnapshotBytes / 8
	}
	if c.CompactionMargin > c.SnapshotEvery {
		bad("CompactionMargin %d exceeds SnapshotEvery %d: the margin would hold more of the log than a snapshot interval", c.CompactionMargin, c.SnapshotEvery)
	}
	if c.CompactionMarginBytes > c.SnapshotBytes {
		bad("CompactionMarginBytes %d exceeds SnapshotBytes %d: the margin would hold more of the log than a snapshot interval", c.CompactionMarginBytes, c.SnapshotBytes)
	}
	if c.MaxProposalBatch == 0 {
		c.MaxProposalBatch = DefaultMaxProposalBatch
	}
	if c.MaxProposalBatch < 0 {
		bad("MaxProposalBatch %d is negative", c.MaxProposalBatch)
	}
	if c.MaxStepBatch == 0 {
		c.MaxStepBatch = DefaultMaxStepBatch
	}
	if c.MaxStepBatch < 0 {
		bad("MaxStepBatch %d is negative", c.MaxStepBatch)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

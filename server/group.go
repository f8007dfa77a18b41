package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// The kv state machine gives the replica its durable applied index.
var (
	_ replica.AppliedIndexer = (*kv.StateMachine)(nil)
	_ replica.Syncer         = (*kv.StateMachine)(nil)
)

// groupSpec is one group of the cluster: its ID, the key range it serves
// and its initial voters.
type groupSpec struct {
	id replica.GroupID
	// [start, end) is the group's key range; a nil end means no bound.
	start, end []byte
	voters     []raft.NodeID
}

// contains reports whether key is in the group's range.
func (s *groupSpec) contains(key []byte) bool {
	return bytes.Compare(key, s.start) >= 0 && (s.end == nil || bytes.Compare(key, s.end) < 0)
}

// DefaultGroup is the group that holds the whole key space until the
// placement work splits it.
const DefaultGroup replica.GroupID = 1

// placement is the cluster's table of groups. For now it is one group,
// DefaultGroup, over the whole key space, with every node a voter; the
// placement controller (a Raft group of its own, not written yet) will
// replace this table. Nothing else in the server assumes one group.
func placement(cfg *Config) []groupSpec {
	return []groupSpec{{id: DefaultGroup, voters: cfg.voters()}}
}

// group is one group's replica on this node and what it is made of. Its
// fields are set by openGroup and never change; each component guards its
// own state.
type group struct {
	spec   groupSpec
	dir    string
	logger *slog.Logger
	disk   *replica.Disk
	sm     *kv.StateMachine
	ep     *grpcnet.Group
	r      *replica.Replica
}

// groupDir is where group id keeps its durable state:
//
//	<data>/groups/<id>/wal/   the replica's write-ahead log (replica.OpenDisk)
//	<data>/groups/<id>/snap/  its snapshot files
//	<data>/groups/<id>/kv/    the state machine's engine (kv.Open)
//
// Wiping <data>/groups/<id> (the repair path of docs/storage.md) wipes all
// three together.
func groupDir(dataDir string, id replica.GroupID) string {
	return filepath.Join(dataDir, "groups", strconv.FormatUint(uint64(id), 10))
}

// openGroup opens (creating if need be) the group's durable state and
// state machine, and starts its replica on the node's transport and clock.
// bootstrap says to write a brand-new group's first entry if its log is
// empty.
func (n *Node) openGroup(spec groupSpec, bootstrap bool) (_ *group, err error) {
	cfg := &n.cfg
	g := &group{
		spec:   spec,
		dir:    groupDir(cfg.DataDir, spec.id),
		logger: n.logger.With(slog.Uint64("group", uint64(spec.id))),
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// With fault injection, the log and snapshot files go through the
	// node's storage failpoints (SetDiskFaults); the engine does not.
	opts := replica.DiskOptions{FS: n.diskFS(), Logger: g.logger}
	if bootstrap {
		opts.Bootstrap = spec.voters
	}
	if g.disk, err = replica.OpenDisk(g.dir, opts); err != nil {
		if errors.Is(err, replica.ErrDataCorrupt) {
			return nil, fmt.Errorf("%w: group %d: %w", ErrDataDirCorrupt, spec.id, err)
		}
		return nil, fmt.Errorf("server: group %d: %w", spec.id, err)
	}
	undo = append(undo, func() { _ = g.disk.Close() })
	if g.disk.Bootstrapped {
		g.logger.Info("bootstrapped a new group", "voters", fmt.Sprint(spec.voters))
	}

	if g.sm, err = kv.Open(kv.Config{
		Dir:          filepath.Join(g.dir, "kv"),
		CacheSize:    cfg.KVCacheSize,
		MaxScanLimit: cfg.MaxScanLimit,
		Logger:       g.logger,
	}); err != nil {
		return nil, fmt.Errorf("server: group %d: %w", spec.id, err)
	}
	undo = append(undo, func() { _ = g.sm.Close() })

	if g.ep, err = n.transport.Register(grpcnet.GroupID(spec.id), nil); err != nil {
		return nil, fmt.Errorf("server: group %d: %w", spec.id, err)
	}
	undo = append(undo, func() { n.transport.Unregister(grpcnet.GroupID(spec.id)) })

	// The replica starts where the engine is: kv.StateMachine persists its
	// applied index (replica.AppliedIndexer), so a restart neither restores
	// a snapshot the engine has passed nor re-applies what it holds; and it
	// syncs lazily (replica.Syncer), so compaction never discards an entry
	// the engine has not made durable.
	g.r, err = replica.New(replica.Config{
		ID:    cfg.NodeID,
		Group: spec.id,
		Raft: raft.Config{
			ElectionTick:       cfg.ElectionTicks,
			HeartbeatTick:      cfg.HeartbeatTicks,
			MaxClockDriftTicks: cfg.MaxClockDriftTicks,
		},
		Log:              g.disk.Log,
		Snapshots:        g.disk.Snapshots,
		StateMachine:     g.sm,
		Transport:        g.ep,
		Ticks:            n.ticker,
		SnapshotEvery:    cfg.SnapshotEvery,
		SnapshotBytes:    cfg.SnapshotBytes,
		CompactionMargin: cfg.CompactionMargin,
		Logger:           cfg.Logger, // the replica adds node and group
	})
	if err != nil {
		if errors.Is(err, replica.ErrDataCorrupt) {
			return nil, fmt.Errorf("%w: group %d: %w", ErrDataDirCorrupt, spec.id, err)
		}
		return nil, fmt.Errorf("server: group %d: %w", spec.id, err)
	}
	g.ep.Attach(g.r)
	g.logger.Info("group started", "applied", uint64(g.sm.AppliedIndex()), "fresh", g.disk.Fresh)
	return g, nil
}

// stopReplica detaches the replica from the transport and stops it,
// failing whatever is pending; it returns the replica's fatal error, if
// it had one.
func (g *group) stopReplica() error {
	g.ep.Attach(nil)
	return g.r.Stop()
}

// closeStorage closes the engine (syncing what was applied) and the log,
// once the replica has stopped.
func (g *group) closeStorage() error {
	return errors.Join(g.sm.Close(), g.disk.Close())
}

package rafttest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/storage/wal"
)

// This file is the WAL storage mode (Options.Storage == WALStorage): each
// node's disk is a real *wal.WAL and a snap.Store on a vfs.MemFS of its
// own, written exactly as a real driver writes them, and a crash is a power
// loss of that filesystem.
//
// # The model
//
// The simulator still keeps, for each node, the mirror of its durable state
// that the invariant checks read (diskLog, term, vote, commit, snapshot):
// the state the node has acknowledged. It is updated when a write returns,
// as in the memory mode, so that a vote or an acknowledgement sent after
// Save returned vouches for it. The real files are what a crash leaves:
//
//   - Persisting a Ready is one wal.Save(HardState, Entries, Snapshot,
//     MustSync). A snapshot received with a MsgSnap is first written to the
//     snap.Store (temporary file, sync, rename, directory sync), then
//     recorded by the Save, then older snapshot files are pruned.
//   - Taking a snapshot writes the state machine to the snap.Store, then
//     wal.Compact(meta, applied-SnapshotKeep), then prunes.
//   - Any crash of the node (a Fault, Sim.Crash, a schedule's crash, or a
//     disk fault) is a power loss: the MemFS is replaced by its crash image
//     (vfs.MemFS.Crash: synced data survives; of the unsynced writes a
//     random prefix survives, the last one torn at a random byte; unsynced
//     directory operations may be undone), and the WAL and the snapshot
//     store are reopened from it at once, as the restarted process will
//     find them. The node stays down until its restart.
//   - Recovery is checked: the WAL must open (a torn tail is cut off, never
//     refused), and what it holds must be exactly the acknowledged state
//     (same compaction point, same entries by chain hash, same term, vote
//     and snapshot; a commit index no lower than the last synced one), or,
//     when the crash hit a write in flight, that state with the write
//     applied: a batch is all or nothing, and nothing acknowledged is ever
//     lost. The snapshot the WAL names must be in the snapshot store, intact
//     and equal to the one taken. Anything else fails the run.
//
// # Disk faults
//
// Every mutating operation on a node's MemFS (create, write, sync,
// directory sync, rename, remove, truncate, preallocate) passes through an
// injector that counts it and may, before it runs:
//
//   - crash the machine (DiskCrash): the operation and everything after it
//     never happen. Crashing before operation k for every k is crashing at
//     every write and sync point, and the unsynced writes before it are
//     torn at random: a crash mid-write.
//   - fail it with EIO (DiskEIO). The storage returns an error and the node
//     halts, as a real driver exits on a failed write or fsync: in the Sim
//     that is a power loss, so what the failed sync covered is gone (MemFS
//     forfeits it), and never treated as success.
//
// DiskFaults arms random crashes (one in the next CrashEvery operations of
// each node, re-armed after each recovery, some during recovery itself)
// and I/O errors; Sim.DiskHook lets a test choose operation by operation.

// StorageKind selects what a node's disk is.
type StorageKind uint8

const (
	// MemStorage: a raft.MemoryStorage that holds exactly what the driver
	// persisted; a crash loses nothing written. Fast; the default.
	MemStorage StorageKind = iota
	// WALStorage: a wal.WAL and a snap.Store on a crashable vfs.MemFS per
	// node; a crash loses exactly the unsynced data.
	WALStorage
)

func (k StorageKind) String() string {
	switch k {
	case MemStorage:
		return "mem"
	case WALStorage:
		return "wal"
	}
	return fmt.Sprintf("StorageKind(%d)", uint8(k))
}

// DiskFaults crashes nodes at disk operations (WALStorage only).
type DiskFaults struct {
	// CrashEvery arms, on every node, a power loss before one of its next
	// CrashEvery disk operations (chosen uniformly), armed again after each
	// recovery. Zero: none.
	CrashEvery int
	// EIOEvery likewise arms an EIO on one of a node's next EIOEvery disk
	// operations, which halts the node. Zero: none.
	EIOEvery int
	// DuringRecovery is the chance that a recovery (reopening the WAL and
	// the snapshot store after a power loss) is itself cut by another power
	// loss at one of its first operations.
	DuringRecovery float64
	// RestartAfter is how many ticks a node stays down after a disk fault
	// (a crash or a halt on an I/O error); negative: until the test
	// restarts it.
	RestartAfter int
}

// DiskAction is what Sim.DiskHook decides for one disk operation.
type DiskAction uint8

const (
	// DiskOK lets the operation run.
	DiskOK DiskAction = iota
	// DiskCrash cuts the power before the operation runs.
	DiskCrash
	// DiskEIO fails the operation with EIO; the node halts.
	DiskEIO
)

// Paths on each node's filesystem.
const (
	walDir  = "/data/wal"
	snapDir = "/data/snap"
)

// defaultSegmentSize is the WAL segment size in the Sim: small, so that
// segments are rolled, checkpointed and released all the time.
const defaultSegmentSize = 16 << 10

// maxRecoveryCrashes bounds how many random power losses in a row
// (DiskFaults.DuringRecovery) may cut one recovery short, and
// maxRecoveryAttempts how many faults of any kind (a DiskHook's included)
// before the Sim gives up on the node.
const (
	maxRecoveryCrashes  = 3
	maxRecoveryAttempts = 100
)

// nodeDisk is a node's durable state in WALStorage mode.
type nodeDisk struct {
	// fs is the node's filesystem; a power loss replaces it with its crash
	// image.
	fs    *vfs.MemFS
	wal   *wal.WAL
	snaps *snap.Store
	// inject is the injector installed on fs (and on every crash image).
	inject vfs.Injector

	// ops counts the mutating operations on the node's filesystems.
	ops uint64
	// crashAt arms a power loss before operation number crashAt, and eioAt
	// an EIO on operation number eioAt (0: none).
	crashAt, eioAt uint64
	// image is set by the injector when it cut the power: the crash image,
	// which the operation in progress (and the storage call around it)
	// fails on.
	image *vfs.MemFS
	// injectedErr is set when the injector failed an operation with EIO.
	injectedErr bool

	// inflight is the write in progress: if a power loss cuts it, the WAL
	// may recover with or without it.
	inflight inflightWrite
	// syncedCommit is the commit index as of the last synced write: a
	// crash may lose a commit index saved without sync, never this one.
	syncedCommit raft.Index
}

// inflightWrite is a write to the WAL in progress: either a Ready's
// persist step (a copy of the Ready: a pointer would make every Ready
// escape to the heap, in the memory mode too) or a snapshot's compaction.
type inflightWrite struct {
	isReady   bool
	rd        raft.Ready
	snap      *StateMachine
	compactTo raft.Index
}

func (w *inflightWrite) isZero() bool { return !w.isReady && w.snap == nil }

func (s *Sim) walOptions(n *simNode, fs *vfs.MemFS) wal.Options {
	seg := s.opts.SegmentSize
	if seg == 0 {
		seg = defaultSegmentSize
	}
	return wal.Options{FS: fs, SegmentSize: seg, Logger: s.logger.With("node", n.id)}
}

// newDisk creates n's disk: a fresh filesystem holding the bootstrap state.
func (s *Sim) newDisk(n *simNode) {
	// The filesystem's own randomness (how crashes tear writes) and the
	// disk faults' draw from streams of their own, so that the Sim's main
	// stream is the memory mode's until the first disk fault.
	d := &nodeDisk{fs: vfs.NewMem(s.opts.Seed*0x9e3779b97f4a7c15 + uint64(n.id))}
	n.disk = d
	w, err := wal.Open(walDir, s.walOptions(n, d.fs))
	if err != nil {
		s.fail("node %d: create WAL: %v", n.id, err)
		return
	}
	hs, ents := raft.BootstrapState(s.ids...)
	if err := w.Save(hs, ents, nil, true); err != nil {
		s.fail("node %d: bootstrap WAL: %v", n.id, err)
		return
	}
	st, err := snap.Open(snapDir, snap.Options{FS: d.fs, Logger: s.logger.With("node", n.id)})
	if err != nil {
		s.fail("node %d: create snapshot store: %v", n.id, err)
		return
	}
	d.wal, d.snaps = w, st
	d.syncedCommit = hs.Commit
	d.inject = func(op vfs.Op) error { return s.diskOp(n, op) }
	d.fs.SetInjector(d.inject)
	s.armDisk(n)
}

// armDisk arms n's next random power loss and I/O error, if DiskFaults
// asks for them.
func (s *Sim) armDisk(n *simNode) {
	d := n.disk
	d.crashAt, d.eioAt = 0, 0
	if every := s.diskFaults.CrashEvery; every > 0 {
		d.crashAt = d.ops + 1 + uint64(s.diskRng.IntN(every))
	}
	if every := s.diskFaults.EIOEvery; every > 0 {
		d.eioAt = d.ops + 1 + uint64(s.diskRng.IntN(every))
	}
}

// diskOp is the injector of n's filesystem: it sees every mutating
// operation before it runs.
func (s *Sim) diskOp(n *simNode, op vfs.Op) error {
	d := n.disk
	d.ops++
	s.stats.DiskOps++
	action := DiskOK
	switch {
	case d.crashAt != 0 && d.ops >= d.crashAt:
		d.crashAt = 0
		action = DiskCrash
	case d.eioAt != 0 && d.ops >= d.eioAt:
		d.eioAt = 0
		action = DiskEIO
	}
	if s.DiskHook != nil {
		if a := s.DiskHook(n.id, op, s.stats.DiskOps); a != DiskOK {
			action = a
		}
	}
	switch action {
	case DiskCrash:
		s.stats.DiskCrashes++
		s.stats.DiskCrashesBefore[op.Kind&15]++
		s.record(traceEvent{kind: evFault, node: n.id, note: "power loss before " + op.String()})
		d.image = d.fs.Crash()
	case DiskEIO:
		s.stats.DiskErrors++
		s.record(traceEvent{kind: evFault, node: n.id, note: "EIO on " + op.String()})
		d.injectedErr = true
		return syscall.EIO
	}
	return nil
}

// diskFailed handles an error from n's storage, or a power loss during a
// storage call (whatever the call returned: the process died in it). A
// power loss the injector caused, or an injected I/O error, stops the node
// (a real driver exits on any storage error; the Sim then restarts it from
// what its disk holds). Any other error is a bug, in the storage or in
// what the core asked of it.
func (s *Sim) diskFailed(n *simNode, what string, err error) {
	d := n.disk
	switch {
	case d.image != nil:
	case d.injectedErr:
		s.stats.DiskHalts++
		s.record(traceEvent{kind: evFault, node: n.id, note: fmt.Sprintf("halt: %s: %v", what, err)})
	default:
		s.fail("node %d: %s: %v", n.id, what, err)
		return
	}
	d.injectedErr = false
	s.Crash(n.id)
	if s.failed {
		return
	}
	if ra := s.opts.DiskFaults.RestartAfter; ra >= 0 {
		n.restartAt = s.now + uint64(ra) + 1
	}
}

// saveReady is the persist step in WALStorage mode: the snapshot's data to
// the snapshot store (if the Ready installs one), then one Save. It reports
// whether the node is still up.
func (s *Sim) saveReady(n *simNode, rd *raft.Ready) bool {
	d := n.disk
	d.injectedErr = false
	if rd.Snapshot != nil && !s.writeSnapFile(n, *rd.Snapshot, n.incoming[rd.Snapshot.Index]) {
		return false
	}
	// If the power is cut during the Save, recovery may find the batch
	// whole (it is then applied to the mirror, as if Save had returned) or
	// not at all.
	d.inflight = inflightWrite{isReady: true, rd: *rd}
	err := d.wal.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync && !s.opts.walNeverSync)
	ok := err == nil && d.image == nil
	if !ok {
		s.diskFailed(n, "persist ready", err)
	}
	d.inflight = inflightWrite{}
	return ok
}

// afterSave runs once a Ready's Save returned and the mirror is updated:
// it checks the WAL's raft.Storage view against the mirror, then removes
// the snapshot files an installed snapshot made obsolete.
func (s *Sim) afterSave(n *simNode, rd *raft.Ready) {
	d := n.disk
	if !s.walViewMatches(n) {
		return
	}
	if rd.MustSync && !s.opts.walNeverSync {
		d.syncedCommit = n.commit
	}
	if rd.Snapshot != nil {
		if err := d.snaps.Prune(rd.Snapshot.Index); err != nil || d.image != nil {
			s.diskFailed(n, "prune snapshots", err)
		}
	}
}

// snapshotToDisk is maybeSnapshot in WALStorage mode: the state machine to
// the snapshot store, then Compact, then prune; the mirror follows Compact.
func (s *Sim) snapshotToDisk(n *simNode) {
	d := n.disk
	d.injectedErr = false
	data := n.sm.snapshot()
	meta := raft.SnapshotMeta{Index: data.Applied, Term: data.AppliedTerm, ConfState: data.Conf}
	if !s.writeSnapFile(n, meta, data) {
		return
	}
	var to raft.Index
	if keep := raft.Index(s.opts.SnapshotKeep); data.Applied > keep {
		to = data.Applied - keep
	}
	d.inflight = inflightWrite{snap: data, compactTo: to}
	err := d.wal.Compact(meta, to)
	ok := err == nil && d.image == nil
	if !ok {
		s.diskFailed(n, fmt.Sprintf("compact to %d (snapshot %d/%d)", to, meta.Term, meta.Index), err)
	}
	d.inflight = inflightWrite{}
	if !ok {
		return
	}
	s.compactMirror(n, data, to)
	d.syncedCommit = n.commit
	if !s.walViewMatches(n) {
		return
	}
	if err := d.snaps.Prune(meta.Index); err != nil || d.image != nil {
		s.diskFailed(n, "prune snapshots", err)
	}
}

// walViewMatches checks that what n's WAL shows the core (raft.Storage)
// after a write is what was written: the mirror's bounds, last term and
// hard state. It reports false if the run failed.
func (s *Sim) walViewMatches(n *simNode) bool {
	w := n.disk.wal
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	lastTerm, err := w.Term(last)
	hs, _, _ := w.InitialState()
	wantTerm, _ := n.log.termAt(n.log.last())
	if first-1 != n.log.offset || last != n.log.last() || err != nil || lastTerm != wantTerm ||
		hs.Term != n.term || hs.Vote != n.vote || hs.Commit != n.commit {
		s.fail("node %d: after a write its WAL shows log [%d, %d] (last term %d, %v) %s; written: %s",
			n.id, first, last, lastTerm, err, raft.DescribeHardState(hs), s.describeMirror(n))
		return false
	}
	return true
}

// compactMirror records in n's mirror that snapshot data is durable and the
// log compacted up to to.
func (s *Sim) compactMirror(n *simNode, data *StateMachine, to raft.Index) {
	n.snap = data
	n.snaps = append(n.snaps, data)
	if len(n.snaps) > 4 {
		n.snaps = slices.Delete(n.snaps, 0, len(n.snaps)-4)
	}
	if to > n.log.offset {
		n.log.compact(to)
	}
	s.record(traceEvent{kind: evSnapshot, node: n.id, a: uint64(data.Applied)})
}

// writeSnapFile writes data, the state machine at meta, to n's snapshot
// store. It reports whether the node is still up.
func (s *Sim) writeSnapFile(n *simNode, meta raft.SnapshotMeta, data *StateMachine) bool {
	d := n.disk
	w, err := d.snaps.Create(meta)
	if err == nil {
		if _, err = w.Write(data.encode(nil)); err != nil {
			_ = w.Cancel()
		} else {
			err = w.Close()
		}
	}
	if err != nil || d.image != nil {
		s.diskFailed(n, fmt.Sprintf("write snapshot %d/%d", meta.Term, meta.Index), err)
		return false
	}
	return true
}

// powerLoss replaces n's filesystem by its crash image and reopens the WAL
// and the snapshot store from it (the restart's recovery, done at once:
// nothing touches the disk while the node is down), then checks that what
// they hold is what n acknowledged, plus perhaps the write in flight.
func (s *Sim) powerLoss(n *simNode) {
	d := n.disk
	img := d.image
	if img == nil {
		img = d.fs.Crash()
	}
	d.image = nil
	for attempt := 0; ; attempt++ {
		d.fs = img
		img.SetInjector(d.inject)
		d.crashAt, d.eioAt = 0, 0
		if attempt < maxRecoveryCrashes && s.diskFaults.DuringRecovery > 0 && s.diskRng.Float64() < s.diskFaults.DuringRecovery {
			d.crashAt = d.ops + 1 + uint64(s.diskRng.IntN(8))
		}
		d.injectedErr = false
		w, st, err := s.openDisk(n)
		if d.image != nil || (err != nil && d.injectedErr) {
			// Cut short by another power loss, or by an injected error
			// (the process exits; the machine is restarted).
			if attempt >= maxRecoveryAttempts {
				s.fail("node %d: recovery cut short %d times in a row; last: %v", n.id, attempt+1, err)
				return
			}
			s.stats.RecoveryCrashes++
			img = d.image
			if img == nil {
				img = d.fs.Crash()
			}
			d.image = nil
			continue
		}
		if err != nil {
			s.fail("node %d: storage does not reopen after a crash: %v", n.id, err)
			return
		}
		d.wal, d.snaps = w, st
		break
	}
	if d.wal.Recovery().TornBytes > 0 {
		s.stats.TornTails++
		s.record(traceEvent{kind: evFault, node: n.id, note: "recovery: " + d.wal.Recovery().TornReason})
	}
	s.reconcile(n)
	d.inflight = inflightWrite{}
	s.armDisk(n)
}

// openDisk opens n's WAL and snapshot store from its filesystem.
func (s *Sim) openDisk(n *simNode) (*wal.WAL, *snap.Store, error) {
	d := n.disk
	w, err := wal.Open(walDir, s.walOptions(n, d.fs))
	if err != nil {
		return nil, nil, err
	}
	st, err := snap.Open(snapDir, snap.Options{FS: d.fs, Logger: s.logger.With("node", n.id)})
	if err != nil {
		return nil, nil, err
	}
	return w, st, nil
}

// durable is what a reopened WAL holds.
type durable struct {
	offset     raft.Index
	offsetTerm raft.Term
	ents       []raft.Entry
	hs         raft.HardState
	snap       raft.SnapshotMeta
}

func (g *durable) last() raft.Index { return g.offset + raft.Index(len(g.ents)) }

func readDurable(w *wal.WAL) (durable, error) {
	var g durable
	var err error
	if g.hs, _, err = w.InitialState(); err != nil {
		return g, err
	}
	if g.snap, err = w.Snapshot(); err != nil {
		return g, err
	}
	first, err := w.FirstIndex()
	if err != nil {
		return g, err
	}
	last, err := w.LastIndex()
	if err != nil {
		return g, err
	}
	g.offset = first - 1
	if g.offsetTerm, err = w.Term(g.offset); err != nil {
		return g, fmt.Errorf("term of the compaction point %d: %w", g.offset, err)
	}
	if last >= first {
		if g.ents, err = w.Entries(first, last+1, ^uint64(0)); err != nil {
			return g, err
		}
	}
	return g, nil
}

// reconcile checks what n's reopened disk holds against what n
// acknowledged (its mirror), or that plus the write in flight, and resets
// the mirror's volatile parts (commit index, snapshot data) from the disk.
func (s *Sim) reconcile(n *simNode) {
	d := n.disk
	g, err := readDurable(d.wal)
	if err != nil {
		s.fail("node %d: reading the reopened WAL: %v", n.id, err)
		return
	}
	acked := s.describeMirror(n)
	if !d.inflight.isZero() {
		s.stats.CutWrites++
	}
	if why := s.mirrorDiffers(n, &g); why != "" {
		if d.inflight.isZero() {
			s.fail("node %d lost acknowledged state in a crash: %s\nrecovered: %s\nacknowledged: %s", n.id, why, describeDurable(&g), acked)
			return
		}
		// The write in flight survived (whole: a batch is atomic); it is
		// now durable, as if it had returned.
		s.stats.CutWritesKept++
		if in := &d.inflight; in.isReady {
			s.persistMirror(n, &in.rd)
		} else {
			s.compactMirror(n, in.snap, in.compactTo)
		}
		if s.failed {
			return
		}
		if why2 := s.mirrorDiffers(n, &g); why2 != "" {
			s.fail("node %d recovered from a crash a state that is neither what it acknowledged (%s) nor that plus the write in flight (%s)\nrecovered: %s\nacknowledged: %s\nwith the write: %s",
				n.id, why, why2, describeDurable(&g), acked, s.describeMirror(n))
			return
		}
	}
	n.commit, d.syncedCommit = g.hs.Commit, g.hs.Commit
	if g.snap.IsEmpty() {
		n.snap, n.snaps = nil, nil
		return
	}
	sm, err := readSnapFile(d.snaps, g.snap)
	if err != nil {
		s.fail("node %d: the WAL names snapshot %d/%d, but the snapshot store cannot give it: %v", n.id, g.snap.Term, g.snap.Index, err)
		return
	}
	if n.snap == nil || sm.Chain != n.snap.Chain || len(sm.Values) != len(n.snap.Values) || !sm.Conf.Equal(n.snap.Conf) {
		s.fail("node %d: snapshot %d/%d read back after a crash differs from the one stored", n.id, g.snap.Term, g.snap.Index)
		return
	}
	n.snap, n.snaps = sm, []*StateMachine{sm}
}

// mirrorDiffers says how g differs from n's mirror of its durable state,
// or returns "" if it does not.
func (s *Sim) mirrorDiffers(n *simNode, g *durable) string {
	l := &n.log
	var snapIndex raft.Index
	var snapTerm raft.Term
	if n.snap != nil {
		snapIndex, snapTerm = n.snap.Applied, n.snap.AppliedTerm
	}
	switch {
	case g.offset != l.offset || g.offsetTerm != l.offsetTerm:
		return fmt.Sprintf("log starts after %d/%d, not %d/%d", g.offsetTerm, g.offset, l.offsetTerm, l.offset)
	case g.last() != l.last():
		return fmt.Sprintf("last index %d, not %d", g.last(), l.last())
	case g.hs.Term != n.term || g.hs.Vote != n.vote:
		return fmt.Sprintf("term %d vote %d, not term %d vote %d", g.hs.Term, g.hs.Vote, n.term, n.vote)
	case g.hs.Commit < n.disk.syncedCommit || g.hs.Commit > n.commit:
		return fmt.Sprintf("commit %d, outside [%d (last synced), %d]", g.hs.Commit, n.disk.syncedCommit, n.commit)
	case g.snap.Index != snapIndex || g.snap.Term != snapTerm:
		return fmt.Sprintf("snapshot %d/%d, not %d/%d", g.snap.Term, g.snap.Index, snapTerm, snapIndex)
	}
	ch := l.offsetChain
	for i := range g.ents {
		e := &g.ents[i]
		ch = chainHash(ch, e)
		if e.Term != l.terms[i] || ch != l.chains[i] {
			return fmt.Sprintf("entry %d is %d/%d, which differs from the acknowledged entry of term %d", e.Index, e.Term, e.Index, l.terms[i])
		}
	}
	return ""
}

func describeDurable(g *durable) string {
	lastTerm := g.offsetTerm
	if len(g.ents) > 0 {
		lastTerm = g.ents[len(g.ents)-1].Term
	}
	return fmt.Sprintf("log (%d/%d, %d/%d] %s snapshot %d/%d",
		g.offsetTerm, g.offset, lastTerm, g.last(), raft.DescribeHardState(g.hs), g.snap.Term, g.snap.Index)
}

func (s *Sim) describeMirror(n *simNode) string {
	l := &n.log
	lastTerm, _ := l.termAt(l.last())
	var snapIndex raft.Index
	var snapTerm raft.Term
	if n.snap != nil {
		snapIndex, snapTerm = n.snap.Applied, n.snap.AppliedTerm
	}
	return fmt.Sprintf("log (%d/%d, %d/%d] term %d vote %d commit %d (synced %d) snapshot %d/%d",
		l.offsetTerm, l.offset, lastTerm, l.last(), n.term, n.vote, n.commit, n.disk.syncedCommit, snapTerm, snapIndex)
}

// readSnapFile reads back the state machine snapshot meta names.
func readSnapFile(st *snap.Store, meta raft.SnapshotMeta) (*StateMachine, error) {
	r, err := st.Open(meta)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	sm, err := decodeStateMachine(b)
	if err != nil {
		return nil, err
	}
	if sm.Applied != meta.Index || sm.AppliedTerm != meta.Term {
		return nil, fmt.Errorf("snapshot file %d/%d holds a state machine at %d/%d", meta.Term, meta.Index, sm.AppliedTerm, sm.Applied)
	}
	return sm, nil
}

// ---- for tests ----

// FS returns node id's filesystem (WALStorage mode; nil otherwise). It is
// replaced by its crash image at every crash.
func (s *Sim) FS(id raft.NodeID) *vfs.MemFS {
	if d := s.nodes[id].disk; d != nil {
		return d.fs
	}
	return nil
}

// WAL returns node id's write-ahead log (WALStorage mode; nil otherwise).
func (s *Sim) WAL(id raft.NodeID) *wal.WAL {
	if d := s.nodes[id].disk; d != nil {
		return d.wal
	}
	return nil
}

// isWALPath reports whether a disk operation's path names a WAL segment,
// as opposed to a snapshot file or a directory. Like os.File.Name, the
// path of an operation on an open file is the name it was opened under:
// for a live segment, its temporary name (the WAL creates each segment
// under a temporary name and renames it into place).
func isWALPath(path string) bool {
	return strings.HasPrefix(path, walDir+"/") && (strings.HasSuffix(path, ".wal") || strings.HasSuffix(path, ".wal.tmp"))
}

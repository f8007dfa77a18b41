package replica

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"

	"github.com/cairnkv/cairn/raft"
)

// Replica is one member of a Raft group: it owns a raft.Node and drives it
// with one goroutine, the run goroutine, which alone touches the node, the
// log store's write side, the state machine and the registries of pending
// calls. Every other goroutine talks to it over channels and waits on
// futures (doc.go draws the picture).
//
// All methods are safe for concurrent use.
type Replica struct {
	id     raft.NodeID
	cfg    Config
	logger *slog.Logger

	// Channels into the run goroutine. propc, readc and ctlc are
	// unbuffered: once the run goroutine has received a call it owns it
	// and must resolve it, and a call it never received is resolved by the
	// caller; nothing is left in between when the replica stops.
	recvc chan raft.Message // inbound messages, buffered MaxStepBatch
	propc chan *Proposal
	readc chan *waiter
	ctlc  chan func()
	wake  chan struct{} // capacity 1: the reports mailbox is not empty

	stopOnce sync.Once
	stopc    chan struct{} // closed by Stop
	done     chan struct{} // closed when the run goroutine has exited
	// cause is why the run goroutine exited (nil for Stop) and failErr is
	// what pending calls were failed with. Both are written before done is
	// closed and read only after.
	cause, failErr error

	// reports is a mailbox for what transports tell the replica from their
	// own goroutines (or from inside Send). Filling it never blocks, so a
	// transport may report from anywhere without risking a deadlock.
	reports struct {
		sync.Mutex
		unreachable map[raft.NodeID]struct{}
		snapshots   []snapshotReport
		// cancelled are registered waiters whose context ended (each is
		// reported once, by its context's AfterFunc).
		cancelled []*waiter
	}

	// leader publishes what the run goroutine knows about leadership, for
	// Leader.
	leader struct {
		sync.Mutex
		state   LeaderState
		changed chan struct{} // closed and replaced on every change
	}

	// The run goroutine's state. Nothing else reads or writes it.
	node        *raft.Node
	ticks       <-chan struct{}
	cancelTicks func()
	// ready is a closed channel, selected on when the node has a Ready so
	// that Ready processing takes its turn with the inputs.
	ready        chan struct{}
	tick         uint64 // ticks seen since start
	electionTick int
	lead         raft.NodeID
	role         raft.Role
	term         raft.Term
	// Invariant: applied is the index of the last entry (or snapshot) the
	// state machine reflects, appliedTerm its term, and conf the
	// configuration in force at applied.
	applied     raft.Index
	appliedTerm raft.Term
	conf        raft.ConfState
	// snapIndex is the index of the latest local snapshot, and
	// sinceSnapBytes the entry data applied since. After a failed attempt,
	// snapFailed is set and snapFailedIndex and snapFailedBytes say where
	// it was, so that the next attempt waits for as much again.
	snapIndex       raft.Index
	sinceSnapBytes  uint64
	snapFailed      bool
	snapFailedIndex raft.Index
	snapFailedBytes uint64
	// starts counts the raft.Nodes this replica has created (a full disk
	// restarts the core), so that each gets its own seed.
	starts uint64
	// catchingUp is set while a replica that started from an empty log
	// must neither vote nor campaign (catchup.go).
	catchingUp bool
	// full is set while the disk is full (diskfull.go).
	full fullDisk
	// proposals are the pending proposals by index; several proposals of
	// different terms may wait on one index (chained through older).
	proposals  map[raft.Index]*Proposal
	reads      map[raft.ReadID]*readBatch
	nextReadID raft.ReadID
	waits      applyWaits
	transfers  []*transfer
	batch      []*Proposal // reused by propose
	// durable is the highest index the state machine has reported durable
	// (Syncer), the bound on log compaction (compaction.go).
	durable raft.Index

	// testHook, if set, runs on the run goroutine after each input or
	// Ready it handles (tests only; set through a call).
	testHook func()
}

// LeaderState is what a replica believes about its group's leadership.
type LeaderState struct {
	// Lead is the leader this replica knows of, or raft.None.
	Lead raft.NodeID
	// Term is the replica's current (durable) term.
	Term raft.Term
	// Role is the part this replica plays.
	Role raft.Role
}

type snapshotReport struct {
	to raft.NodeID
	ok bool
}

// New starts a replica: it finds where the state machine is (see
// "Restart" in doc.go: the state machine's own applied index when it
// persists one, else the latest snapshot, which it then restores), creates
// the Raft node from cfg.Log starting there, and starts the run goroutine.
// Entries committed after that point are applied again by the run
// goroutine. Stop the replica when done with it.
func New(cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{
		id:        cfg.ID,
		cfg:       cfg,
		logger:    cfg.Logger.With(slog.Uint64("node", uint64(cfg.ID)), slog.Uint64("group", uint64(cfg.Group))),
		recvc:     make(chan raft.Message, cfg.MaxStepBatch),
		propc:     make(chan *Proposal),
		readc:     make(chan *waiter),
		ctlc:      make(chan func()),
		wake:      make(chan struct{}, 1),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
		proposals: make(map[raft.Index]*Proposal),
		reads:     make(map[raft.ReadID]*readBatch),
	}
	close(r.ready)
	r.reports.unreachable = make(map[raft.NodeID]struct{})
	r.leader.changed = make(chan struct{})

	err := r.findStart()
	if err != nil {
		return nil, err
	}

	if r.catchingUp, err = isEmptyLog(cfg.Log); err != nil {
		return nil, fmt.Errorf("replica: read the log store: %w", err)
	}
	if r.catchingUp {
		r.logger.Info("starting from an empty log: neither voting nor campaigning until caught up with a leader")
	}
	if r.node, err = r.newNode(); err != nil {
		return nil, err
	}
	st := r.node.Status()
	r.lead, r.role, r.term = st.Lead, st.Role, st.Term
	r.publishLeader()

	r.ticks, r.cancelTicks = cfg.Ticks.Subscribe()
	go r.run()
	return r, nil
}

// newNode creates the Raft core from the log store and the state
// machine's applied index: at start, and again after a full disk (which is
// a restart of the core, see diskfull.go).
func (r *Replica) newNode() (*raft.Node, error) {
	rc := r.cfg.Raft
	rc.ID = r.cfg.ID
	rc.Storage = r.cfg.Log
	rc.Applied = r.applied
	if rc.Logger == nil {
		// The core adds the node attribute itself.
		rc.Logger = r.cfg.Logger.With(slog.Uint64("group", uint64(r.cfg.Group)))
	}
	if r.starts > 0 {
		// Each start of a core needs its own seed (raft.Config.Seed): a
		// given seed is varied deterministically, zero means random.
		if rc.Seed != 0 {
			rc.Seed += r.starts * 0x9e3779b97f4a7c15
		}
		for rc.Seed == 0 {
			rc.Seed = rand.Uint64()
		}
	}
	r.starts++
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	r.electionTick = rc.ElectionTick
	node, err := raft.NewNode(rc)
	if err != nil {
		return nil, fmt.Errorf("replica: start node: %w", err)
	}
	return node, nil
}

// ID returns the replica's node ID.
func (r *Replica) ID() raft.NodeID { return r.id }

// Stop stops the run goroutine and waits for it to exit. Every pending
// call fails with ErrStopped and so does every later call. Stop returns the
// fatal error that stopped the replica earlier, if one did, and nil
// otherwise. It may be called more than once. A stopped replica's log
// store and snapshot store can be handed to a new replica (a restart).
func (r *Replica) Stop() error {
	r.stopOnce.Do(func() { close(r.stopc) })
	<-r.done
	return r.cause
}

// Done is closed when the replica has stopped, by Stop or by a fatal
// error (which Stop and Err then return).
func (r *Replica) Done() <-chan struct{} { return r.done }

// Err returns the fatal error that stopped the replica, once Done is
// closed; nil while it runs, and after a plain Stop. A failed log store
// gives an error wrapping ErrLogFailed and the store's own error (for
// *wal.WAL, wal.ErrIO and the OS error). A server watches Done and, on a
// fatal error, exits with it (see doc.go, "Disk failures").
func (r *Replica) Err() error {
	select {
	case <-r.done:
		return r.cause
	default:
		return nil
	}
}

// Propose proposes cmd to the group and waits for its result: what the
// state machine's Apply returned for it. The errors and what they mean for
// the command are listed on Proposal. If ctx ends first, Propose returns
// ctx.Err() and the outcome is unknown.
//
// Only the leader accepts proposals; others return a *NotLeaderError
// naming the leader they know of. cmd must not be modified afterwards.
func (r *Replica) Propose(ctx context.Context, cmd []byte) (any, error) {
	return r.ProposeAsync(ctx, cmd).Wait(ctx)
}

// ProposeAsync proposes cmd and returns its future without waiting for
// the outcome, so that one goroutine can have many proposals in flight.
// It blocks only until the run goroutine takes the proposal (or ctx ends,
// which fails the proposal with ctx.Err() before it entered the log).
// Concurrent proposals are batched: the run goroutine hands everything
// queued to the core in one call.
func (r *Replica) ProposeAsync(ctx context.Context, cmd []byte) *Proposal {
	p := newProposal(cmd)
	if len(cmd) == 0 {
		p.finish(nil, ErrEmptyCommand)
		return p
	}
	select {
	case r.propc <- p:
	case <-r.done:
		p.finish(nil, r.failErr)
	case <-ctx.Done():
		p.finish(nil, ctx.Err())
	}
	return p
}

// ReadIndex waits until a linearizable read of the state machine is
// possible (thesis §6.4): it learns the group's commit index from the
// leader (which confirms with a heartbeat round that it still leads), then
// waits until this replica has applied that index, and returns it. A read
// of the state machine made after ReadIndex returns reflects every write
// acknowledged before ReadIndex was called. It works on followers too (the
// core asks the leader), and is retried when leadership changes or no
// answer comes within an election timeout. If ctx ends first, it returns
// ctx.Err().
func (r *Replica) ReadIndex(ctx context.Context) (raft.Index, error) {
	w := &waiter{ctx: ctx, read: true, done: make(chan struct{})}
	return r.submitWaiter(ctx, w)
}

// WaitApplied waits until the state machine has applied index. If ctx
// ends first, it returns ctx.Err(), and the replica forgets the wait at
// once, however far ahead index is.
func (r *Replica) WaitApplied(ctx context.Context, index raft.Index) error {
	w := &waiter{ctx: ctx, index: index, done: make(chan struct{})}
	_, err := r.submitWaiter(ctx, w)
	return err
}

func (r *Replica) submitWaiter(ctx context.Context, w *waiter) (raft.Index, error) {
	select {
	case r.readc <- w:
		return w.wait(ctx)
	case <-r.done:
		return 0, r.failErr
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TransferLeadership asks the leader (this replica) to hand leadership to
// the voter to, and waits until this replica sees to lead. Proposals are
// refused while the transfer runs. It returns a *NotLeaderError on a
// replica that does not lead, ErrTransferTimeout if to has not taken over
// after a few election timeouts, or ctx.Err().
func (r *Replica) TransferLeadership(ctx context.Context, to raft.NodeID) error {
	tr := &transfer{to: to, done: make(chan error, 1)}
	if err := r.call(ctx, func() { r.startTransfer(tr) }); err != nil {
		return err
	}
	select {
	case err := <-tr.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns a copy of the Raft node's status.
func (r *Replica) Status(ctx context.Context) (raft.Status, error) {
	var st raft.Status
	err := r.call(ctx, func() { st = r.node.Status() })
	return st, err
}

// Leader returns what the replica currently believes about leadership and
// a channel that is closed at the next change, so that a caller can wait
// for a leader without polling.
func (r *Replica) Leader() (LeaderState, <-chan struct{}) {
	r.leader.Lock()
	defer r.leader.Unlock()
	return r.leader.state, r.leader.changed
}

// call runs fn on the run goroutine and waits for it to finish.
func (r *Replica) call(ctx context.Context, fn func()) error {
	ran := make(chan struct{})
	select {
	case r.ctlc <- func() { fn(); close(ran) }:
		<-ran // the run goroutine runs fn as soon as it receives it
		return nil
	case <-r.done:
		return r.failErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Step hands the replica a message from a peer. It blocks while the
// inbound queue is full (back-pressure on the transport) until ctx ends.
// A MsgSnap must come through StepSnapshot instead, with its data.
func (r *Replica) Step(ctx context.Context, m raft.Message) error {
	if m.Type == raft.MsgSnap {
		return ErrSnapshotWithoutData
	}
	return r.enqueue(ctx, m)
}

// TryStep is Step that never blocks: it queues m if the inbound queue has
// room and reports whether it did. It returns false, and m is dropped,
// when the queue is full, the replica has stopped, or m is a MsgSnap
// (which must come through StepSnapshot). A transport that multiplexes
// many groups over one connection uses it so that one busy group drops
// its own messages instead of holding up the others' (Raft tolerates lost
// messages; the sender retries).
func (r *Replica) TryStep(m raft.Message) bool {
	if m.Type == raft.MsgSnap {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
	}
	select {
	case r.recvc <- m:
		return true
	default:
		return false
	}
}

// StepSnapshot hands the replica a MsgSnap and the snapshot's data, which
// it copies from data into its SnapshotStore before it steps the message:
// by the time the core decides to install the snapshot, the data is there
// to restore from. It returns once the message is queued, so a nil error
// is what the transport reports to the sender as a delivered snapshot.
func (r *Replica) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	if m.Type != raft.MsgSnap || m.Snapshot == nil {
		return fmt.Errorf("%w: StepSnapshot needs a MsgSnap with a snapshot, got %v", raft.ErrInvalidMessage, m.Type)
	}
	select {
	case <-r.done:
		return r.failErr
	default:
	}
	sink, err := r.cfg.Snapshots.Create(*m.Snapshot)
	if err != nil {
		return fmt.Errorf("replica: stage snapshot %d: %w", m.Snapshot.Index, err)
	}
	if _, err := io.Copy(sink, ctxReader{ctx, data}); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("replica: receive snapshot %d: %w", m.Snapshot.Index, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("replica: stage snapshot %d: %w", m.Snapshot.Index, err)
	}
	return r.enqueue(ctx, m)
}

func (r *Replica) enqueue(ctx context.Context, m raft.Message) error {
	select {
	case r.recvc <- m:
		return nil
	case <-r.done:
		return r.failErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReportUnreachable tells the replica that a message to peer could not be
// delivered; the leader then probes that follower instead of streaming to
// it. It never blocks, and may be called from within Transport.Send.
func (r *Replica) ReportUnreachable(peer raft.NodeID) {
	r.reports.Lock()
	r.reports.unreachable[peer] = struct{}{}
	r.reports.Unlock()
	r.poke()
}

// reportSnapshot is the done callback of a snapshot transfer.
func (r *Replica) reportSnapshot(to raft.NodeID, ok bool) {
	r.reports.Lock()
	r.reports.snapshots = append(r.reports.snapshots, snapshotReport{to, ok})
	r.reports.Unlock()
	r.poke()
}

// cancelWait reports that the context of w, a registered waiter, ended.
// It runs on the goroutine context.AfterFunc starts, and never blocks.
func (r *Replica) cancelWait(w *waiter) {
	r.reports.Lock()
	r.reports.cancelled = append(r.reports.cancelled, w)
	r.reports.Unlock()
	r.poke()
}

func (r *Replica) poke() {
	select {
	case r.wake <- struct{}{}:
	default: // already poked
	}
}

// ctxReader makes a copy loop stop when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package rafttest

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// TicksPerSecond fixes what a tick means in these tests: 100 ms, so that the
// core's defaults (ElectionTick 10, HeartbeatTick 1) are a one-second
// election timeout and ten heartbeats a second, as in etcd.
const TicksPerSecond = 10

// Options configures a Sim. The zero value (plus a seed) is three nodes with
// the core's defaults on a perfect network, no snapshots and no faults.
type Options struct {
	// Nodes is the group size; default 3. Nodes are numbered 1..Nodes and
	// all are voters from the start.
	Nodes int
	// Seed seeds everything random: the network, the faults, the order of
	// events within a tick and every node's raft.Config.Seed.
	Seed uint64

	// These are passed to every node's raft.Config (zero: the core's
	// default).
	ElectionTick       int
	HeartbeatTick      int
	DisablePreVote     bool
	DisableCheckQuorum bool
	MaxSizePerMsg      uint64
	MaxInflightMsgs    int

	// Net is how unreliable the network is; it can be changed later with
	// SetNet.
	Net NetOptions

	// SnapshotEvery makes a node snapshot its state machine whenever it has
	// applied that many entries past its last snapshot, and compact its log
	// up to SnapshotKeep entries behind the snapshot. Zero: never.
	SnapshotEvery int
	SnapshotKeep  int

	// Faults are armed from the start; more can be added with AddFault.
	Faults []Fault

	// Storage selects each node's disk: MemStorage (the default), or
	// WALStorage, a real wal.WAL and snap.Store on a crashable in-memory
	// filesystem per node, where a crash loses exactly the unsynced data
	// (see disk.go).
	Storage StorageKind
	// SegmentSize is the WAL's segment size in WALStorage mode; zero: 16
	// KiB, small so that segments roll and are released often.
	SegmentSize int64
	// DiskFaults crash nodes at disk operations (WALStorage only).
	DiskFaults DiskFaults

	// walNeverSync makes the WAL mode's driver ignore Ready.MustSync and
	// never sync: a broken driver, for the tests that show the crash
	// checks catch one.
	walNeverSync bool

	// SkipContractChecks turns off the checks that a Ready's Messages
	// vouch only for durable state and that MustSync is set when needed.
	// A core that breaks them is then caught only by what the breach leads
	// to (a crash at the wrong moment, then a double vote); tests use it to
	// show the crash faults have teeth of their own.
	SkipContractChecks bool

	// Trace logs every event through the test's Log as it happens.
	Trace bool
	// Logger receives the core's own logs; nil discards them.
	Logger *slog.Logger

	// ReproRun is the -run pattern of the reproduction command printed on
	// failure; by default it selects exactly the running (sub)test.
	ReproRun string
	// ReproArgs are extra flags for the reproduction command, e.g.
	// "-schedules=1".
	ReproArgs string
}

// Sim is a deterministic, single-threaded simulation of one Raft group:
// nodes, their disks and state machines, a network and a clock. Everything
// that happens is decided by the seed; the same seed and the same calls give
// the same run, event for event.
//
// A Sim checks Raft's safety properties after every step (see checker) and
// fails its test at the first violation, printing the seed, the command
// that reproduces the run and the last events.
type Sim struct {
	tb     testing.TB
	opts   Options
	rng    *rand.Rand
	logger *slog.Logger

	now   uint64
	nodes []*simNode // indexed by NodeID; nodes[0] is nil
	ids   []raft.NodeID
	net   *network
	check checker

	faults []*Fault
	// CrashHook, when set, is asked at every fault point of every Ready
	// whether to crash the node there; it is how a test aims a crash at one
	// exact moment.
	CrashHook func(id raft.NodeID, p FaultPoint, rd *raft.Ready) bool
	// DiskHook, when set (WALStorage mode), is asked before every mutating
	// operation on every node's filesystem what to do with it; count
	// numbers the operations of all nodes since the start, 1 first. It is
	// how a test crashes a node at one exact write or sync, or fails one.
	DiskHook func(id raft.NodeID, op vfs.Op, count uint64) DiskAction
	// diskFaults are the armed DiskFaults (paused by liveness probes);
	// diskRng is their random stream.
	diskFaults DiskFaults
	diskRng    *rand.Rand

	reads     map[raft.ReadID]*Read
	nextRead  raft.ReadID
	proposals []Proposal
	// lastAcked and lastAckedData are the latest write acknowledged to
	// its client (see Read.AckedIndex).
	lastAcked     raft.Index
	lastAckedData []byte

	// mon is the liveness monitor (see MonitorLiveness); disturbances
	// counts what restarts its watch (see disturb).
	mon          livenessMonitor
	disturbances uint64

	stats Stats
	// livenessWorst is the longest CheckLiveness took, in ticks.
	livenessWorst int
	trace         traceRing
	failed        bool

	readyBuf []*simNode
	order    []int
}

// simNode is one replica: a raft.Node, the disk it survives crashes with,
// and its (volatile) state machine.
type simNode struct {
	id raft.NodeID
	rn *raft.Node // nil while crashed
	// storage is the node's disk in MemStorage mode: exactly what the
	// driver persisted from Readys. It survives crashes.
	storage *raft.MemoryStorage
	// disk is the node's disk in WALStorage mode (storage is then nil).
	disk *nodeDisk
	// log mirrors the durable log (the acknowledged one, in WALStorage
	// mode), for the invariant checks.
	log diskLog
	// snap is the state machine snapshot stored beside the storage's
	// snapshot metadata (durable; in WALStorage mode, as read back from
	// the snapshot store after a crash); snaps keeps the last few so that a
	// MsgSnap the core prepared before a newer snapshot was taken can still
	// be sent with its data.
	snap  *StateMachine
	snaps []*StateMachine
	// term, vote and commit mirror the durable HardState.
	term   raft.Term
	vote   raft.NodeID
	commit raft.Index

	alive     bool
	restartAt uint64
	sm        *StateMachine
	// incarnation counts the node's crashes and restarts; appended the
	// entries (and snapshots) it has written to its disk; readies the
	// Readys it has produced.
	incarnation uint64
	appended    uint64
	readies     uint64
	// incoming holds snapshot data that arrived with a MsgSnap and waits
	// for the Ready that installs it (volatile).
	incoming map[raft.Index]*StateMachine
	// role and lead are what the last Ready's SoftState said; leaderTerm is
	// the term the node leads while role is Leader.
	role       raft.Role
	lead       raft.NodeID
	leaderTerm raft.Term

	// reads holds the reads this node answered whose read point its state
	// machine has not reached yet (volatile: lost in a crash).
	reads []*Read

	// scratch for the Ready being processed.
	pendTerms  []raft.Term
	pendChains []uint64
}

// Proposal records one accepted Propose call.
type Proposal struct {
	Node  raft.NodeID
	Index raft.Index
	Term  raft.Term
	Data  []byte
	Tick  uint64
}

// Read is one read request (ReadIndex or LeaseRead) and what became of it:
// the read point the node answered with, and the state the read was served
// from once the node's state machine had applied up to it.
type Read struct {
	ID   raft.ReadID
	Node raft.NodeID
	// Lease is set for a LeaseRead, clear for a ReadIndex.
	Lease bool
	Tick  uint64
	// MinIndex is the highest index known committed anywhere when the
	// read was asked: a linearizable read must not be served below it.
	MinIndex raft.Index
	// AckedIndex is the index of the latest write acknowledged to its
	// client (applied by the leader that accepted it) when the read was
	// asked, and AckedData that write: the state the read is served from
	// must hold it.
	AckedIndex raft.Index
	AckedData  []byte

	Answered     bool
	Index        raft.Index
	AnsweredTick uint64
	// Immediate is set if the answer came in the first Ready the node
	// produced after the read was asked: for a LeaseRead on a leader, the
	// lease served it (a ReadIndex needs a heartbeat round first).
	Immediate bool
	// readies is the node's Ready count when the read was asked.
	readies uint64
	// Served is set once the node's state machine reached Index and the
	// read was served from it (at ServedApplied); a node that crashes
	// first never serves it (its client times out and retries).
	Served        bool
	ServedApplied raft.Index
}

// Stats counts what the network carried, for the message-count tests.
type Stats struct {
	// Sent counts messages handed to the network, by type.
	Sent [16]int
	// Delivered and Dropped count messages by their fate.
	Delivered, Dropped int
	// AppEntries[from][to] counts entries carried by MsgApp on that link;
	// Apps counts the MsgApps themselves.
	AppEntries [][]int
	Apps       [][]int
	// AppRejects counts rejected MsgAppResps (one per backtracking round
	// trip).
	AppRejects int
	// Crashes, Restarts and LeaderChanges count those events.
	Crashes, Restarts, LeaderChanges int

	// WALStorage mode: DiskOps counts mutating filesystem operations;
	// DiskCrashes the power losses injected before one of them (during
	// recovery included); RecoveryCrashes those that cut a recovery short;
	// DiskErrors the injected I/O errors, and DiskHalts the nodes they
	// stopped; TornTails the recoveries that cut a torn tail off the WAL.
	DiskOps                          uint64
	DiskCrashes, RecoveryCrashes     int
	DiskErrors, DiskHalts, TornTails int
	// DiskCrashesBefore counts the injected power losses by the kind of
	// operation they came before (indexed by vfs.OpKind).
	DiskCrashesBefore [16]int
	// CutWrites counts the power losses that cut a WAL write (a Save or a
	// Compact) short, and CutWritesKept those after which the WAL
	// recovered with the write.
	CutWrites, CutWritesKept int
}

// Total returns the number of messages sent, of every type.
func (st *Stats) Total() int {
	n := 0
	for _, c := range st.Sent {
		n += c
	}
	return n
}

// New returns a simulation of opts.Nodes freshly bootstrapped nodes, all
// up, at tick 0.
func New(tb testing.TB, opts Options) *Sim {
	tb.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		tb:     tb,
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed5eed5eed5eed)),
		logger: logger,
		nodes:  make([]*simNode, opts.Nodes+1),
		net:    newNetwork(opts.Nodes),
		check:  newChecker(),
		reads:  make(map[raft.ReadID]*Read),
	}
	s.net.opts = opts.Net
	s.stats = newStats(opts.Nodes)
	for i := range opts.Nodes {
		s.ids = append(s.ids, raft.NodeID(i+1))
	}
	if opts.Storage == WALStorage {
		s.diskFaults = opts.DiskFaults
		s.diskRng = rand.New(rand.NewPCG(opts.Seed, 0xd15cd15c))
	}
	for _, id := range s.ids {
		n := &simNode{id: id, log: newDiskLog()}
		switch opts.Storage {
		case MemStorage:
			n.storage = raft.NewMemoryStorage()
			if err := raft.Bootstrap(n.storage, s.ids...); err != nil {
				tb.Fatalf("bootstrap node %d: %v", id, err)
			}
		case WALStorage:
			s.newDisk(n)
			if s.failed {
				return s
			}
		default:
			tb.Fatalf("unknown storage kind %v", opts.Storage)
		}
		// Mirror the bootstrap entry so the disk log matches the storage.
		_, ents := raft.BootstrapState(s.ids...)
		n.log.truncateAppend(1, []raft.Term{ents[0].Term}, []uint64{chainHash(emptyChain, &ents[0])})
		s.check.logs[entryKey{1, ents[0].Term}] = entryOwner{chain: n.log.chains[0], node: id}
		s.nodes[id] = n
		s.start(n)
	}
	for _, f := range opts.Faults {
		s.AddFault(f)
	}
	s.MonitorLiveness(0)
	return s
}

func newStats(n int) Stats {
	st := Stats{AppEntries: make([][]int, n+1), Apps: make([][]int, n+1)}
	for i := range st.AppEntries {
		st.AppEntries[i] = make([]int, n+1)
		st.Apps[i] = make([]int, n+1)
	}
	return st
}

// start (re)creates n's raft.Node from its disk. The state machine restarts
// from the durable snapshot (or empty), and Config.Applied says so: the
// core hands out again every committed entry after it.
func (s *Sim) start(n *simNode) {
	sm := newStateMachine()
	if n.snap != nil {
		sm = n.snap.snapshot()
	}
	var storage raft.Storage = n.storage
	if n.disk != nil {
		storage = n.disk.wal
	}
	cfg := raft.Config{
		ID:                 n.id,
		Storage:            storage,
		Applied:            sm.Applied,
		ElectionTick:       s.opts.ElectionTick,
		HeartbeatTick:      s.opts.HeartbeatTick,
		DisablePreVote:     s.opts.DisablePreVote,
		DisableCheckQuorum: s.opts.DisableCheckQuorum,
		MaxSizePerMsg:      s.opts.MaxSizePerMsg,
		MaxInflightMsgs:    s.opts.MaxInflightMsgs,
		Seed:               s.rng.Uint64() | 1,
		Logger:             s.logger.With("node", n.id),
	}
	rn, err := raft.NewNode(cfg)
	if err != nil {
		s.fail("node %d: NewNode: %v", n.id, err)
		return
	}
	hs, _, err := storage.InitialState()
	if err != nil {
		s.fail("node %d: InitialState: %v", n.id, err)
		return
	}
	n.rn, n.sm, n.alive, n.restartAt = rn, sm, true, 0
	n.incarnation++
	n.term, n.vote, n.commit = hs.Term, hs.Vote, hs.Commit
	n.role, n.lead, n.leaderTerm = raft.Follower, raft.None, 0
	n.incoming = make(map[raft.Index]*StateMachine)
}

// ---- time ----

// Now returns the number of ticks elapsed.
func (s *Sim) Now() uint64 { return s.now }

// Tick advances the clock by one tick: nodes due to restart restart, every
// live node ticks (in random order), and then the network and the nodes run
// until nothing more can happen within this tick (Settle).
func (s *Sim) Tick() {
	defer s.recoverPanic()
	if s.failed {
		return
	}
	s.now++
	s.net.release(s.now)
	for _, n := range s.nodes[1:] {
		if !n.alive && n.restartAt != 0 && n.restartAt <= s.now {
			s.Restart(n.id)
		}
	}
	s.order = s.order[:0]
	for i := range s.nodes[1:] {
		s.order = append(s.order, i+1)
	}
	s.rng.Shuffle(len(s.order), func(i, j int) { s.order[i], s.order[j] = s.order[j], s.order[i] })
	for _, i := range s.order {
		if n := s.nodes[i]; n.alive {
			n.rn.Tick()
		}
	}
	s.Settle()
	if s.mon.bound > 0 && !s.failed {
		s.monitorTick()
	}
}

// Run advances the clock by ticks ticks.
func (s *Sim) Run(ticks int) {
	for range ticks {
		s.Tick()
	}
}

// RunUntil ticks until cond holds (checked before each tick) or maxTicks
// ticks have passed, and reports whether cond held.
func (s *Sim) RunUntil(maxTicks int, cond func() bool) bool {
	for range maxTicks {
		if s.failed {
			return false
		}
		if cond() {
			return true
		}
		s.Tick()
	}
	return !s.failed && cond()
}

// maxEventsPerSettle bounds one Settle: a core that keeps messaging without
// time passing is livelocked.
const maxEventsPerSettle = 1_000_000

// Settle runs, without advancing the clock, every event that can happen now:
// it delivers due messages and processes nodes' Readys, in an order drawn
// from the seed (so Readys batch a random number of inputs), until no
// message is due and no node has a Ready.
func (s *Sim) Settle() {
	defer s.recoverPanic()
	for range maxEventsPerSettle {
		if s.failed {
			return
		}
		s.readyBuf = s.readyBuf[:0]
		for _, n := range s.nodes[1:] {
			if n.alive && n.rn.HasReady() {
				s.readyBuf = append(s.readyBuf, n)
			}
		}
		hasMsg := s.net.hasDue() || len(s.net.reports) > 0
		switch {
		case len(s.readyBuf) == 0 && !hasMsg:
			return
		case hasMsg && (len(s.readyBuf) == 0 || s.rng.IntN(2) == 0):
			if len(s.net.reports) > 0 && (!s.net.hasDue() || s.rng.IntN(2) == 0) {
				s.deliverReport()
			} else {
				s.deliver()
			}
		default:
			s.handleReady(s.readyBuf[s.rng.IntN(len(s.readyBuf))])
		}
	}
	s.fail("livelock: more than %d events without a tick", maxEventsPerSettle)
}

// ---- node lifecycle ----

// Crash stops node id at once: its raft.Node, state machine and in-flight
// Ready are lost; its disk survives. Messages to it are dropped while it is
// down.
func (s *Sim) Crash(id raft.NodeID) {
	n := s.nodes[id]
	if !n.alive {
		return
	}
	s.record(traceEvent{kind: evCrash, node: id})
	s.stats.Crashes++
	if n.disk != nil {
		// A power loss: the disk keeps what was synced. This runs before
		// the volatile state is dropped, because a write in flight that
		// survived is applied to the mirror with what it came with.
		s.powerLoss(n)
	}
	n.rn, n.sm, n.incoming = nil, nil, nil
	clear(n.reads)
	n.reads = n.reads[:0]
	n.alive, n.restartAt = false, 0
	n.incarnation++
	n.role, n.lead, n.leaderTerm = raft.Follower, raft.None, 0
}

// Restart brings a crashed node back from its disk.
func (s *Sim) Restart(id raft.NodeID) {
	defer s.recoverPanic()
	n := s.nodes[id]
	if n.alive {
		return
	}
	s.record(traceEvent{kind: evRestart, node: id})
	s.stats.Restarts++
	s.start(n)
}

// CrashFor crashes id and restarts it after ticks ticks.
func (s *Sim) CrashFor(id raft.NodeID, ticks int) {
	s.Crash(id)
	s.nodes[id].restartAt = s.now + uint64(max(ticks, 1))
}

// Alive reports whether node id is up.
func (s *Sim) Alive(id raft.NodeID) bool { return s.nodes[id].alive }

// AddFault arms a fault and returns it (its fired count can be inspected
// through Fired).
func (s *Sim) AddFault(f Fault) *Fault {
	fp := &f
	s.faults = append(s.faults, fp)
	return fp
}

// Fired returns how many crashes f has caused.
func (f *Fault) Fired() int { return f.fired }

// ClearFaults disarms every fault, disk faults included.
func (s *Sim) ClearFaults() {
	s.faults = nil
	s.setDiskFaults(DiskFaults{RestartAfter: s.diskFaults.RestartAfter})
}

// setDiskFaults replaces the armed disk faults and re-arms every node.
func (s *Sim) setDiskFaults(f DiskFaults) {
	if s.opts.Storage != WALStorage {
		return
	}
	s.diskFaults = f
	for _, n := range s.nodes[1:] {
		s.armDisk(n)
	}
}

// ---- failure reporting ----

// ReproCommand returns the command that reruns this test with this seed.
func (s *Sim) ReproCommand() string {
	run := s.opts.ReproRun
	if run == "" {
		parts := strings.Split(s.tb.Name(), "/")
		for i, p := range parts {
			parts[i] = "^" + regexp.QuoteMeta(p) + "$"
		}
		run = strings.Join(parts, "/")
	}
	cmd := fmt.Sprintf("go test ./raft/rafttest -run '%s' -seed=%d", run, s.opts.Seed)
	if s.opts.ReproArgs != "" {
		cmd += " " + s.opts.ReproArgs
	}
	return cmd + " -v"
}

// Fatalf fails the test like testing.T.Fatalf, adding the seed, the
// reproduction command and the last events of the run.
func (s *Sim) Fatalf(format string, args ...any) {
	s.tb.Helper()
	s.fail(format, args...)
}

// Failed reports whether a check has failed.
func (s *Sim) Failed() bool { return s.failed }

// recoverPanic turns a panic inside the core (or the Sim) into a reported
// failure, with the seed and the reproduction command. Every entry point
// that runs core code defers it.
func (s *Sim) recoverPanic() {
	if r := recover(); r != nil {
		if s.failed {
			panic(r)
		}
		s.fail("panic: %v\n\n%s", r, debug.Stack())
	}
}

func (s *Sim) fail(format string, args ...any) {
	s.tb.Helper()
	if s.failed {
		return
	}
	s.failed = true
	s.tb.Fatalf("%s\n\nat tick %d, seed %d\nreproduce with: %s\n\nlast events (oldest first):\n%s",
		fmt.Sprintf(format, args...), s.now, s.opts.Seed, s.ReproCommand(), s.trace.String())
}

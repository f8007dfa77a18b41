package rafttest

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// -diskop=K runs TestWALCrashAtEveryDiskOp's scenario with its one crash
// at disk operation K, and -recoveryop=J adds a second crash J operations
// later (inside the recovery): the flags a failure's reproduction command
// carries.
var (
	diskOpFlag     = flag.Uint64("diskop", 0, "TestWALCrashAtEveryDiskOp: crash only at this disk operation")
	recoveryOpFlag = flag.Uint64("recoveryop", 0, "TestWALCrashAtEveryDiskOp: with -diskop=K, crash again at disk operation K+N (inside the recovery)")
)

// walScenarioOptions is the WAL-mode group the crash sweeps run: three
// nodes, the smallest segments (a roll every few batches) and a snapshot
// every three entries, so that the scenario writes entries, hard states,
// segment checkpoints, compactions, snapshot files and removals.
func walScenarioOptions(seed uint64) Options {
	return Options{Nodes: 3, Seed: seed, Storage: WALStorage, SegmentSize: 4 << 10,
		SnapshotEvery: 3, SnapshotKeep: 1, DiskFaults: DiskFaults{RestartAfter: 1}}
}

// walScenario drives a small WAL-mode group through the disk's every kind
// of write: an election, proposals (each a Save of entries, then of a
// commit index), snapshots and compactions, a follower cut off long enough
// to need a snapshot sent to it (written to its snapshot store, then
// recorded by its WAL), and a leadership transfer. Then it heals
// everything and checks that the group converges on every committed
// proposal. It tolerates a crash anywhere: each step waits for a leader
// rather than assuming one.
func walScenario(s *Sim) {
	s.tb.Helper()
	ids := s.IDs()
	propose := func(format string, args ...any) {
		if l := s.Leader(); l != raft.None {
			s.Propose(l, val(format, args...))
		}
		s.Run(1)
	}
	waitLeader(s)
	for i := range 4 {
		propose("a%d", i)
	}
	s.Isolate(ids[2])
	for i := range 6 {
		propose("b%d", i)
	}
	s.Reconnect(ids[2])
	s.Run(3)
	if l := s.Leader(); l != raft.None {
		_ = s.TransferLeadership(l, except(s, l)[0])
	}
	s.Run(2)
	for i := range 4 {
		propose("c%d", i)
	}
	// The end: everyone up; the group must converge.
	for _, id := range ids {
		s.Restart(id)
	}
	s.Agree(val("end"), len(ids), liveness)
	s.WaitConverged(liveness)
	s.CheckProposals()
}

// TestWALCrashAtEveryDiskOp cuts the power before every single disk
// operation of a scenario (every create, write, sync, directory sync,
// rename, remove, truncate and preallocate of any node, each in its own
// run), so that every write and sync point of the WAL and the snapshot
// store is crashed at, with the unsynced writes before it torn at random.
// The crashed node recovers from what its disk kept and the group must
// go on without losing anything acknowledged. A second sweep crashes the
// recovery itself at each of its operations.
//
// Three seeds (one under the race detector or -short) give three
// scenarios of 260 to 300 operations each: about 1,500 runs.
func TestWALCrashAtEveryDiskOp(t *testing.T) {
	defaults := []uint64{1, 2, 3}
	if raceEnabled || testing.Short() {
		defaults = defaults[:1]
	}
	for _, seed := range seeds(defaults...) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { crashSweep(t, seed) })
	}
}

func crashSweep(t *testing.T, seed uint64) {
	run := func(t testing.TB, crashAt []uint64) *Sim {
		opts := walScenarioOptions(seed)
		opts.ReproRun = fmt.Sprintf("^TestWALCrashAtEveryDiskOp$/^seed=%d$", seed)
		if len(crashAt) > 0 {
			opts.ReproArgs = fmt.Sprintf("-diskop=%d", crashAt[0])
			if len(crashAt) > 1 {
				opts.ReproArgs += fmt.Sprintf(" -recoveryop=%d", crashAt[1]-crashAt[0])
			}
		}
		opts.Trace = *traceFlag
		s := New(t, opts)
		s.DiskHook = func(_ raft.NodeID, _ vfs.Op, count uint64) DiskAction {
			for _, k := range crashAt {
				if count == k {
					return DiskCrash
				}
			}
			return DiskOK
		}
		walScenario(s)
		return s
	}
	if *diskOpFlag != 0 {
		crashAt := []uint64{*diskOpFlag}
		if *recoveryOpFlag != 0 {
			crashAt = append(crashAt, *diskOpFlag+*recoveryOpFlag)
		}
		s := run(t, crashAt)
		st := s.Stats()
		t.Logf("%d disk operations, %d power losses, %d torn tails", st.DiskOps, st.DiskCrashes, st.TornTails)
		return
	}
	clean := run(t, nil)
	if t.Failed() {
		return
	}
	total := clean.Stats().DiskOps
	// The first sweep: one crash before each operation. The second:
	// crash at k, then again at k+j, the j-th operation of the recovery
	// (when the recovery has that many), for every fifth k; each k would
	// mostly repeat the first sweep, what is new is the recovery's.
	const recoveryOps, recoveryStride = 4, 5
	type job struct{ crashAt []uint64 }
	var jobs []job
	for k := uint64(1); k <= total; k++ {
		jobs = append(jobs, job{[]uint64{k}})
	}
	for k := uint64(1); k <= total; k += recoveryStride {
		for j := uint64(1); j <= recoveryOps; j++ {
			jobs = append(jobs, job{[]uint64{k, k + j}})
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var crashes, torn, recoveryCrashes, kept, cut int
	var byKind [16]int
	t.Run("sweep", func(t *testing.T) {
		for w := range runtime.GOMAXPROCS(0) {
			t.Run(fmt.Sprintf("worker%d", w), func(t *testing.T) {
				t.Parallel()
				for {
					i := next.Add(1) - 1
					if i >= int64(len(jobs)) || t.Failed() {
						return
					}
					s := run(t, jobs[i].crashAt)
					st := s.Stats()
					mu.Lock()
					crashes += st.DiskCrashes
					torn += st.TornTails
					recoveryCrashes += st.RecoveryCrashes
					cut += st.CutWrites
					kept += st.CutWritesKept
					for k, c := range st.DiskCrashesBefore {
						byKind[k] += c
					}
					mu.Unlock()
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	var kinds []string
	for k, c := range byKind {
		if c > 0 {
			kinds = append(kinds, fmt.Sprintf("%v %d", vfs.OpKind(k), c))
		}
	}
	t.Logf("scenario of %d disk operations; %d runs, %d power losses (%v), %d during recovery, %d torn tails cut off; %d cut a WAL write, %d of those kept it",
		total, len(jobs), crashes, kinds, recoveryCrashes, torn, cut, kept)
	if torn == 0 || recoveryCrashes == 0 || kept == 0 || kept == cut {
		t.Errorf("the sweep missed a case: %d torn tails, %d crashed recoveries, %d of %d cut writes kept", torn, recoveryCrashes, kept, cut)
	}
}

// A node whose WAL fails to write or sync (EIO) stops: the Sim treats a
// storage error as a real driver must, as fatal, never as success. The
// Ready's acknowledgements are never sent, the node halts, and when it
// restarts it finds exactly what it had acknowledged (MemFS forfeits what
// the failed sync covered, as a kernel may drop those pages), which the
// Sim checks on recovery like any crash. The group goes on without it and
// loses nothing.
func TestWALIOErrorHalts(t *testing.T) {
	for _, kind := range []vfs.OpKind{vfs.OpSync, vfs.OpWrite} {
		for _, leader := range []bool{false, true} {
			name := fmt.Sprintf("%v/follower", kind)
			if leader {
				name = fmt.Sprintf("%v/leader", kind)
			}
			t.Run(name, func(t *testing.T) {
				for _, seed := range seeds(1, 2, 3) {
					ioErrorHalts(t, seed, kind, leader)
				}
			})
		}
	}
}

func ioErrorHalts(t *testing.T, seed uint64, kind vfs.OpKind, leader bool) {
	s := newSim(t, seed, Options{Nodes: 3, Storage: WALStorage, DiskFaults: DiskFaults{RestartAfter: -1}})
	l := waitLeader(s)
	s.Agree(val("before"), 3, liveness)
	victim := except(s, l)[0]
	if leader {
		victim = l
	}
	// Every acknowledgement the victim sends, until it halts.
	halted := false
	var maxAck raft.Index
	s.DropIf(func(m raft.Message) bool {
		if m.From == victim && !halted && !m.Reject && m.Type == raft.MsgAppResp {
			maxAck = max(maxAck, m.Index)
		}
		return false
	})
	var durableLast raft.Index
	failed := false
	s.DiskHook = func(id raft.NodeID, op vfs.Op, _ uint64) DiskAction {
		if id != victim || failed || op.Kind != kind || !isWALPath(op.Path) {
			return DiskOK
		}
		failed = true
		durableLast = s.nodes[victim].log.last()
		return DiskEIO
	}
	for i := 0; !failed && i < 50; i++ {
		if l := s.Leader(); l != raft.None {
			s.Propose(l, val("x%d", i))
		}
		s.Settle()
		halted = !s.Alive(victim)
		s.Tick()
	}
	halted = true
	switch {
	case !failed:
		s.Fatalf("node %d never wrote its WAL", victim)
	case s.Alive(victim):
		s.Fatalf("node %d kept running after a %v of its WAL failed", victim, kind)
	case s.Stats().DiskHalts != 1:
		s.Fatalf("%d halts, want 1", s.Stats().DiskHalts)
	case maxAck > durableLast:
		s.Fatalf("node %d acknowledged index %d, past what it had made durable (%d) before its WAL failed", victim, maxAck, durableLast)
	}
	if got := s.nodes[victim].log.last(); got != durableLast {
		s.Fatalf("node %d recovered a log ending at %d after its failed write; it had acknowledged up to %d", victim, got, durableLast)
	}
	// The others go on; the victim, restarted, catches up, and every
	// committed proposal is everywhere.
	s.Agree(val("after"), 2, liveness)
	s.Restart(victim)
	s.Agree(val("back"), 3, liveness)
	s.WaitConverged(liveness)
	s.CheckProposals()
}

// The crash checks have teeth of their own: a driver that acknowledges
// what it never synced (it ignores Ready.MustSync; the core is right, so
// the contract checks see nothing wrong) is caught when a crash loses what
// it acknowledged.
func TestWALUnsyncedAckCaught(t *testing.T) {
	msg := expectFailure(t, func(tb testing.TB) {
		for seed := uint64(1); seed <= 20; seed++ {
			c := NewWALScheduleConfig(seed)
			c.Options.walNeverSync = true
			RunSchedule(tb, c)
		}
	})
	if !strings.Contains(msg, "lost acknowledged state") && !strings.Contains(msg, "neither what it acknowledged") {
		t.Fatalf("a driver that never syncs was not caught by the crash checks; got %q", msg)
	}
	t.Logf("caught: %s", firstLine(msg))
}

// expectFailure runs f with a testing.TB whose Fatalf records the failure
// and stops f (as a real one does), and returns what was reported, or ""
// if f finished without failing.
func expectFailure(t *testing.T, f func(tb testing.TB)) string {
	c := &catchTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(c)
	}()
	<-done
	return c.msg
}

type catchTB struct {
	testing.TB
	msg string
}

func (c *catchTB) Helper() {}

func (c *catchTB) Fatalf(format string, args ...any) {
	c.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Crash and restart of every node at once, repeatedly, on WAL disks: each
// crash is a power loss of all three machines, so anything not synced is
// at risk everywhere at once; no committed entry may be lost.
func TestWALCrashRestartAll(t *testing.T) {
	for _, snapEvery := range []int{0, 3} {
		for _, seed := range seeds(1, 2, 3) {
			s := newSim(t, seed, Options{Nodes: 3, Storage: WALStorage, SegmentSize: 4 << 10, SnapshotEvery: snapEvery, SnapshotKeep: 1})
			r := testRand(s)
			waitLeader(s)
			for round := range 10 {
				s.Agree(val("r%d", round), 3, liveness)
				if l := s.Leader(); l != raft.None {
					s.Propose(l, val("inflight%d", round))
				}
				s.Run(r.IntN(2))
				committed := s.MaxCommitted()
				for _, id := range s.IDs() {
					s.Crash(id)
				}
				for _, id := range s.IDs() {
					s.Restart(id)
				}
				waitLeader(s)
				if s.MaxCommitted() < committed {
					s.Fatalf("commit point went back from %d to %d", committed, s.MaxCommitted())
				}
			}
			s.WaitConverged(liveness)
			s.CheckProposals()
		}
	}
}

// The WAL mode is as deterministic as the memory mode: a seed names a run,
// disk faults and torn writes included.
func TestWALSimDeterministic(t *testing.T) {
	fingerprint := func(seed uint64) [5]uint64 {
		c := NewWALScheduleConfig(seed)
		c.Options.ReproRun = "^TestWALSimDeterministic$"
		s := RunSchedule(t, c)
		st := s.Stats()
		return [5]uint64{s.Now(), uint64(st.Total()), uint64(s.MaxCommitted()), s.check.commit(s.MaxCommitted()).chain, st.DiskOps}
	}
	for _, seed := range seeds(1, 2, 3) {
		if a, b := fingerprint(seed), fingerprint(seed); a != b {
			t.Fatalf("seed %d: two runs differ: %v vs %v", seed, a, b)
		}
	}
}

// The state machine's snapshot encoding round-trips, and rejects what it
// did not produce without panicking.
func TestStateMachineEncoding(t *testing.T) {
	sm := newStateMachine()
	_, ents := raft.BootstrapState(1, 2, 3)
	if err := sm.apply(&ents[0]); err != nil {
		t.Fatal(err)
	}
	for i := raft.Index(2); i < 20; i++ {
		if err := sm.apply(&raft.Entry{Index: i, Term: 2, Data: val("v%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	b := sm.encode(nil)
	got, err := decodeStateMachine(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Applied != sm.Applied || got.AppliedTerm != sm.AppliedTerm || got.Chain != sm.Chain || !got.Conf.Equal(sm.Conf) || len(got.Values) != len(sm.Values) {
		t.Fatalf("decoded %+v, want %+v", got, sm)
	}
	for i := range got.Values {
		if got.Values[i].Index != sm.Values[i].Index || string(got.Values[i].Data) != string(sm.Values[i].Data) {
			t.Fatalf("value %d: %+v, want %+v", i, got.Values[i], sm.Values[i])
		}
	}
	for n := range len(b) {
		if _, err := decodeStateMachine(b[:n]); err == nil {
			t.Fatalf("a snapshot cut to %d of %d bytes decoded", n, len(b))
		}
	}
}

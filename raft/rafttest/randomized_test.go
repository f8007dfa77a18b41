package rafttest

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/storage/vfs"
)

// TestRandomized runs -schedules randomized schedules (2000 by default),
// seeds 1..N, or only -seed when given. Each is an independent simulation
// (see RunSchedule) checked after every step; they run on all CPUs.
func TestRandomized(t *testing.T) {
	if *seedFlag != 0 {
		c := NewScheduleConfig(*seedFlag)
		c.Options.Trace = *traceFlag
		c.Options.ReproRun = "^TestRandomized$"
		t.Log(c.Describe())
		RunSchedule(t, c)
		return
	}
	n := *schedulesFlag
	if testing.Short() {
		n = min(n, 200)
	}
	var next, checks, leaseReads, fromLease atomic.Uint64
	var worst atomic.Int64
	workers := runtime.GOMAXPROCS(0)
	t.Run("workers", func(t *testing.T) {
		for w := range workers {
			t.Run(fmt.Sprintf("worker%d", w), func(t *testing.T) {
				t.Parallel()
				for {
					seed := next.Add(1)
					if seed > uint64(n) {
						return
					}
					c := NewScheduleConfig(seed)
					c.Options.ReproRun = "^TestRandomized$"
					s := RunSchedule(t, c)
					if t.Failed() {
						return
					}
					k, w := s.LivenessStats()
					checks.Add(uint64(k))
					for old := worst.Load(); int64(w) > old && !worst.CompareAndSwap(old, int64(w)); old = worst.Load() {
					}
					_, lease, served := s.ReadStats()
					leaseReads.Add(uint64(lease))
					fromLease.Add(uint64(served))
				}
			})
		}
	})
	if !t.Failed() {
		t.Logf("%d schedules; the liveness monitor made %d checks; the slowest healthy quorum took %d ticks to elect a leader that committed; %d of %d lease reads were served from the lease",
			n, checks.Load(), worst.Load(), fromLease.Load(), leaseReads.Load())
	}
}

// TestRandomizedWAL runs randomized schedules on WALStorage disks (see
// NewWALScheduleConfig): every node's log is a real WAL on a crashable
// filesystem, and nodes lose power at random disk operations, mid-write
// and mid-recovery included. It runs one for every five -schedules (400
// by default), seeds 1..N, or only -seed when given.
func TestRandomizedWAL(t *testing.T) {
	if *seedFlag != 0 {
		c := NewWALScheduleConfig(*seedFlag)
		c.Options.Trace = *traceFlag
		c.Options.ReproRun = "^TestRandomizedWAL$"
		t.Log(c.Describe())
		s := RunSchedule(t, c)
		st := s.Stats()
		t.Logf("%d disk operations, %d power losses at one of them (%d during recovery), %d torn tails recovered",
			st.DiskOps, st.DiskCrashes, st.RecoveryCrashes, st.TornTails)
		return
	}
	n := max(*schedulesFlag/5, 1)
	if testing.Short() {
		n = min(n, 50)
	}
	var next atomic.Uint64
	var ops, crashes, recoveryCrashes, torn, restarts, cut, cutKept, halts atomic.Uint64
	var byKind [16]atomic.Uint64
	workers := runtime.GOMAXPROCS(0)
	t.Run("workers", func(t *testing.T) {
		for w := range workers {
			t.Run(fmt.Sprintf("worker%d", w), func(t *testing.T) {
				t.Parallel()
				for {
					seed := next.Add(1)
					if seed > uint64(n) {
						return
					}
					c := NewWALScheduleConfig(seed)
					c.Options.ReproRun = "^TestRandomizedWAL$"
					s := RunSchedule(t, c)
					if t.Failed() {
						return
					}
					st := s.Stats()
					ops.Add(st.DiskOps)
					crashes.Add(uint64(st.DiskCrashes))
					recoveryCrashes.Add(uint64(st.RecoveryCrashes))
					torn.Add(uint64(st.TornTails))
					restarts.Add(uint64(st.Restarts))
					cut.Add(uint64(st.CutWrites))
					cutKept.Add(uint64(st.CutWritesKept))
					halts.Add(uint64(st.DiskHalts))
					for k, c := range st.DiskCrashesBefore {
						byKind[k].Add(uint64(c))
					}
				}
			})
		}
	})
	if !t.Failed() {
		t.Logf("%d schedules: %d disk operations, %d power losses at one of them (%.1f a run; %d during recovery), %d torn WAL tails cut off, %d restarts",
			n, ops.Load(), crashes.Load(), float64(crashes.Load())/float64(n), recoveryCrashes.Load(), torn.Load(), restarts.Load())
		var kinds []string
		for k := range byKind {
			if c := byKind[k].Load(); c > 0 {
				kinds = append(kinds, fmt.Sprintf("%v %d", vfs.OpKind(k), c))
			}
		}
		t.Logf("power losses by the operation they preceded: %s; %d cut a WAL write short, which survived whole %d times; %d halts on an injected EIO",
			strings.Join(kinds, ", "), cut.Load(), cutKept.Load(), halts.Load())
		if crashes.Load() == 0 || torn.Load() == 0 {
			t.Errorf("the disk faults exercised nothing: %d power losses, %d torn tails", crashes.Load(), torn.Load())
		}
	}
}

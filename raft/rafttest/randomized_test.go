package rafttest

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
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
	var next atomic.Uint64
	workers := runtime.GOMAXPROCS(0)
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
				RunSchedule(t, c)
				if t.Failed() {
					return
				}
			}
		})
	}
}

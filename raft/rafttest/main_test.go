package rafttest

import (
	"flag"
	"testing"
)

// Flags shared by every test of the package:
//
//	-seed=N        run every test with seed N (the seed a failure printed)
//	-schedules=N   how many randomized schedules TestRandomized runs
//	-simtrace      log every simulated event (with -v)
var (
	seedFlag      = flag.Uint64("seed", 0, "seed for every simulation (0: each test's default seeds)")
	schedulesFlag = flag.Int("schedules", 2000, "number of randomized schedules TestRandomized runs")
	traceFlag     = flag.Bool("simtrace", false, "log every simulated event")
)

// seeds returns the seeds a test runs with: the -seed flag if given,
// otherwise the test's own defaults.
func seeds(defaults ...uint64) []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	return defaults
}

// newSim returns a Sim for a test, seeded by -seed or by seed.
func newSim(t testing.TB, seed uint64, opts Options) *Sim {
	t.Helper()
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	opts.Seed = seed
	opts.Trace = opts.Trace || *traceFlag
	return New(t, opts)
}

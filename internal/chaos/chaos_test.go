package chaos

import (
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/lincheck"
)

var (
	flagSeed      = flag.Uint64("chaos.seed", 0, "seed of the first schedule; schedule i has seed+i (default: from the clock)")
	flagSchedules = flag.Int("chaos.schedules", 10, "how many schedules to run, each on a fresh cluster")
	flagDuration  = flag.Duration("chaos.duration", 30*time.Second, "how long each schedule runs its faults and workload")
	flagParallel  = flag.Int("chaos.parallel", 2, "how many schedules run at once")
	flagNodes     = flag.Int("chaos.nodes", 0, "cluster size (default: from each seed, 3 or 5)")
	flagOut       = flag.String("chaos.out", "", "directory to keep every run's files in (default: a temporary directory, kept only on failure)")
	flagFaults    = flag.String("chaos.faults", "", "comma-separated faults the schedules draw from (default: all; see Fault.String)")
	flagRace      = flag.Bool("chaos.race", raceEnabled, "build the servers with the race detector and fail a run on any race they report (default: when the tests are built with -race)")
	flagVerbose   = flag.Bool("chaos.verbose", false, "log the nemesis's and the cluster's progress")
)

// faultsFlag parses -chaos.faults.
func faultsFlag(t *testing.T) []Fault {
	var faults []Fault
	for name := range strings.SplitSeq(*flagFaults, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		f, err := ParseFault(name)
		if err != nil {
			t.Fatal(err)
		}
		faults = append(faults, f)
	}
	return faults
}

// TestChaos runs -chaos.schedules seeded fault schedules, each against a
// fresh cluster of real cairn processes (see the package doc), and fails
// on any violation, printing the seed, the schedule, what the nemesis did
// and where the histories are. Rerun one schedule with
//
//	go test ./internal/chaos -run TestChaos -chaos.seed=N -chaos.schedules=1 -v
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos schedules take minutes; run without -short")
	}
	base := *flagSeed
	if base == 0 {
		base = uint64(time.Now().UnixNano()) & (1<<48 - 1)
	}
	t.Logf("seeds %d..%d, %v each, %d at a time (rerun one: %s)",
		base, base+uint64(*flagSchedules)-1, *flagDuration, *flagParallel, rerun("N"))
	faults := faultsFlag(t)
	bin := clusterBinary(t)

	var (
		mu      sync.Mutex
		reports []*Report
	)
	sem := make(chan struct{}, max(1, *flagParallel))
	t.Cleanup(func() { summarize(t, reports) })
	for i := range *flagSchedules {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			rep, err := Run(t.Context(), Config{
				Seed:     seed,
				Duration: *flagDuration,
				Nodes:    *flagNodes,
				Faults:   faults,
				Binary:   bin,
				Dir:      runDir(t, fmt.Sprintf("seed-%d", seed)),
				Logger:   testLogger(t),
			})
			if rep != nil {
				mu.Lock()
				reports = append(reports, rep)
				mu.Unlock()
				t.Logf("%s", rep)
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if rep.Failed() {
				t.Errorf("seed %d failed; rerun: %s\n%s\nwhat the nemesis did:\n%s",
					seed, rerun(fmt.Sprint(seed)), rep.Schedule, eventLines(rep.Events))
			}
		})
	}
}

// TestChaosCatchesDataLoss is the control: a run whose nemesis deletes
// every node's data (LoseAllData) must fail, with a linearizability
// violation (acknowledged writes are gone from the final reads) and lost
// appends. A runner that recorded, healed or checked wrongly would pass
// it.
func TestChaosCatchesDataLoss(t *testing.T) {
	seed, rep := runControl(t, "loss", clusterBinary(t), 8*time.Second, LoseAllData)
	if rep.Injected[LoseAllData] == 0 {
		t.Fatalf("seed %d: the control injected no data loss:\n%s", seed, eventLines(rep.Events))
	}
	if rep.Check.Verdict != lincheck.VerdictIllegal {
		t.Errorf("seed %d: data loss not caught by the linearizability check: %v", seed, rep.Check)
	}
	if !slices.ContainsFunc(rep.Violations, func(v string) bool { return strings.HasPrefix(v, "appends: ") }) {
		t.Errorf("seed %d: data loss not caught by the append check; violations: %q", seed, rep.Violations)
	}
}

// runControl runs one control schedule of faults for d on a 3-node
// cluster of bin, and returns its seed (-chaos.seed, or from the clock)
// and report; the caller checks that the run failed as it must.
func runControl(t *testing.T, name, bin string, d time.Duration, faults ...Fault) (uint64, *Report) {
	t.Helper()
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())&(1<<48-1) | 1
	}
	rep, err := Run(t.Context(), Config{
		Seed:     seed,
		Duration: d,
		Nodes:    3,
		Faults:   faults,
		Binary:   bin,
		Dir:      runDir(t, fmt.Sprintf("control-%s-seed-%d", name, seed)),
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	t.Logf("%s", rep)
	return seed, rep
}

// rerun is the command that replays the schedule of seed with this
// run's settings.
func rerun(seed string) string {
	cmd := fmt.Sprintf("go test ./internal/chaos -run '^TestChaos$' -v -chaos.seed=%s -chaos.schedules=1 -chaos.duration=%v", seed, *flagDuration)
	if *flagNodes != 0 {
		cmd += fmt.Sprintf(" -chaos.nodes=%d", *flagNodes)
	}
	if *flagFaults != "" {
		cmd += fmt.Sprintf(" -chaos.faults=%s", *flagFaults)
	}
	if raceEnabled {
		cmd = strings.Replace(cmd, "go test ", "go test -race ", 1)
	}
	if *flagRace != raceEnabled {
		cmd += fmt.Sprintf(" -chaos.race=%v", *flagRace)
	}
	return cmd
}

// TestChaosCatchesDuplicateApplies is the control for exactly-once: a
// server built with control_no_dedup executes a retried write again
// instead of answering it from its session (kv/control.go). Killing and
// pausing leaders makes clients retry writes that did apply; the run must
// fail, with the append check reporting tokens applied twice.
func TestChaosCatchesDuplicateApplies(t *testing.T) {
	seed, rep := runControl(t, "dedup", controlBinary(t, "control_no_dedup"), 20*time.Second, KillLeader, PauseLeader, IsolateLeader)
	if !slices.ContainsFunc(rep.Violations, func(v string) bool { return strings.HasPrefix(v, "appends: ") }) {
		t.Errorf("seed %d: a server that applies retried writes twice passed the append check; violations: %q", seed, rep.Violations)
	}
}

// runDir is where a run's files go: a new directory name under
// -chaos.out (an earlier run's directory of that name is removed first),
// or a temporary directory removed at cleanup unless the run failed.
func runDir(t *testing.T, name string) string {
	if *flagOut != "" {
		dir := filepath.Join(*flagOut, name)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "cairn-chaos-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run files kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	if !*flagVerbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func eventLines(events []Event) string {
	s := ""
	for _, e := range events {
		s += "  " + e.String() + "\n"
	}
	return s
}

// summarize logs the totals of every run (with -v, or when a run failed).
func summarize(t *testing.T, reports []*Report) {
	if len(reports) == 0 {
		return
	}
	injected := map[Fault]int{}
	ops, failed, violations := 0, 0, 0
	var elapsed time.Duration
	for _, r := range reports {
		for f, k := range r.Injected {
			injected[f] += k
		}
		ops += r.Ops
		violations += len(r.Violations)
		if r.Failed() {
			failed++
		}
		elapsed += r.Elapsed
	}
	var kinds []string
	for _, f := range slices.Sorted(maps.Keys(injected)) {
		kinds = append(kinds, fmt.Sprintf("%v %d", f, injected[f]))
	}
	t.Logf("chaos: %d schedules (%d failed), %d register/append ops, %d faults injected (%v), %d violations, %v of runs",
		len(reports), failed, ops, total(injected), kinds, violations, elapsed.Round(time.Second))
}

package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Fault is a kind of fault the nemesis injects.
type Fault int

// The faults. Each is held for a step's duration and then healed; the
// targets named "leader" are found when the step begins (whoever leads
// then), the others are drawn from the seed.
const (
	// KillNodes kill -9s a random set of nodes (one up to all but one)
	// and restarts them when the step ends.
	KillNodes Fault = iota + 1
	// KillLeader kill -9s the leader and restarts it.
	KillLeader
	// KillAll kill -9s every node, one right after another, and restarts
	// them all: every acknowledged write must survive. (The kernel keeps what the
	// processes wrote but did not fsync, so this is not a power loss; the
	// simulator's crashable filesystem covers lost page caches.)
	KillAll
	// PauseLeader SIGSTOPs the leader and SIGCONTs it later: it wakes up
	// believing it still leads, with a term the others have left behind.
	PauseLeader
	// PauseNode SIGSTOPs a random node.
	PauseNode
	// IsolateLeader cuts every link to and from the leader.
	IsolateLeader
	// SplitMajority splits the nodes into a random majority and minority
	// that cannot reach each other.
	SplitMajority
	// Bridge splits the nodes into two halves that cannot reach each
	// other and one node that reaches both (the bridge).
	Bridge
	// LeaderCannotSend cuts the leader's outbound links only: it hears
	// the others, they do not hear it.
	LeaderCannotSend
	// LeaderCannotHear cuts the leader's inbound links only: the others
	// hear its heartbeats, it hears no acknowledgement.
	LeaderCannotHear
	// RandomLinks cuts each directed link with probability 1/3 (at least
	// one): asymmetric, non-transitive reachability.
	RandomLinks
	// Flaky makes every node's peer transport lose, duplicate and delay
	// packets (Admin.SetFaults).
	Flaky
	// SlowDisk delays the writes and fsyncs of a node's Raft log and
	// snapshot files (Admin.SetDiskFaults): the leader's, half the time.
	SlowDisk
	// FullDiskLeader makes the leader's Raft log and snapshot files run out
	// of space (ENOSPC on every write). The state machine's engine (Pebble)
	// is not shaped by the failpoints.
	FullDiskLeader
	// FullDiskAll does the same on every node: no write can commit until
	// it is healed.
	FullDiskAll

	numFaults = int(FullDiskAll)

	// LoseAllData kill -9s every node, deletes every data directory and
	// restarts them: everything acknowledged before is gone. No store
	// survives it, so it is never part of a schedule unless asked for: it
	// is the control that proves a run's checks catch lost writes.
	LoseAllData Fault = 100
)

var faultNames = [...]string{
	KillNodes:        "kill-nodes",
	KillLeader:       "kill-leader",
	KillAll:          "kill-all",
	PauseLeader:      "pause-leader",
	PauseNode:        "pause-node",
	IsolateLeader:    "isolate-leader",
	SplitMajority:    "split-majority",
	Bridge:           "bridge",
	LeaderCannotSend: "leader-cannot-send",
	LeaderCannotHear: "leader-cannot-hear",
	RandomLinks:      "random-links",
	Flaky:            "flaky-network",
	SlowDisk:         "slow-disk",
	FullDiskLeader:   "full-disk-leader",
	FullDiskAll:      "full-disk-all",
}

func (f Fault) String() string {
	if f >= 1 && int(f) <= numFaults {
		return faultNames[f]
	}
	if f == LoseAllData {
		return "lose-all-data"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ParseFault returns the fault named name (as Fault.String names it).
func ParseFault(name string) (Fault, error) {
	for _, f := range append(AllFaults(), LoseAllData) {
		if f.String() == name {
			return f, nil
		}
	}
	return 0, fmt.Errorf("chaos: unknown fault %q", name)
}

// AllFaults lists every fault a schedule draws from by default, in
// declaration order (LoseAllData is not one of them).
func AllFaults() []Fault {
	fs := make([]Fault, numFaults)
	for i := range fs {
		fs[i] = Fault(i + 1)
	}
	return fs
}

// Step is one fault of a schedule: injected At (after the run's start),
// held For, then healed.
type Step struct {
	At, For time.Duration
	Fault   Fault
	// Seed seeds the choices the step makes when it begins (which nodes,
	// which links, which link mode, how slow), so that those too come from
	// the schedule's seed.
	Seed uint64
}

func (s Step) String() string {
	return fmt.Sprintf("at %6.2fs for %5.2fs: %s", s.At.Seconds(), s.For.Seconds(), s.Fault)
}

// Schedule is what the nemesis does in one run: a pure function of the
// seed, the run's length and the cluster's size (NewSchedule), so that a
// failing run's faults are replayed from its seed. (The real processes'
// timing is not replayed: which operations meet which fault varies from
// run to run.)
type Schedule struct {
	Seed     uint64
	Nodes    int
	Duration time.Duration
	Steps    []Step
}

// Timing of a schedule. Faults last long enough to outlast an election
// timeout (500ms by default) several times over, and are separated by
// calm spells in which the cluster recovers.
const (
	warmup  = 2 * time.Second // calm at the start: the workload gets going
	minHold = 1 * time.Second
	maxHold = 5 * time.Second
	minCalm = 500 * time.Millisecond
	maxCalm = 2500 * time.Millisecond
	// tail is kept free of faults at the end of the run: every fault is
	// healed by Duration - tail.
	tail = 2 * time.Second
)

// NewSchedule draws a schedule from seed for a run of d on a cluster of
// nodes nodes, of the given faults (none: AllFaults). It cycles through
// them in an order drawn from the seed, so that a handful of runs with
// different seeds covers them all.
func NewSchedule(seed uint64, nodes int, d time.Duration, faults ...Fault) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973)) // "nemesis"
	s := Schedule{Seed: seed, Nodes: nodes, Duration: d}
	if len(faults) == 0 {
		faults = AllFaults()
	}
	perm := rng.Perm(len(faults))
	order := make([]Fault, len(perm))
	for i, k := range perm {
		order[i] = faults[k]
	}
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	at := warmup
	for i := 0; ; i++ {
		f := order[i%len(order)]
		hold := between(minHold, maxHold)
		if at+hold > d-tail {
			hold = d - tail - at
			if hold < minHold {
				break
			}
		}
		s.Steps = append(s.Steps, Step{At: at, For: hold, Fault: f, Seed: rng.Uint64()})
		at += hold + between(minCalm, maxCalm)
	}
	return s
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule of seed %d: %d nodes, %v, %d faults\n", s.Seed, s.Nodes, s.Duration, len(s.Steps))
	for _, st := range s.Steps {
		fmt.Fprintf(&b, "  %s\n", st)
	}
	return b.String()
}

// picker makes a step's choices, from the step's seed.
type picker struct{ rng *rand.Rand }

func newPicker(seed uint64) *picker { return &picker{rand.New(rand.NewPCG(seed, 1))} }

// intn returns a number in [0, n).
func (p *picker) intn(n int) int { return p.rng.IntN(n) }

// perm returns a permutation of [0, n).
func (p *picker) perm(n int) []int { return p.rng.Perm(n) }

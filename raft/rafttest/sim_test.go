package rafttest

import (
	"testing"

	"github.com/cairnkv/cairn/raft"
)

// The simulator is deterministic: the same seed gives the same run, event
// for event, which is what makes a printed seed a reproduction.
func TestSimDeterministic(t *testing.T) {
	for _, mode := range []string{"chaos", "figure8"} {
		fingerprint := func(seed uint64) [4]uint64 {
			c := newChaosScheduleConfig(seed)
			if mode == "figure8" {
				c = NewFigure8ScheduleConfig(seed)
			}
			c.Options.ReproRun = "^TestSimDeterministic$"
			s := RunSchedule(t, c)
			st := s.Stats()
			return [4]uint64{s.Now(), uint64(st.Total()), uint64(s.MaxCommitted()), s.check.commit(s.MaxCommitted()).chain}
		}
		ss := seeds(1, 2, 3, 4, 5)
		if mode == "figure8" {
			ss = ss[:1]
		}
		for _, seed := range ss {
			a, b := fingerprint(seed), fingerprint(seed)
			if a != b {
				t.Fatalf("%s seed %d: two runs differ: %v vs %v", mode, seed, a, b)
			}
			if c := fingerprint(seed + 1000); c == a {
				t.Fatalf("%s seeds %d and %d gave identical runs %v", mode, seed, seed+1000, a)
			}
		}
	}
}

// The liveness monitor watches exactly while a quorum is up, connected
// among itself, cut off from the rest and left alone on a network that
// neither loses nor delays messages, and checks it once per bound.
func TestLivenessMonitorWatches(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 5})
	bound := LivenessTicks(s.opts)
	checks := func() int { k, _ := s.LivenessStats(); return k }
	expect := func(what string, want int) {
		t.Helper()
		before := checks()
		s.Run(3 * bound)
		if got := checks() - before; got != want {
			s.Fatalf("%s: the monitor made %d checks in %d ticks; want %d", what, got, 3*bound, want)
		}
	}
	// A check every bound ticks, the first a bound after the tick the
	// conditions (last) began to hold.
	expect("all connected", 2)
	expect("still all connected", 3)
	s.Partition([]raft.NodeID{1, 2, 3}, []raft.NodeID{4, 5})
	expect("a quorum on an island", 2)
	s.Link(4, 1)
	expect("a link from outside into the quorum", 0)
	s.Heal()
	s.Crash(5)
	expect("a minority down", 2)
	s.SetNet(NetOptions{Loss: 0.01})
	expect("a lossy network", 0)
	s.SetNet(NetOptions{MaxDelay: 1})
	expect("a network that delays", 0)
	s.SetNet(NetOptions{Dup: 0.1, Reorder: true})
	expect("duplication and reordering", 2)
	s.Crash(4)
	s.Crash(3)
	expect("a majority down", 0)
}

// The trace a failure prints is readable and bounded.
func TestTraceIsBounded(t *testing.T) {
	s := newSim(t, 1, Options{Nodes: 3})
	waitLeader(s)
	s.Run(100)
	out := s.trace.String()
	if n := len(out); n == 0 || n > traceLen*200 {
		t.Fatalf("trace of %d bytes", n)
	}
}

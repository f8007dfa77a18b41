package rafttest

import (
	"testing"
)

// The simulator is deterministic: the same seed gives the same run, event
// for event, which is what makes a printed seed a reproduction.
func TestSimDeterministic(t *testing.T) {
	fingerprint := func(seed uint64) [4]uint64 {
		c := NewScheduleConfig(seed)
		c.Options.ReproRun = "^TestSimDeterministic$"
		s := RunSchedule(t, c)
		st := s.Stats()
		return [4]uint64{s.Now(), uint64(st.Total()), uint64(s.MaxCommitted()), s.check.commit(s.MaxCommitted()).chain}
	}
	for _, seed := range seeds(1, 2, 3, 4, 5) {
		a, b := fingerprint(seed), fingerprint(seed)
		if a != b {
			t.Fatalf("seed %d: two runs differ: %v vs %v", seed, a, b)
		}
		if c := fingerprint(seed + 1000); c == a {
			t.Fatalf("seeds %d and %d gave identical runs %v", seed, seed+1000, a)
		}
	}
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

package rafttest

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// et is the election timeout every test runs with (the core's default).
const et = raft.DefaultElectionTick

// liveness is the default bound for a healthy majority to elect a leader
// and commit (see LivenessTicks).
var liveness = LivenessTicks(Options{})

// waitLeaderAmong ticks until one of ids leads and returns it, failing the
// test if none does within maxTicks.
func waitLeaderAmong(s *Sim, ids []raft.NodeID, maxTicks int) raft.NodeID {
	s.tb.Helper()
	var l raft.NodeID
	if !s.RunUntil(maxTicks, func() bool { l = s.LeaderAmong(ids); return l != raft.None }) {
		s.Fatalf("no leader among %v within %d ticks", ids, maxTicks)
	}
	return l
}

// waitLeader is waitLeaderAmong all nodes.
func waitLeader(s *Sim) raft.NodeID {
	s.tb.Helper()
	return waitLeaderAmong(s, s.IDs(), liveness)
}

// except returns the node IDs other than those given.
func except(s *Sim, ids ...raft.NodeID) []raft.NodeID {
	var out []raft.NodeID
	for _, id := range s.IDs() {
		if !slices.Contains(ids, id) {
			out = append(out, id)
		}
	}
	return out
}

// testRand returns a source for a test's own random choices, derived from
// the Sim's seed so that -seed reproduces them too.
func testRand(s *Sim) *rand.Rand {
	return rand.New(rand.NewPCG(s.opts.Seed, 0x7e57))
}

// val makes a proposal's data.
func val(format string, args ...any) []byte { return fmt.Appendf(nil, format, args...) }

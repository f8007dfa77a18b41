package rafttest

import (
	"runtime"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
)

// BenchmarkCluster3 measures committed proposals per second, and heap
// allocations per committed entry, through a simulated 3-node cluster on a
// perfect network: the core, the Sim's driver loop and its invariant
// checks together. Each round proposes some entries to the leader and
// settles the cluster: every entry is committed and applied on all three
// nodes before the next round.
//
//	one-by-one:  one entry per round (a lone client, one at a time)
//	calls=64:    64 Propose calls per round (64 concurrent clients, unbatched)
//	batch=64:    one Propose call with 64 commands (a driver that batches)
func BenchmarkCluster3(b *testing.B) {
	b.Run("one-by-one", func(b *testing.B) { benchCluster(b, 3, 1, false) })
	b.Run("calls=64", func(b *testing.B) { benchCluster(b, 3, 64, false) })
	b.Run("batch=64", func(b *testing.B) { benchCluster(b, 3, 64, true) })
}

func benchCluster(b *testing.B, nodes, batch int, oneCall bool) {
	data := make([]byte, 64)
	// A fresh cluster every so often keeps the checker's and state
	// machines' memory bounded; rebuilding it is not timed.
	const perCluster = 20_000
	var s *Sim
	var l raft.NodeID
	fresh := func() {
		b.StopTimer()
		s = New(b, Options{Nodes: nodes, Seed: 1, SnapshotEvery: 1000})
		l = waitLeader(s)
		b.StartTimer()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	b.ResetTimer()
	start := time.Now()
	var setup time.Duration
	done, inCluster := 0, 0
	for done < b.N {
		if s == nil || inCluster >= perCluster {
			t0 := time.Now()
			fresh()
			setup += time.Since(t0)
			inCluster = 0
		}
		n := min(batch, b.N-done)
		var last raft.Index
		if oneCall {
			cmds := make([][]byte, n)
			for i := range cmds {
				cmds[i] = data
			}
			idx, _, err := s.ProposeBatch(l, cmds...)
			if err != nil {
				b.Fatalf("propose: %v", err)
			}
			last = idx + raft.Index(n) - 1
		} else {
			for range n {
				idx, _, err := s.Propose(l, data)
				if err != nil {
					b.Fatalf("propose: %v", err)
				}
				last = idx
			}
		}
		s.Settle()
		for _, id := range s.IDs() {
			if s.StateMachine(id).Applied < last {
				b.Fatalf("node %d applied %d after settling; want %d", id, s.StateMachine(id).Applied, last)
			}
		}
		done += n
		inCluster += n
	}
	elapsed := time.Since(start) - setup
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
	b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(b.N), "allocs/entry")
}

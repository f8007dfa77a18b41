package rafttest

import (
	"runtime"
	"testing"

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
	// machines' memory bounded. Building one (and electing its leader) is
	// neither timed nor counted: the timer is stopped around it, and the
	// allocations are counted only between StartTimer and StopTimer (what
	// testing.B's own allocs/op counts, which ReportAllocs shows too).
	const perCluster = 20_000
	var s *Sim
	var l raft.NodeID
	var ms runtime.MemStats
	var mallocs uint64 // allocations in the timed region so far
	var start uint64   // Mallocs when the timer last started
	startTimer := func() {
		runtime.ReadMemStats(&ms)
		start = ms.Mallocs
		b.StartTimer()
	}
	stopTimer := func() {
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - start
	}
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	done, inCluster := 0, 0
	for done < b.N {
		if s == nil || inCluster >= perCluster {
			s = New(b, Options{Nodes: nodes, Seed: 1, SnapshotEvery: 1000})
			l = waitLeader(s)
			inCluster = 0
		}
		n := min(batch, b.N-done, perCluster-inCluster)
		var cmds [][]byte
		if oneCall {
			cmds = make([][]byte, n)
			for i := range cmds {
				cmds[i] = data
			}
		}
		startTimer()
		var last raft.Index
		if oneCall {
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
		stopTimer()
		for _, id := range s.IDs() {
			if s.StateMachine(id).Applied < last {
				b.Fatalf("node %d applied %d after settling; want %d", id, s.StateMachine(id).Applied, last)
			}
		}
		done += n
		inCluster += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
	b.ReportMetric(float64(mallocs)/float64(b.N), "allocs/entry")
}

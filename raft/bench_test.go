package raft

import (
	"fmt"
	"runtime"
	"testing"
)

// Benchmarks of the core alone: committed proposals per second and heap
// allocations per committed entry, for one node and for three nodes wired
// in-process (every message handed to its recipient's Step at once, every
// Ready persisted to a MemoryStorage and applied). Nothing but the core
// and MemoryStorage runs: no network, no disk, no goroutines.
//
//	go test ./raft -run '^$' -bench BenchmarkCommit -benchmem
//
// Metrics: entries/s (committed normal entries per wall-clock second) and
// allocs/entry (heap allocations in the whole loop, drivers included,
// divided by committed entries).

type benchNode struct {
	n       *Node
	s       *MemoryStorage
	applied Index
	// compacted is the index storage was last compacted to.
	compacted Index
}

type benchCluster struct {
	nodes []*benchNode
	// msgs is the batch being delivered, next the one being collected.
	msgs, next []Message
	// committed counts normal entries applied by the leader (node 1).
	committed int
}

// benchCompactEvery bounds MemoryStorage's growth: every so many applied
// entries a node snapshots and compacts, as a real driver would.
const benchCompactEvery = 1 << 14

func newBenchCluster(b *testing.B, n int) *benchCluster {
	b.Helper()
	c := &benchCluster{}
	ids := make([]NodeID, n)
	for i := range ids {
		ids[i] = NodeID(i + 1)
	}
	for _, id := range ids {
		s := NewMemoryStorage()
		if err := Bootstrap(s, ids...); err != nil {
			b.Fatal(err)
		}
		node, err := NewNode(Config{ID: id, Storage: s, Logger: discardLogger})
		if err != nil {
			b.Fatal(err)
		}
		c.nodes = append(c.nodes, &benchNode{n: node, s: s})
	}
	c.nodes[0].n.Campaign()
	c.run(b)
	if c.nodes[0].n.Status().Role != Leader {
		b.Fatal("node 1 did not become leader")
	}
	c.committed = 0
	return c
}

// run handles Readies and delivers messages until nothing is left to do.
func (c *benchCluster) run(b *testing.B) {
	for {
		progress := false
		for i, bn := range c.nodes {
			for bn.n.HasReady() {
				progress = true
				rd := bn.n.Ready()
				c.next = append(c.next, rd.Messages...)
				if err := bn.s.Append(rd.Entries); err != nil {
					b.Fatal(err)
				}
				if !rd.HardState.IsEmpty() {
					bn.s.SetHardState(rd.HardState)
				}
				c.next = append(c.next, rd.MessagesAfterPersist...)
				for j := range rd.CommittedEntries {
					e := &rd.CommittedEntries[j]
					if i == 0 && e.Type == EntryNormal {
						c.committed++
					}
					bn.applied = e.Index
				}
				bn.n.Advance(rd)
				if bn.applied >= bn.compacted+2*benchCompactEvery {
					at := bn.applied - benchCompactEvery
					if _, err := bn.s.CreateSnapshot(at, bn.n.Status().Config); err != nil {
						b.Fatal(err)
					}
					if err := bn.s.Compact(at); err != nil {
						b.Fatal(err)
					}
					bn.compacted = at
				}
			}
		}
		if len(c.next) > 0 {
			progress = true
			c.msgs, c.next = c.next, c.msgs[:0]
			for k := range c.msgs {
				m := &c.msgs[k]
				if err := c.nodes[m.To-1].n.Step(*m); err != nil {
					b.Fatal(err)
				}
				*m = Message{} // let the entries be collected
			}
		}
		if !progress {
			return
		}
	}
}

func BenchmarkCommit(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, batch := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("nodes=%d/batch=%d", nodes, batch), func(b *testing.B) {
				benchmarkCommit(b, nodes, batch)
			})
		}
	}
}

func benchmarkCommit(b *testing.B, nodes, batch int) {
	c := newBenchCluster(b, nodes)
	leader := c.nodes[0].n
	payload := make([]byte, 128)
	cmds := make([][]byte, batch)
	for i := range cmds {
		cmds[i] = payload
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := leader.Propose(cmds...); err != nil {
			b.Fatal(err)
		}
		c.run(b)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if want := b.N * batch; c.committed != want {
		b.Fatalf("committed %d entries, want %d", c.committed, want)
	}
	b.ReportMetric(float64(c.committed)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(c.committed), "allocs/entry")
}

package raft

import (
	"fmt"
	"testing"
)

type smokeNode struct {
	n  *Node
	s  *MemoryStorage
	sm []Entry
}

func newSmoke(t *testing.T, ids ...NodeID) map[NodeID]*smokeNode {
	out := map[NodeID]*smokeNode{}
	for _, id := range ids {
		s := NewMemoryStorage()
		if err := Bootstrap(s, ids...); err != nil {
			t.Fatal(err)
		}
		n, err := NewNode(Config{ID: id, Storage: s, Seed: uint64(id), Logger: discardLogger})
		if err != nil {
			t.Fatal(err)
		}
		out[id] = &smokeNode{n: n, s: s}
	}
	return out
}

func smokeRun(t *testing.T, nodes map[NodeID]*smokeNode, ticks int, ids []NodeID) {
	var q []Message
	for range ticks {
		for _, id := range ids {
			nodes[id].n.Tick()
		}
		for progress := true; progress; {
			progress = false
			for _, id := range ids {
				sn := nodes[id]
				for sn.n.HasReady() {
					progress = true
					rd := sn.n.Ready()
					q = append(q, rd.Messages...)
					if rd.Snapshot != nil {
						sn.s.ApplySnapshot(*rd.Snapshot)
					}
					sn.s.Append(rd.Entries)
					if !rd.HardState.IsEmpty() {
						sn.s.SetHardState(rd.HardState)
					}
					q = append(q, rd.MessagesAfterPersist...)
					sn.sm = append(sn.sm, rd.CommittedEntries...)
					sn.n.Advance(rd)
				}
			}
			for len(q) > 0 {
				progress = true
				m := q[0]
				q = q[1:]
				if err := nodes[m.To].n.Step(m); err != nil {
					t.Fatalf("step %s: %v", DescribeMessage(m), err)
				}
			}
		}
	}
}

func TestSmoke(t *testing.T) {
	ids := []NodeID{1, 2, 3}
	nodes := newSmoke(t, ids...)
	smokeRun(t, nodes, 30, ids)
	var lead NodeID
	for _, id := range ids {
		st := nodes[id].n.Status()
		t.Logf("%d: %s term=%d lead=%d commit=%d", id, st.Role, st.Term, st.Lead, st.Commit)
		if st.Role == Leader {
			lead = id
		}
	}
	if lead == 0 {
		t.Fatal("no leader")
	}
	for i := range 5 {
		if _, _, err := nodes[lead].n.Propose([]byte(fmt.Sprint("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	smokeRun(t, nodes, 3, ids)
	for _, id := range ids {
		t.Logf("%d applied %s", id, DescribeEntries(nodes[id].sm))
		if len(nodes[id].sm) != 7 {
			t.Errorf("node %d applied %d entries", id, len(nodes[id].sm))
		}
	}
}

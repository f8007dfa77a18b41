package replica_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica/memnet"
)

// msgCounter counts the Raft messages memnet carries, by sender and type.
type msgCounter struct {
	mu sync.Mutex
	n  map[raft.NodeID]map[raft.MessageType]int
}

func countMessages(net *memnet.Network) *msgCounter {
	mc := &msgCounter{n: map[raft.NodeID]map[raft.MessageType]int{}}
	net.SetFilter(func(p memnet.Packet) bool {
		if p.Msg != nil {
			mc.mu.Lock()
			if mc.n[p.From] == nil {
				mc.n[p.From] = map[raft.MessageType]int{}
			}
			mc.n[p.From][p.Msg.Type]++
			mc.mu.Unlock()
		}
		return true
	})
	return mc
}

func (mc *msgCounter) get(from raft.NodeID, typ raft.MessageType) int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.n[from][typ]
}

// A lease read on the leader is answered from its lease, without a round
// of heartbeats, and sees the latest acknowledged write; on a follower it
// is a ReadIndex (the leader confirms with a round) and sees it too.
//
// Every clock is stopped, so that no heartbeat goes out on a timer: a
// heartbeat seen during a read belongs to a read round. The leader's lease
// is measured in its own ticks, so it stays valid while its clock stands.
func TestLeaseRead(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	c.propose(ctx, "x=0")
	for _, id := range c.ids {
		c.nodes[id].clock.paused.Store(true)
	}
	mc := countMessages(c.net)

	// A ReadIndex on the leader takes a round of heartbeats (which also
	// renews the lease, from the tick that round began).
	if _, err := c.r(lead).ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if mc.get(lead, raft.MsgHeartbeat) == 0 {
		t.Fatal("ReadIndex on the leader sent no heartbeat")
	}

	f := c.others(lead)[0]
	for i := 1; i <= 10; i++ {
		want := strconv.Itoa(i)
		res, err := c.r(lead).Propose(ctx, []byte("x="+want))
		if err != nil {
			t.Fatal(err)
		}
		written := res.(applied).Index

		before := mc.get(lead, raft.MsgHeartbeat)
		idx, err := c.r(lead).LeaseRead(ctx)
		if err != nil {
			t.Fatalf("lease read %d on the leader: %v", i, err)
		}
		if got := mc.get(lead, raft.MsgHeartbeat) - before; got != 0 {
			t.Fatalf("lease read %d on the leader sent %d heartbeats", i, got)
		}
		if idx < written {
			t.Fatalf("lease read index %d is before the acknowledged write at %d", idx, written)
		}
		if got, _ := c.nodes[lead].sm.get("x"); got != want {
			t.Fatalf("leader's lease read saw x=%q after x=%q was acknowledged", got, want)
		}

		before, asked := mc.get(lead, raft.MsgHeartbeat), mc.get(f, raft.MsgReadIndex)
		idx, err = c.r(f).LeaseRead(ctx)
		if err != nil {
			t.Fatalf("lease read %d on follower %d: %v", i, f, err)
		}
		if mc.get(f, raft.MsgReadIndex) == asked || mc.get(lead, raft.MsgHeartbeat) == before {
			t.Fatalf("lease read %d on the follower did not ask the leader, or the leader did not confirm with a round", i)
		}
		if idx < written {
			t.Fatalf("follower's read index %d is before the acknowledged write at %d", idx, written)
		}
		if got, _ := c.nodes[f].sm.get("x"); got != want {
			t.Fatalf("follower's lease read saw x=%q after x=%q was acknowledged", got, want)
		}
	}
}

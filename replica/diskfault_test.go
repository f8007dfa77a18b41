package replica_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/storage/wal"
)

// failSyncs makes every fsync of node id's WAL fail with EIO once armed.
func failSyncs(c *cluster, id raft.NodeID) *atomic.Bool {
	var armed atomic.Bool
	c.nodes[id].fs.SetInjector(func(op vfs.Op) error {
		if armed.Load() && (op.Kind == vfs.OpSync || op.Kind == vfs.OpSyncDir) && strings.HasPrefix(op.Path, replica.WALDir(dataDir)) {
			return syscall.EIO
		}
		return nil
	})
	return &armed
}

// An fsync error is never retried as if nothing happened: the replica
// stops (failing what is pending with an error that names the cause),
// leads nothing from then on, and the group carries on without it. It
// restarts from what its disk really holds, and no acknowledged write is
// lost.
func TestFsyncErrorStopsTheReplica(t *testing.T) {
	for _, victimLeads := range []bool{true, false} {
		t.Run(fmt.Sprintf("leader=%v", victimLeads), func(t *testing.T) {
			ctx := testContext(t)
			c := newDiskCluster(t, 3, 16<<10, func(cfg *replica.Config) {
				cfg.SnapshotEvery = 20
				cfg.CompactionMargin = 5
			})
			acked := newAckLog()
			lead := c.waitLeader(ctx)
			for i := range 20 {
				k := fmt.Sprintf("a%d", i)
				c.propose(ctx, k+"=1")
				acked.add(k, "1")
			}
			victim := lead
			if !victimLeads {
				victim = c.others(lead)[0]
			}
			r := c.r(victim)
			failSyncs(c, victim).Store(true)

			if victimLeads {
				_, err := r.Propose(ctx, []byte("doomed=1"))
				if !errors.Is(err, replica.ErrStopped) || !errors.Is(err, replica.ErrLogFailed) ||
					!errors.Is(err, wal.ErrIO) || !errors.Is(err, syscall.EIO) {
					t.Fatalf("proposal whose fsync failed: %v; want ErrStopped wrapping ErrLogFailed, wal.ErrIO and EIO", err)
				}
			} else {
				// The group commits without it; its own write fails.
				c.propose(ctx, "b=1")
				acked.add("b", "1")
			}
			select {
			case <-r.Done():
			case <-ctx.Done():
				t.Fatal("the replica kept running after a failed fsync")
			}
			if err := r.Err(); !errors.Is(err, replica.ErrLogFailed) || !errors.Is(err, wal.ErrIO) {
				t.Fatalf("Err after a failed fsync: %v", err)
			}
			if err := r.Stop(); !errors.Is(err, replica.ErrLogFailed) {
				t.Fatalf("Stop after a failed fsync: %v", err)
			}
			if st, _ := r.Leader(); st.Role == raft.Leader || st.Lead != raft.None {
				t.Fatalf("stopped replica still reports %+v", st)
			}
			if _, err := r.ReadIndex(ctx); !errors.Is(err, replica.ErrStopped) || !errors.Is(err, wal.ErrIO) {
				t.Fatalf("read on the stopped replica: %v", err)
			}
			c.forget(victim)

			// The others elect a leader (a new one if the victim led) and
			// take writes.
			newLead := c.waitLeader(ctx, c.others(victim)...)
			if victimLeads && newLead == victim {
				t.Fatal("the failed leader still leads")
			}
			for i := range 20 {
				k := fmt.Sprintf("c%d", i)
				c.propose(ctx, k+"=1")
				acked.add(k, "1")
			}

			// Restart it from what its disk holds after a power cut (the
			// failed fsync may have lost what it covered).
			c.nodes[victim].fs = c.nodes[victim].fs.Crash()
			c.start(victim)
			checkAcknowledged(ctx, t, c, acked)
		})
	}
}

// fullDiskValue is the size of the writes of the full-disk tests: each
// needs a new 4 KiB WAL segment, so that a full disk shows at once.
const fullDiskValue = 3000

// fullDiskCluster starts a 3-node disk-backed cluster for the full-disk
// tests: 4 KiB segments, and snapshots kept out of the way.
//
// Its election timeout is wide (200-400ms): a leader deposed while every
// disk is full leaves a successor that cannot commit its first entry, and
// so cannot serve linearizable reads, until space is freed. Only a loaded
// test machine would depose it here.
func fullDiskCluster(t *testing.T) *cluster {
	return newDiskCluster(t, 3, 4<<10, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 1000
		cfg.Raft.ElectionTick = 100
	})
}

// fill makes node id's disk full: nothing more may be allocated.
func (c *cluster) fill(id raft.NodeID) { c.nodes[id].fs.SetCapacity(c.nodes[id].fs.Used()) }

// unfill frees node id's disk.
func (c *cluster) unfill(id raft.NodeID) { c.nodes[id].fs.SetCapacity(0) }

// A follower whose disk is full cannot write what the leader sends, so it
// acknowledges none of it; it keeps running, serving what it holds, and
// catches up once space is freed. The group never notices but for the
// missing acknowledgements.
func TestFullDiskFollower(t *testing.T) {
	ctx := testContext(t)
	c := fullDiskCluster(t)
	val := strings.Repeat("v", fullDiskValue)
	acked := newAckLog()
	lead := c.waitLeader(ctx)
	for i := range 5 {
		k := fmt.Sprintf("a%d", i)
		c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	f := c.others(lead)[0]
	c.waitApplied(ctx, c.waitAppliedIndex(ctx, lead))
	c.fill(f)
	var last raft.Index
	for i := range 10 {
		k := fmt.Sprintf("b%d", i)
		_, last = c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	st, err := c.r(lead).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	match := st.Progress[f].Match
	held, _ := c.nodes[f].disk.Log.LastIndex()
	if match > held {
		t.Fatalf("the full follower acknowledged up to %d but holds only up to %d", match, held)
	}
	if held >= last {
		t.Fatalf("the full follower wrote everything (up to %d): the disk was not full", held)
	}
	select {
	case <-c.r(f).Done():
		t.Fatalf("the full follower stopped: %v", c.r(f).Err())
	default:
	}
	if v, _ := c.nodes[f].sm.get("a0"); v != val {
		t.Fatal("the full follower cannot serve what it holds")
	}

	c.unfill(f)
	checkAcknowledged(ctx, t, c, acked)
}

// waitNotLeading waits until node id no longer believes it leads.
func (c *cluster) waitNotLeading(ctx context.Context, id raft.NodeID) {
	c.t.Helper()
	for {
		st, changed := c.r(id).Leader()
		if st.Role != raft.Leader {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			c.t.Fatalf("node %d still leads: %+v", id, st)
		}
	}
}

// waitAppliedIndex returns the index node id has applied, as its Status
// says.
func (c *cluster) waitAppliedIndex(ctx context.Context, id raft.NodeID) raft.Index {
	c.t.Helper()
	st, err := c.r(id).Status(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return st.Applied
}

// A leader whose disk is full cannot write its own entry, but its
// followers can: they commit it, the leader hands them its leadership, and
// writes go on. Once space is freed the old leader writes what it held,
// catches up, and its proposer learns the entry committed.
func TestFullDiskLeader(t *testing.T) {
	ctx := testContext(t)
	c := fullDiskCluster(t)
	val := strings.Repeat("v", fullDiskValue)
	acked := newAckLog()
	lead := c.waitLeader(ctx)
	for i := range 5 {
		k := fmt.Sprintf("a%d", i)
		c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	c.fill(lead)
	p := c.r(lead).ProposeAsync(ctx, []byte("x="+val))

	newLead := c.waitLeader(ctx, c.others(lead)...)
	c.waitNotLeading(ctx, lead)
	_, err := c.r(lead).Propose(ctx, []byte("y=1"))
	var nl *replica.NotLeaderError
	if !errors.As(err, &nl) {
		t.Fatalf("proposal to the full former leader: %v; want a NotLeaderError", err)
	}
	for i := range 10 {
		k := fmt.Sprintf("b%d", i)
		if _, err := c.r(newLead).Propose(ctx, []byte(k+"="+val)); err != nil {
			t.Fatal(err)
		}
		acked.add(k, val)
	}
	held, _ := c.nodes[lead].disk.Log.LastIndex()
	if xi, _ := p.Index(); xi != 0 && held >= xi {
		t.Fatalf("the full leader wrote its entry %d after all", xi)
	}
	select {
	case <-c.r(lead).Done():
		t.Fatalf("the full leader stopped: %v", c.r(lead).Err())
	default:
	}

	c.unfill(lead)
	if _, err := p.Wait(ctx); err != nil {
		t.Fatalf("the entry the full leader could not write, which its followers did: %v", err)
	}
	acked.add("x", val)
	checkAcknowledged(ctx, t, c, acked)
}

// When every disk is full, the group keeps its leader, which refuses new
// writes with ErrNoSpace at once; it keeps serving linearizable reads (on
// leader and followers) and serializable ones, and loses nothing: the
// writes it held commit once space is freed, and new ones are taken.
func TestFullDiskEverywhere(t *testing.T) {
	ctx := testContext(t)
	c := fullDiskCluster(t)
	val := strings.Repeat("v", fullDiskValue)
	acked := newAckLog()
	lead := c.waitLeader(ctx)
	for i := range 5 {
		k := fmt.Sprintf("a%d", i)
		c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	c.waitApplied(ctx, c.waitAppliedIndex(ctx, lead))
	for _, id := range c.ids {
		c.fill(id)
	}

	// Writes go on while they fit in what the disks had allocated; the
	// first that does not is held, and the leader refuses the next.
	held := map[string]*replica.Proposal{}
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		k := fmt.Sprintf("b%d", i)
		p := c.r(lead).ProposeAsync(ctx, []byte(k+"="+val))
		select {
		case <-p.Done():
		case <-time.After(300 * time.Millisecond):
			held[k] = p // written nowhere: waiting for space
			continue
		}
		switch _, err := p.Wait(ctx); {
		case err == nil:
			acked.add(k, val)
		case errors.Is(err, replica.ErrNoSpace):
			refused = true
		default:
			t.Fatalf("write %s: %v", k, err)
		}
	}
	if !refused || len(held) == 0 {
		t.Fatalf("refused %v, held %d: the disks never filled up", refused, len(held))
	}
	start := time.Now()
	if _, err := c.r(lead).Propose(ctx, []byte("c="+val)); !errors.Is(err, replica.ErrNoSpace) {
		t.Fatalf("write to the full leader: %v; want ErrNoSpace", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ErrNoSpace took %v: not fast", d)
	}

	// Linearizable reads, on the leader and on every follower that holds
	// the whole committed log (one that could not write a committed entry
	// cannot serve them until it can).
	st, err := c.r(lead).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		if last, _ := c.nodes[id].disk.Log.LastIndex(); last < st.Commit {
			t.Logf("node %d holds up to %d, short of the commit index %d: no linearizable reads there", id, last, st.Commit)
			continue
		}
		if _, err := c.r(id).ReadIndex(ctx); err != nil {
			t.Fatalf("linearizable read on node %d with every disk full: %v", id, err)
		}
		for k, v := range acked.all() {
			if got, _ := c.nodes[id].sm.get(k); got != v {
				t.Fatalf("node %d reads %s=%q, the acknowledged value is %q", id, k, got, v)
			}
		}
	}
	for _, id := range c.ids {
		select {
		case <-c.r(id).Done():
			t.Fatalf("node %d stopped: %v", id, c.r(id).Err())
		default:
		}
	}
	if now := c.waitLeader(ctx); now != lead {
		t.Fatalf("leadership moved from %d to %d while every disk was full", lead, now)
	}

	// Space is freed: what was held is written and commits, and new
	// writes are taken.
	for _, id := range c.ids {
		c.unfill(id)
	}
	for k, p := range held {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatalf("held write %s after space was freed: %v", k, err)
		}
		acked.add(k, val)
	}
	c.propose(ctx, "after=free")
	acked.add("after", "free")
	checkAcknowledged(ctx, t, c, acked)
}

package replica_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

func TestElectsOneLeader(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	st, err := c.r(lead).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != raft.Leader || st.ID != lead || len(st.Progress) != 3 {
		t.Fatalf("leader %d status: %+v", lead, st)
	}
}

// Every proposer gets its own command's result, at its own entry's index,
// while many proposals run concurrently (and so are batched).
func TestProposalsReturnTheirOwnResults(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)

	const proposers, each = 16, 20
	var wg sync.WaitGroup
	errc := make(chan error, proposers*each)
	for g := range proposers {
		wg.Go(func() {
			for i := range each {
				cmd := fmt.Sprintf("k%d-%d=v", g, i)
				p := c.r(lead).ProposeAsync(ctx, []byte(cmd))
				res, err := p.Wait(ctx)
				if err != nil {
					errc <- fmt.Errorf("%s: %w", cmd, err)
					continue
				}
				idx, term := p.Index()
				if got := res.(applied); got.Cmd != cmd || got.Index != idx || term == 0 {
					errc <- fmt.Errorf("%s at (%d, %d) got result %+v", cmd, idx, term, got)
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Every replica applied the same commands.
	res, idx := c.propose(ctx, "last=1")
	if res.Index != idx {
		t.Fatalf("result %+v for index %d", res, idx)
	}
	c.waitApplied(ctx, idx)
	want := c.nodes[lead].sm.copy()
	if len(want) != proposers*each+1 {
		t.Fatalf("leader has %d keys, want %d", len(want), proposers*each+1)
	}
	for _, id := range c.ids {
		if got := c.nodes[id].sm.copy(); !maps.Equal(got, want) {
			t.Errorf("node %d state differs from the leader's", id)
		}
	}
}

// One goroutine may pipeline proposals with ProposeAsync; they resolve in
// log order with consecutive indexes.
func TestProposeAsyncPipelines(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	r := c.r(c.waitLeader(ctx))
	var ps []*replica.Proposal
	for i := range 50 {
		ps = append(ps, r.ProposeAsync(ctx, []byte("p"+strconv.Itoa(i)+"=x")))
	}
	var prev raft.Index
	for i, p := range ps {
		res, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("proposal %d: %v", i, err)
		}
		idx, _ := p.Index()
		if idx <= prev || res.(applied).Index != idx {
			t.Fatalf("proposal %d at index %d (previous %d), result %+v", i, idx, prev, res)
		}
		prev = idx
	}
}

func TestProposeOnFollowerNamesLeader(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	f := c.others(lead)[0]
	_, err := c.r(f).Propose(ctx, []byte("a=1"))
	var nl *replica.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, replica.ErrNotLeader) {
		t.Fatalf("propose on follower: %v, want a NotLeaderError", err)
	}
	if nl.Leader != lead {
		t.Fatalf("leader hint %d, want %d", nl.Leader, lead)
	}
	if _, err := c.r(lead).Propose(ctx, nil); !errors.Is(err, replica.ErrEmptyCommand) {
		t.Fatalf("empty command: %v", err)
	}
}

// A follower's ReadIndex returns only once the follower has applied every
// write acknowledged before the read began: each read sees the write just
// before it, although the follower learns of it only through the read.
func TestFollowerReadIndexSeesCommittedWrite(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	f := c.others(lead)[0]
	for i := range 30 {
		want := strconv.Itoa(i)
		res, err := c.r(lead).Propose(ctx, []byte("x="+want))
		if err != nil {
			t.Fatal(err)
		}
		idx, err := c.r(f).ReadIndex(ctx)
		if err != nil {
			t.Fatalf("read %d on follower: %v", i, err)
		}
		if idx < res.(applied).Index {
			t.Fatalf("read index %d is before the acknowledged write at %d", idx, res.(applied).Index)
		}
		if got, _ := c.nodes[f].sm.get("x"); got != want {
			t.Fatalf("follower read x=%q after write x=%q was acknowledged", got, want)
		}
	}
	// And on the leader.
	if _, err := c.r(lead).ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
}

// A leader cut off from its group accepts a proposal that can never
// commit; a new leader takes its index. Once the old leader rejoins, its
// proposer learns ErrNotCommitted, never the new leader's result.
func TestOverwrittenProposalIsNotCommitted(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	old := c.waitLeader(ctx)
	_, idx := c.propose(ctx, "a=1")
	c.waitApplied(ctx, idx)

	// Stop the old leader's clock so that it stays leader (check-quorum
	// would otherwise make it step down) while it is cut off.
	c.nodes[old].clock.paused.Store(true)
	c.net.Disconnect(old)
	lost := c.r(old).ProposeAsync(ctx, []byte("lost=1"))

	rest := c.others(old)
	lead := c.waitLeader(ctx, rest...)
	won, err := c.r(lead).Propose(ctx, []byte("won=1"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost.Done():
		res, err := lost.Wait(ctx)
		t.Fatalf("the cut-off leader's proposal resolved early: %v, %v", res, err)
	default:
	}

	c.nodes[old].clock.paused.Store(false)
	c.net.Connect(old)
	res, err := lost.Wait(ctx)
	if !errors.Is(err, replica.ErrNotCommitted) {
		t.Fatalf("overwritten proposal: result %+v, error %v; want ErrNotCommitted", res, err)
	}
	if res != nil {
		t.Fatalf("overwritten proposal got a result: %+v", res)
	}
	c.waitApplied(ctx, won.(applied).Index)
	for _, id := range c.ids {
		if _, ok := c.nodes[id].sm.get("lost"); ok {
			t.Errorf("node %d applied the overwritten command", id)
		}
		if v, _ := c.nodes[id].sm.get("won"); v != "1" {
			t.Errorf("node %d lacks the new leader's write", id)
		}
	}
}

// Stopping a replica fails everything pending with ErrStopped, and every
// later call too.
func TestStopFailsPendingFutures(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	r := c.r(lead)
	for _, id := range c.others(lead) {
		c.net.Disconnect(id) // nothing can commit now
	}
	pending := r.ProposeAsync(ctx, []byte("never=1"))
	errc := make(chan error, 2)
	go func() { _, err := r.ReadIndex(ctx); errc <- err }()
	go func() { errc <- r.WaitApplied(ctx, 1<<40) }()

	c.stop(lead)
	if _, err := pending.Wait(ctx); !errors.Is(err, replica.ErrStopped) {
		t.Errorf("pending proposal: %v, want ErrStopped", err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, replica.ErrStopped) {
			t.Errorf("pending wait: %v, want ErrStopped", err)
		}
	}
	if _, err := r.Propose(ctx, []byte("late=1")); !errors.Is(err, replica.ErrStopped) {
		t.Errorf("propose after stop: %v", err)
	}
	if _, err := r.Status(ctx); !errors.Is(err, replica.ErrStopped) {
		t.Errorf("status after stop: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

// A stopped replica restarts from its durable stores with an empty state
// machine and catches up; so does a whole cluster stopped at once.
func TestRestartFromMemoryStorage(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 8 // restarts restore from a snapshot, then replay
		cfg.CompactionMargin = 3
	})
	lead := c.waitLeader(ctx)
	for i := range 20 {
		c.propose(ctx, fmt.Sprintf("a%d=%d", i, i))
	}
	f := c.others(lead)[0]
	c.stop(f)
	var last raft.Index
	for i := range 20 {
		_, last = c.propose(ctx, fmt.Sprintf("b%d=%d", i, i))
	}
	c.start(f)
	c.waitApplied(ctx, last)
	want := c.nodes[c.waitLeader(ctx)].sm.copy()
	if got := c.nodes[f].sm.copy(); !maps.Equal(got, want) {
		t.Fatalf("restarted follower has %d keys, leader %d", len(got), len(want))
	}

	// Now everyone at once: nothing committed may be lost.
	for _, id := range c.ids {
		c.stop(id)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	_, last = c.propose(ctx, "after=restart")
	c.waitApplied(ctx, last)
	want["after"] = "restart"
	for _, id := range c.ids {
		if _, err := c.r(id).ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.nodes[id].sm.copy(); !maps.Equal(got, want) {
			t.Errorf("node %d after full restart has %d keys, want %d", id, len(got), len(want))
		}
		if c.nodes[id].snaps.Len() == 0 {
			t.Errorf("node %d never took a snapshot", id)
		}
	}
}

// A follower that misses more than the leader keeps in its log catches up
// from a snapshot sent over the transport.
func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 10
		cfg.CompactionMargin = 2
	})
	lead := c.waitLeader(ctx)
	_, idx := c.propose(ctx, "first=1")
	c.waitApplied(ctx, idx)

	f := c.others(lead)[0]
	c.net.Disconnect(f)
	var last raft.Index
	for i := range 60 {
		_, last = c.propose(ctx, fmt.Sprintf("k%d=%d", i, i))
	}
	lead = c.waitLeader(ctx, c.others(f)...)
	leaderFirst, _ := c.nodes[lead].log.FirstIndex()
	followerLast, _ := c.nodes[f].log.LastIndex()
	if leaderFirst <= followerLast+1 {
		t.Fatalf("leader's log starts at %d; follower's ends at %d: no snapshot needed", leaderFirst, followerLast)
	}

	c.net.Connect(f)
	if err := c.r(f).WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	snap, _ := c.nodes[f].log.Snapshot()
	if snap.Index <= followerLast {
		t.Fatalf("follower's snapshot is at %d, not past its old log end %d", snap.Index, followerLast)
	}
	want := c.nodes[lead].sm.copy()
	if got := c.nodes[f].sm.copy(); !maps.Equal(got, want) {
		t.Fatalf("follower has %d keys after catching up, leader %d", len(got), len(want))
	}
	// The follower serves linearizable reads again.
	if _, err := c.r(f).ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTransferLeadership(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	c.propose(ctx, "a=1")
	to := c.others(lead)[0]

	var nl *replica.NotLeaderError
	if err := c.r(to).TransferLeadership(ctx, lead); !errors.As(err, &nl) {
		t.Fatalf("transfer from a follower: %v", err)
	}
	if err := c.r(lead).TransferLeadership(ctx, to); err != nil {
		t.Fatalf("transfer %d -> %d: %v", lead, to, err)
	}
	if got := c.waitLeader(ctx); got != to {
		t.Fatalf("leader is %d after transfer to %d", got, to)
	}
	if _, err := c.r(to).Propose(ctx, []byte("b=2")); err != nil {
		t.Fatal(err)
	}
}

func TestContextEndsWait(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	for _, id := range c.others(lead) {
		c.net.Disconnect(id)
	}
	short, cancel := context.WithCancel(ctx)
	p := c.r(lead).ProposeAsync(short, []byte("x=1"))
	cancel()
	if _, err := p.Wait(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with cancelled context: %v", err)
	}
	if _, err := c.r(lead).ReadIndex(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with cancelled context: %v", err)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := replica.Config{Raft: raft.Config{ID: 3}, MaxStepBatch: -1}
	err := cfg.Validate()
	if !errors.Is(err, replica.ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 8 {
		t.Fatalf("want 8 problems, got: %v", err)
	}
	if _, err := replica.New(replica.Config{}); !errors.Is(err, replica.ErrInvalidConfig) {
		t.Fatalf("New with empty config: %v", err)
	}
}

// When the index of a cut-off leader's proposal is compacted away by the
// new leader, the old leader catches up by snapshot and cannot see the
// entry that won the index: its proposer is told the outcome is unknown,
// never given a result.
func TestProposalFoldedIntoSnapshotIsUnknown(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 10
		cfg.CompactionMargin = 2
	})
	old := c.waitLeader(ctx)
	_, idx := c.propose(ctx, "a=1")
	c.waitApplied(ctx, idx)

	c.nodes[old].clock.paused.Store(true)
	c.net.Disconnect(old)
	lost := c.r(old).ProposeAsync(ctx, []byte("lost=1"))

	rest := c.others(old)
	lead := c.waitLeader(ctx, rest...)
	var last raft.Index
	for i := range 40 {
		res, err := c.r(lead).Propose(ctx, []byte(fmt.Sprintf("k%d=%d", i, i)))
		if err != nil {
			t.Fatal(err)
		}
		last = res.(applied).Index
	}
	if first, _ := c.nodes[lead].log.FirstIndex(); first <= idx+1 {
		t.Fatalf("leader's log still starts at %d", first)
	}

	c.nodes[old].clock.paused.Store(false)
	c.net.Connect(old)
	res, err := lost.Wait(ctx)
	if !errors.Is(err, replica.ErrOutcomeUnknown) || res != nil {
		t.Fatalf("proposal under a snapshot: result %+v, error %v; want ErrOutcomeUnknown", res, err)
	}
	if err := c.r(old).WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.nodes[old].sm.get("lost"); ok {
		t.Fatal("the overwritten command was applied")
	}
}

// failingLog is a LogStore whose Save fails once armed.
type failingLog struct {
	*replica.MemoryLogStore
	armed atomic.Bool
}

var errDiskGone = errors.New("disk gone")

func (l *failingLog) Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, sync bool) error {
	if l.armed.Load() {
		return errDiskGone
	}
	return l.MemoryLogStore.Save(hs, ents, snap, sync)
}

// A failed write stops the replica: it cannot know what reached the disk.
// Pending and later calls fail with ErrStopped wrapping the cause, and
// Stop returns the cause.
func TestFatalStorageErrorStopsReplica(t *testing.T) {
	ctx := testContext(t)
	var logs []*failingLog
	c := newCluster(t, 1, func(cfg *replica.Config) {
		l := &failingLog{MemoryLogStore: cfg.Log.(*replica.MemoryLogStore)}
		logs = append(logs, l)
		cfg.Log = l
	})
	r := c.r(c.waitLeader(ctx))
	if _, err := r.Propose(ctx, []byte("a=1")); err != nil {
		t.Fatal(err)
	}
	logs[0].armed.Store(true)
	_, err := r.Propose(ctx, []byte("b=2"))
	if !errors.Is(err, replica.ErrStopped) || !errors.Is(err, errDiskGone) {
		t.Fatalf("proposal when the disk fails: %v", err)
	}
	<-r.Done()
	if err := r.Stop(); !errors.Is(err, errDiskGone) {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := r.ReadIndex(ctx); !errors.Is(err, replica.ErrStopped) {
		t.Fatalf("read after the failure: %v", err)
	}
	c.nodes[1].r = nil // already stopped
}

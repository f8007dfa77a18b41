package replica_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

// outcome is what a proposer learned about one command.
type outcome int

const (
	committed    outcome = iota // its own result came back
	refused                     // refused before entering the log
	notCommitted                // ErrNotCommitted: lost its index to another entry
	unknown                     // timeout, stop, snapshot: may or may not apply
)

// TestChurn runs proposers against a 5-replica group while partitions,
// crashes and restarts come and go, then heals everything and checks:
// every proposer got its own command's result or a clear error; every
// committed command is in every replica's final state; no command reported
// not committed is anywhere; all replicas agree.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churn is not short")
	}
	ctx := testContext(t)
	c := newCluster(t, 5, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 25
		cfg.CompactionMargin = 5
	})
	c.waitLeader(ctx)

	const duration = 2 * time.Second
	stop := make(chan struct{})
	var mu sync.Mutex
	outcomes := map[string]outcome{}
	record := func(key string, o outcome) {
		mu.Lock()
		outcomes[key] = o
		mu.Unlock()
	}

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			target := c.ids[rng.IntN(len(c.ids))]
			refusals := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := c.r(target)
				if r == nil {
					// Crashed: try a running replica instead, waiting for
					// one to start if none runs.
					ids, changed := c.running()
					if len(ids) > 0 {
						target = ids[rng.IntN(len(ids))]
						continue
					}
					select {
					case <-changed:
					case <-stop:
						return
					}
					continue
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				p := r.ProposeAsync(pctx, []byte(key+"=v"))
				res, err := p.Wait(pctx)
				cancel()
				var nl *replica.NotLeaderError
				if !errors.As(err, &nl) {
					refusals = 0
				}
				switch {
				case err == nil:
					idx, _ := p.Index()
					if got := res.(applied); got.Cmd != key+"=v" || got.Index != idx {
						t.Errorf("%s at %d got someone else's result %+v", key, idx, got)
					}
					record(key, committed)
				case errors.As(err, &nl):
					record(key, refused)
					refusals++
					if nl.Leader != raft.None && refusals <= 2 {
						target = nl.Leader
						continue
					}
					// No leader known, or hints that go round in circles
					// (stale ones): wait for this replica to learn of a
					// change, then follow its hint.
					st, changed := r.Leader()
					wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
					select {
					case <-changed:
						st, _ = r.Leader()
					case <-wctx.Done():
					}
					cancel()
					refusals = 0
					target = st.Lead
					if target == raft.None {
						target = c.ids[rng.IntN(len(c.ids))]
					}
					continue
				case errors.Is(err, replica.ErrNotCommitted):
					record(key, notCommitted)
				case errors.Is(err, replica.ErrStopped), errors.Is(err, replica.ErrOutcomeUnknown),
					errors.Is(err, context.DeadlineExceeded):
					record(key, unknown)
					target = c.ids[rng.IntN(len(c.ids))]
				default:
					record(key, unknown)
					if !errors.Is(err, raft.ErrTransferInProgress) && !errors.Is(err, raft.ErrUncommittedLimit) {
						t.Errorf("%s: unexpected error %v", key, err)
					}
				}
			}
		})
	}

	// The fault injector: one change every few tens of milliseconds.
	rng := rand.New(rand.NewPCG(42, 42))
	faults := time.NewTicker(30 * time.Millisecond)
	deadline := time.After(duration)
churn:
	for {
		select {
		case <-deadline:
			break churn
		case <-faults.C:
		}
		id := c.ids[rng.IntN(len(c.ids))]
		switch rng.IntN(6) {
		case 0:
			c.net.Disconnect(id)
		case 1:
			c.net.Connect(id)
		case 2:
			perm := rng.Perm(len(c.ids))
			var a, b []raft.NodeID
			for i, k := range perm {
				if i < len(perm)/2 {
					a = append(a, c.ids[k])
				} else {
					b = append(b, c.ids[k])
				}
			}
			c.net.Heal()
			c.net.Partition(a, b)
		case 3:
			c.net.Heal()
		case 4:
			if c.r(id) != nil {
				c.stop(id)
			}
		case 5:
			if c.r(id) == nil {
				c.start(id)
			}
		}
	}
	faults.Stop()
	close(stop)
	wg.Wait()

	// Heal, restart everyone, and let the group settle on one history.
	c.net.Heal()
	for _, id := range c.ids {
		if c.r(id) == nil {
			c.start(id)
		}
	}
	_, last := c.propose(ctx, "final=1")
	c.waitApplied(ctx, last)
	want := c.nodes[c.ids[0]].sm.copy()
	counts := map[outcome]int{}
	for key, o := range outcomes {
		counts[o]++
		_, present := want[key]
		switch {
		case o == committed && !present:
			t.Errorf("%s was committed but is missing", key)
		case (o == notCommitted || o == refused) && present:
			t.Errorf("%s was reported not committed but was applied", key)
		}
	}
	for _, id := range c.ids[1:] {
		if got := c.nodes[id].sm.copy(); !maps.Equal(got, want) {
			t.Errorf("node %d's state (%d keys) differs from node %d's (%d keys)", id, len(got), c.ids[0], len(want))
		}
	}
	t.Logf("outcomes: %d committed, %d refused, %d not committed, %d unknown",
		counts[committed], counts[refused], counts[notCommitted], counts[unknown])
	if counts[committed] == 0 {
		t.Error("nothing committed during churn")
	}
}

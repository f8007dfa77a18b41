package lincheck

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/server"
)

// TestChanceMatchesIntN: with share 1/3, chance makes the same decisions
// from the same draws as the rng.IntN(3) == 0 it replaced, so seeds
// recorded before LeaseReadShare existed replay the same operations.
func TestChanceMatchesIntN(t *testing.T) {
	a := rand.New(rand.NewPCG(7, 11))
	b := rand.New(rand.NewPCG(7, 11))
	for i := range 1_000_000 {
		if got, want := chance(a, 1.0/3), b.IntN(3) == 0; got != want {
			t.Fatalf("draw %d: chance %v, IntN(3) == 0 %v", i, got, want)
		}
	}
	// The edges draw too, and say what they must.
	c := rand.New(rand.NewPCG(1, 2))
	d := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		if chance(c, 0) || !chance(c, 1) || chance(c, -1) || !chance(c, 2) {
			t.Fatal("chance(0) or chance(1) drew wrong")
		}
		d.Uint64()
		d.Uint64()
		d.Uint64()
		d.Uint64()
	}
	if c.Uint64() != d.Uint64() {
		t.Fatal("chance at the edges did not draw exactly once")
	}
}

// TestWorkloadRun runs the default workload on a real 3-node cluster for
// about a second: the history holds every kind of operation, every value
// written is unique, and it is linearizable with every append applied
// once, in order.
func TestWorkloadRun(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the cluster's cleanup
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c.WaitLeader(ctx, server.DefaultGroup)

	rec := NewRecorder()
	wl := DefaultWorkload()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	id := 0
	for range 2 {
		cl := c.Client(func(cfg *client.Config) { cfg.Retry.JitterSeed = seed })
		for range 3 {
			kv := NewKV(rec, cl, id)
			rng := rand.New(rand.NewPCG(seed, uint64(id)+1))
			id++
			wg.Go(func() { wl.Run(stop, kv, rng) })
		}
	}
	run := time.NewTimer(time.Second)
	select {
	case <-run.C:
	case <-ctx.Done():
		t.Error("the test's context ended during the run")
	}
	close(stop)
	wg.Wait()

	// Final reads of the append keys, recorded, for CheckAppends.
	final, err := ReadFinal(ctx, NewKV(rec, c.Client(), id), wl.Logs, 3)
	if err != nil {
		t.Fatal(err)
	}

	hist := rec.History()
	t.Logf("history: %s", Summary(hist))
	kinds := map[Kind]int{}
	written := map[string]Op{}
	for _, op := range hist {
		kinds[op.Input.Kind]++
		if !op.Input.Kind.IsWrite() || op.Input.Kind == Delete {
			continue
		}
		if prev, dup := written[op.Input.Value]; dup {
			t.Errorf("value %q written twice: %v and %v", op.Input.Value, prev, op)
		}
		written[op.Input.Value] = op
	}
	for _, k := range []Kind{Get, Put, CompareAndSwap, Delete, Append} {
		if kinds[k] == 0 {
			t.Errorf("no %v in the history", k)
		}
	}
	res := Check(hist, Options{Timeout: time.Minute, VisualizationDir: t.TempDir()})
	if err := res.Err(); err != nil {
		t.Errorf("seed %d: %v", seed, err)
	}
	if err := CheckAppends(hist, final); err != nil {
		t.Errorf("seed %d: appends: %v", seed, err)
	}
	if !slices.ContainsFunc(hist, func(op Op) bool { return op.Output.Outcome == OK && op.Input.Kind.IsWrite() }) {
		t.Error("no write succeeded")
	}
}

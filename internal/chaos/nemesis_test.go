package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
)

// Each leader fault lands: injected through the nemesis, it costs the
// leader its leadership (the others elect one of their own), and healing
// it lets the cluster serve writes again. A nemesis whose faults did
// nothing would make every chaos run vacuous.
func TestNemesisLeaderFaultsLand(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := startTestCluster(ctx, t, 3)
	cl := newTestClient(t, c.ClientAddrs())
	nem := newNemesis(c, Schedule{}, time.Now(), t.Logf)
	for i, f := range []Fault{IsolateLeader, PauseLeader, LeaderCannotSend, LeaderCannotHear, KillLeader} {
		t.Run(f.String(), func(t *testing.T) {
			old, _ := ctLeader(ctx, t, c)
			heal, err := nem.inject(ctx, i, Step{Fault: f, Seed: uint64(i + 1)})
			if err != nil {
				t.Fatalf("injecting: %v", err)
			}
			if missed := nem.leaderMisses; missed != 0 {
				t.Fatalf("the nemesis found no leader to target (%d misses)", missed)
			}
			// The others elect a leader of their own while the fault holds.
			ctLeader(ctx, t, c, old)
			if err := heal(ctx); err != nil {
				t.Fatalf("healing: %v", err)
			}
			ctPut(ctx, t, cl, "k", fmt.Sprintf("after %v", f))
		})
	}
}

// A full disk everywhere stops writes, and healing it lets them through.
func TestNemesisFullDiskLands(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := startTestCluster(ctx, t, 3)
	cl := newTestClient(t, c.ClientAddrs())
	ctLeader(ctx, t, c)
	ctPut(ctx, t, cl, "k", "before")
	nem := newNemesis(c, Schedule{}, time.Now(), t.Logf)
	heal, err := nem.inject(ctx, 0, Step{Fault: FullDiskAll, Seed: 1})
	if err != nil {
		t.Fatalf("injecting: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cl.Put(wctx, []byte("k"), []byte("during"))
	wcancel()
	if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write with every disk full: %v, want it refused as unavailable", err)
	}
	if err := heal(ctx); err != nil {
		t.Fatalf("healing: %v", err)
	}
	ctPut(ctx, t, cl, "k", "after")
	ctGet(ctx, t, cl, "k", "after")
	for _, id := range c.IDs() {
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if f := st.GetDiskFaults(); f.GetNoSpace() || f.GetSyncDelayMs() != 0 {
			t.Fatalf("n%d still reports disk faults after healing: %v", id, f)
		}
	}
}

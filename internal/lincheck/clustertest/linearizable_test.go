package clustertest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// TestLinearizableNoFaults: the workload on a healthy cluster.
func TestLinearizableNoFaults(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	wl := defaultWorkload()
	run := h.start(wl)
	h.sleep(runDuration(3 * time.Second))
	run.end()
	h.finish(wl)
}

// TestLinearizablePartitions: partitions of every shape, each held for a
// while and healed: the leader isolated, a follower isolated (the
// minority), the leader unable to send (one way) or to hear (the other
// way), and a bridge (two nodes that cannot talk, both talking to the
// third).
func TestLinearizablePartitions(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	wl := defaultWorkload()
	run := h.start(wl)
	deadline := time.Now().Add(runDuration(8 * time.Second))
	for time.Now().Before(deadline) {
		h.logf("%s", h.partition())
		h.sleep(h.between(500*time.Millisecond, 2*time.Second))
		h.c.Heal()
		h.logf("healed")
		h.sleep(h.between(300*time.Millisecond, time.Second))
	}
	run.end()
	h.finish(wl)
}

// partition cuts the network in a shape drawn at random and says which.
func (h *harness) partition() string {
	ids := h.c.IDs()
	lead := h.leader(2 * time.Second)
	if lead == raft.None {
		lead = ids[h.rng.IntN(len(ids))]
	}
	rest := without(ids, lead)
	follower := rest[h.rng.IntN(len(rest))]
	switch h.rng.IntN(6) {
	case 0:
		h.c.Isolate(lead)
		return fmt.Sprintf("isolated the leader %d", lead)
	case 1:
		h.c.Isolate(follower)
		return fmt.Sprintf("isolated follower %d", follower)
	case 2:
		for _, o := range rest {
			h.c.Cut(lead, o)
		}
		return fmt.Sprintf("leader %d can no longer send", lead)
	case 3:
		for _, o := range rest {
			h.c.Cut(o, lead)
		}
		return fmt.Sprintf("leader %d can no longer hear", lead)
	case 4:
		a, b := rest[0], rest[1]
		h.c.Cut(lead, a)
		h.c.Cut(a, lead)
		return fmt.Sprintf("bridge: leader %d and %d cut, %d talks to both", lead, a, b)
	default:
		h.c.Cut(lead, follower)
		return fmt.Sprintf("cut %d -> %d one way", lead, follower)
	}
}

// TestLinearizableCrashRestart: a node, the leader most of the time, is
// stopped as in a crash (or, now and then, shut down gracefully) and
// restarted after a while, over and over.
func TestLinearizableCrashRestart(t *testing.T) {
	// Frequent snapshots, so that a node that was down may catch up by one.
	h := newHarness(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.SnapshotEvery = 500
		cfg.CompactionMargin = 50
	}})
	wl := defaultWorkload()
	run := h.start(wl)
	deadline := time.Now().Add(runDuration(8 * time.Second))
	for time.Now().Before(deadline) {
		ids := h.c.IDs()
		victim := ids[h.rng.IntN(len(ids))]
		if h.rng.IntN(10) < 7 {
			if lead := h.leader(2 * time.Second); lead != raft.None {
				victim = lead
			}
		}
		if h.rng.IntN(5) == 0 {
			h.logf("shutting down node %d", victim)
			h.c.Shutdown(victim)
		} else {
			h.logf("stopping node %d", victim)
			h.c.Stop(victim)
		}
		h.sleep(h.between(300*time.Millisecond, 1500*time.Millisecond))
		h.logf("restarting node %d", victim)
		h.c.Restart(victim)
		h.sleep(h.between(500*time.Millisecond, 1500*time.Millisecond))
	}
	run.end()
	h.finish(wl)
}

// TestLinearizableUnreliableNetwork: the peer links lose, duplicate and
// delay (so reorder) Raft messages, at rates that change every second or
// so; and between clients and nodes, requests are duplicated, replies
// lost (so the client retries), stale copies replayed up to half a second
// after their call returned, and requests delayed. Appends must each
// apply once and in order, and the whole history stay linearizable.
func TestLinearizableUnreliableNetwork(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	cf := newClientFaults(t, h.seed, clientRules{
		Duplicate:   0.1,
		LoseReply:   0.1,
		Replay:      0.2,
		ReplayDelay: 500 * time.Millisecond,
		Delay:       5 * time.Millisecond,
	})
	h.clientFlt = append(h.clientFlt, cf)
	wl := defaultWorkload()
	wl.Configure = func(cfg *client.Config) {
		cfg.DialOptions = append(cfg.DialOptions, cf.DialOption())
	}
	run := h.start(wl)
	deadline := time.Now().Add(runDuration(6 * time.Second))
	for time.Now().Before(deadline) {
		rule := grpcnet.Rule{
			Loss:      []float64{0.01, 0.05, 0.2}[h.rng.IntN(3)],
			Duplicate: 0.1,
			Delay:     time.Millisecond,
			Jitter:    time.Duration(h.rng.IntN(30)) * time.Millisecond,
		}
		for _, id := range h.c.IDs() {
			h.c.Node(id).Faults().Set(grpcnet.AnyPeer, grpcnet.Outbound, rule)
		}
		h.logf("peer links: %+v", rule)
		h.sleep(h.between(500*time.Millisecond, 1500*time.Millisecond))
	}
	run.end()
	t.Logf("client faults: %v", cf)
	h.finish(wl)
}

// logf logs a nemesis step with the recorder's time, to match it with
// the history.
func (h *harness) logf(format string, args ...any) {
	h.t.Helper()
	h.t.Logf("t=%v %s", time.Duration(h.rec.Now()).Round(time.Millisecond), fmt.Sprintf(format, args...))
}

// without returns ids without id.
func without(ids []raft.NodeID, id raft.NodeID) []raft.NodeID {
	return slices.DeleteFunc(slices.Clone(ids), func(o raft.NodeID) bool { return o == id })
}

// TestLinearizableMixedFaults: everything at once, for long runs only
// (-lin.duration): partitions, crashes and restarts, lossy peer links and
// an unreliable client network, each step drawn from the seed.
func TestLinearizableMixedFaults(t *testing.T) {
	if *flagDuration == 0 {
		t.Skip("long runs only: set -lin.duration")
	}
	h := newHarness(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.SnapshotEvery = 500
		cfg.CompactionMargin = 50
	}})
	cf := newClientFaults(t, h.seed, clientRules{
		Duplicate:   0.05,
		LoseReply:   0.05,
		Replay:      0.1,
		ReplayDelay: time.Second,
		Delay:       5 * time.Millisecond,
	})
	h.clientFlt = append(h.clientFlt, cf)
	wl := defaultWorkload()
	wl.Configure = func(cfg *client.Config) {
		cfg.DialOptions = append(cfg.DialOptions, cf.DialOption())
	}
	run := h.start(wl)
	deadline := time.Now().Add(runDuration(0))
	for time.Now().Before(deadline) {
		switch h.rng.IntN(3) {
		case 0:
			h.logf("%s", h.partition())
			h.sleep(h.between(300*time.Millisecond, 2*time.Second))
			h.c.Heal()
		case 1:
			ids := h.c.IDs()
			victim := ids[h.rng.IntN(len(ids))]
			if lead := h.leader(time.Second); lead != raft.None && h.rng.IntN(2) == 0 {
				victim = lead
			}
			h.logf("stopping node %d", victim)
			h.c.Stop(victim)
			h.sleep(h.between(200*time.Millisecond, 1500*time.Millisecond))
			h.logf("restarting node %d", victim)
			h.c.Restart(victim)
		default:
			rule := grpcnet.Rule{Loss: 0.1, Duplicate: 0.1, Delay: time.Millisecond, Jitter: 20 * time.Millisecond}
			for _, id := range h.c.Running() {
				h.c.Node(id).Faults().Set(grpcnet.AnyPeer, grpcnet.Outbound, rule)
			}
			h.logf("lossy peer links")
			h.sleep(h.between(300*time.Millisecond, 1500*time.Millisecond))
			h.c.Heal()
		}
		h.logf("healed")
		h.sleep(h.between(100*time.Millisecond, 700*time.Millisecond))
	}
	run.end()
	t.Logf("client faults: %v", cf)
	h.finish(wl)
}

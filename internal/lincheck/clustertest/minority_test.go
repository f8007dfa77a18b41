package clustertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// TestMinorityPartition cuts one node off from the other two (first the
// leader, then a follower) while the majority goes on writing, and sends
// the cut-off node, directly, writes and linearizable and lease reads:
//
//   - no write it is sent completes, and none of them is ever applied
//     (checked after healing);
//   - a read it serves is not stale: every read, with the majority's
//     writes, is in one history that must be linearizable, and a read
//     sent after a majority write completed must not return an older
//     value.
//
// A client configured with only the cut-off node's endpoint also runs
// (recorded in the same history): it may complete operations by following
// the node's redirect to the leader, but what it sees must be
// linearizable too.
func TestMinorityPartition(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	ctx := h.ctx(120 * time.Second)
	cl := h.client()
	kv := h.newKV(cl)

	for round, target := range []string{"leader", "follower"} {
		lead := h.c.WaitLeader(ctx, server.DefaultGroup)
		victim := lead
		if target == "follower" {
			rest := without(h.c.IDs(), lead)
			victim = rest[h.rng.IntN(len(rest))]
		}
		key := fmt.Sprintf("m%d", round)
		if out, err := kv.Put(ctx, key, fmt.Sprintf("before-%d", round)); out.Outcome != lincheck.OK {
			t.Fatalf("put before the partition: %v", err)
		}
		// Let the victim apply it, so that a stale read has something
		// stale to show.
		mark, err := cl.Put(ctx, []byte("mark"), nil)
		if err != nil {
			t.Fatal(err)
		}
		h.c.WaitApplied(ctx, victim, server.DefaultGroup, raft.Index(mark.Header.AppliedIndex))

		h.c.Isolate(victim)
		h.logf("round %d: isolated node %d (the %s)", round, victim, target)
		m := h.minorityRound(ctx, round, victim, key)
		h.c.Heal()
		h.logf("round %d: healed; %s", round, m)

		// Nothing sent to the cut-off node was applied.
		h.c.WaitLeader(ctx, server.DefaultGroup)
		for _, k := range m.writeKeys {
			res, err := cl.Get(ctx, []byte(k))
			if err == nil {
				t.Errorf("round %d: %q = %q: a write sent to the cut-off node %d was applied", round, k, res.Value, victim)
			} else if !errors.Is(err, client.ErrKeyNotFound) {
				t.Fatalf("round %d: reading %q after healing: %v", round, k, err)
			}
		}
		if m.majorityWrites == 0 {
			t.Errorf("round %d: the majority completed no write while node %d was cut off", round, victim)
		}
	}

	// Final reads, then the check of everything recorded.
	for round := range 2 {
		for _, key := range []string{fmt.Sprintf("m%d", round), fmt.Sprintf("m%d-one", round)} {
			if out, err := kv.Get(ctx, key); out.Outcome != lincheck.OK {
				t.Fatalf("final read of %q: %v", key, err)
			}
		}
	}
	h.check(nil, nil)
}

// minorityResult is what one round of TestMinorityPartition saw.
type minorityResult struct {
	writeKeys                      []string // keys of the writes sent to the victim
	writes, writesDone             int
	reads, readsServed             int
	majorityWrites, oneEndpointOps int
}

func (m minorityResult) String() string {
	return fmt.Sprintf("cut-off node: %d writes (%d completed), %d linearizable/lease reads (%d served); majority: %d writes; one-endpoint client: %d ops completed",
		m.writes, m.writesDone, m.reads, m.readsServed, m.majorityWrites, m.oneEndpointOps)
}

// minorityRound runs, while victim is cut off: the majority writing key,
// raw writes and reads sent to victim, and a client with only victim's
// endpoint. It returns once the majority has written for a while.
func (h *harness) minorityRound(ctx context.Context, round int, victim raft.NodeID, key string) minorityResult {
	t := h.t
	raw := dialKV(t, h.c.ClientAddr(victim))
	var (
		m  minorityResult
		mu sync.Mutex // guards m
		wg sync.WaitGroup
		// lastWrite is the value of the latest majority write that
		// completed.
		lastWrite atomic.Pointer[string]
	)
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}

	// Raw writes to the victim, sessionless, each with a short deadline.
	wg.Go(func() {
		cid := int(h.nextClient.Add(1) - 1)
		for i := 0; !stopped(); i++ {
			k := fmt.Sprintf("minority-%d-%d", round, i)
			p := h.rec.Begin(cid, lincheck.Input{Kind: lincheck.Put, Key: k, Value: "x"})
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := raw.Put(rctx, &kvpb.PutRequest{Key: []byte(k), Value: []byte("x")})
			cancel()
			out := lincheck.Output{Outcome: lincheck.Unknown}
			if err == nil {
				out.Outcome = lincheck.OK
				t.Errorf("round %d: node %d, cut off, completed a write of %q", round, victim, k)
			} else {
				out.Err = err.Error()
			}
			p.End(out)
			mu.Lock()
			m.writes++
			m.writeKeys = append(m.writeKeys, k)
			if err == nil {
				m.writesDone++
			}
			mu.Unlock()
			h.sleep(20 * time.Millisecond)
		}
	})

	// Raw linearizable and lease reads of key from the victim.
	for _, cons := range []kvpb.Consistency{kvpb.Consistency_LINEARIZABLE, kvpb.Consistency_LEASE} {
		wg.Go(func() {
			cid := int(h.nextClient.Add(1) - 1)
			for !stopped() {
				before := lastWrite.Load()
				p := h.rec.Begin(cid, lincheck.Input{Kind: lincheck.Get, Key: key})
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				resp, err := raw.Get(rctx, &kvpb.GetRequest{
					Header: &kvpb.ReadHeader{Consistency: cons},
					Key:    []byte(key),
				})
				cancel()
				out := lincheck.Output{Outcome: lincheck.Unknown}
				if err == nil {
					out = lincheck.Output{Outcome: lincheck.OK, Found: resp.GetFound(), Value: string(resp.GetKv().GetValue())}
				} else {
					out.Err = err.Error()
				}
				p.End(out)
				if err == nil && before != nil && writeSeq(out.Value) < writeSeq(*before) {
					t.Errorf("round %d: %v read at node %d returned %q, sent after %q completed: stale",
						round, cons, victim, out.Value, *before)
				}
				mu.Lock()
				m.reads++
				if err == nil {
					m.readsServed++
				}
				mu.Unlock()
				h.sleep(5 * time.Millisecond)
			}
		})
	}

	// A client that knows only the victim's endpoint.
	wg.Go(func() {
		one := h.c.ClientOf([]string{h.c.ClientAddr(victim)}, func(cfg *client.Config) {
			cfg.AttemptTimeout = 500 * time.Millisecond
			cfg.RequestTimeout = 2 * time.Second
		})
		okv := h.newKV(one)
		for i := 0; !stopped(); i++ {
			var out lincheck.Output
			if i%2 == 0 {
				out, _ = okv.Put(ctx, key+"-one", fmt.Sprintf("one-endpoint-%d-%d", round, i))
			} else {
				out, _ = okv.Get(ctx, key+"-one")
			}
			if out.Outcome == lincheck.OK {
				mu.Lock()
				m.oneEndpointOps++
				mu.Unlock()
			}
		}
	})

	// The majority writes key, through a client of the other two nodes.
	majority := h.c.ClientOf(endpointsOf(h.c, without(h.c.IDs(), victim)), func(cfg *client.Config) {
		cfg.AttemptTimeout = time.Second
	})
	mkv := h.newKV(majority)
	var firstDone time.Time
	for i := 0; firstDone.IsZero() || time.Since(firstDone) < 1500*time.Millisecond; i++ {
		v := fmt.Sprintf("after-%d-%d", round, i)
		out, err := mkv.Put(ctx, key, v)
		if out.Outcome != lincheck.OK {
			if ctx.Err() != nil {
				t.Fatalf("round %d: majority write: %v", round, err)
			}
			continue
		}
		lastWrite.Store(&v)
		mu.Lock()
		m.majorityWrites++
		mu.Unlock()
		if firstDone.IsZero() {
			firstDone = time.Now()
		}
		h.sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	return m
}

// writeSeq is the position of a value of the majority's writes in their
// order: "before-<round>" first, then "after-<round>-<i>" by i.
func writeSeq(v string) int {
	var round, i int
	if _, err := fmt.Sscanf(v, "after-%d-%d", &round, &i); err != nil {
		return -1
	}
	return i
}

// dialKV returns a raw KV client of addr, closed at the test's end.
func dialKV(t *testing.T, addr string) kvpb.KVClient {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kvpb.NewKVClient(cc)
}

func endpointsOf(c *testcluster.Cluster, ids []raft.NodeID) []string {
	var eps []string
	for _, id := range ids {
		eps = append(eps, c.ClientAddr(id))
	}
	return eps
}

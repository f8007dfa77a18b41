package client

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/client/internal/fakekv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startCluster starts a fake cluster, stopped at the test's end.
func startCluster(t *testing.T, cfg fakekv.Config) *fakekv.Cluster {
	t.Helper()
	cl, err := fakekv.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newClient makes a client of endpoints with quick, seeded retries,
// adjusted by mod; it is closed at the test's end (before the cluster,
// which was started first).
func newClient(t *testing.T, endpoints []string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Endpoints: endpoints,
		Retry: RetryPolicy{
			BaseBackoff: time.Millisecond,
			MaxBackoff:  20 * time.Millisecond,
			JitterSeed:  1,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// testContext is bounded well below the test binary's timeout, so that a
// stuck call fails the test with a message rather than hanging it.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// callsOf filters calls by method.
func callsOf(calls []fakekv.Call, method string) []fakekv.Call {
	var out []fakekv.Call
	for _, c := range calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// nodesOf lists the nodes that received calls, in order.
func nodesOf(calls []fakekv.Call) []uint64 {
	var out []uint64
	for _, c := range calls {
		out = append(out, c.Node)
	}
	return out
}

// signal sends on ch without blocking (a buffered "it happened" flag).
func signal[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// await receives from ch, failing the test if ctx ends first.
func await[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// assertExactlyOnce checks that every (session, seq) the cluster executed,
// it executed once.
func assertExactlyOnce(t *testing.T, cl *fakekv.Cluster) {
	t.Helper()
	type key struct{ session, seq uint64 }
	seen := make(map[key]int)
	for _, e := range cl.Executions() {
		if e.Session == 0 {
			t.Errorf("write without a session executed: %+v", e)
			continue
		}
		seen[key{e.Session, e.Seq}]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("session %d seq %d executed %d times", k.session, k.seq, n)
		}
	}
}

var contextWithTimeout = context.WithTimeout

package clustertest

import (
	"context"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/internal/testcluster"
)

// TestHarnessCatchesBrokenGuarantees is the control experiment: a client
// interceptor breaks the guarantees on purpose (a few reads answered with
// an older reply for the same key: stale reads; a few appends sent a
// second time without a session: applied twice), and the checks must
// fail. Without it, a harness that passes everything would look the same
// as a correct cluster.
func TestHarnessCatchesBrokenGuarantees(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	b := &breaker{rng: rand.New(rand.NewPCG(h.seed, 0xbad)), old: map[string][]*kvpb.GetResponse{}}
	wl := defaultWorkload()
	wl.ImpatientShare = 0
	wl.Configure = func(cfg *client.Config) {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(b.intercept))
	}
	run := h.start(wl)
	// Until enough was injected (however slow the machine), within reason.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		h.sleep(500 * time.Millisecond)
		if b.stale.Load() >= 5 && b.doubled.Load() >= 3 {
			break
		}
	}
	run.end()
	final, _ := h.settle(wl)
	res, appendsErr := h.verify(final, wl.Logs)
	t.Logf("injected %d stale reads and %d double appends", b.stale.Load(), b.doubled.Load())
	if b.stale.Load() == 0 || b.doubled.Load() == 0 {
		t.Fatalf("the breaker injected nothing")
	}
	if res.Verdict != lincheck.VerdictIllegal {
		t.Errorf("stale reads and double appends went unnoticed: %v", res)
	} else if _, err := os.Stat(res.Visualization); err != nil {
		t.Errorf("no visualization: %v", err)
	}
	if appendsErr == nil {
		t.Errorf("double appends went unnoticed by CheckAppends")
	} else {
		t.Logf("CheckAppends: %.300v", appendsErr)
	}
}

// breaker is a client interceptor that breaks linearizability and
// exactly-once on purpose.
type breaker struct {
	mu  sync.Mutex
	rng *rand.Rand
	old map[string][]*kvpb.GetResponse // earlier replies, by key

	stale, doubled atomic.Int64
}

func (b *breaker) roll(p float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rng.Float64() < p
}

func (b *breaker) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch r := req.(type) {
	case *kvpb.AppendRequest:
		if b.roll(0.1) {
			again := proto.Clone(r).(*kvpb.AppendRequest)
			again.Header = nil // no session: executed as a new write
			if err := cc.Invoke(ctx, method, again, new(kvpb.AppendResponse)); err == nil {
				b.doubled.Add(1)
			}
		}
	case *kvpb.GetRequest:
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err != nil {
			return err
		}
		resp := reply.(*kvpb.GetResponse)
		key := string(r.GetKey())
		b.mu.Lock()
		defer b.mu.Unlock()
		olds := b.old[key]
		b.old[key] = append(olds, proto.Clone(resp).(*kvpb.GetResponse))
		// An answer from at least three answers ago, of a value: values
		// are unique, so it is gone for good (if the current answer
		// differs) and reading it now is illegal.
		if len(olds) >= 3 && b.rng.Float64() < 0.2 {
			stale := olds[b.rng.IntN(len(olds)-2)]
			if stale.GetFound() && !proto.Equal(stale.GetKv(), resp.GetKv()) {
				proto.Reset(resp)
				proto.Merge(resp, stale)
				b.stale.Add(1)
			}
		}
		return nil
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// clientRules say what clientFaults does to each KV request.
type clientRules struct {
	// Duplicate is the probability that a second copy of the request is
	// sent alongside it (its answer ignored).
	Duplicate float64
	// LoseReply is the probability that the request is delivered and
	// executed but its reply lost: the call sees UNAVAILABLE, and the
	// client retries.
	LoseReply float64
	// Replay is the probability that a copy of the request is sent again
	// later, up to ReplayDelay after the call returned: a stale packet
	// that wandered in the network.
	Replay      float64
	ReplayDelay time.Duration
	// Delay holds each request back up to this long.
	Delay time.Duration
}

// clientFaults makes the network between clients and the cluster
// unreliable, as a gRPC client interceptor (installed through
// client.Config.DialOptions): requests duplicated, replies lost, stale
// copies replayed late, requests delayed. The exactly-once machinery
// (sessions, sequence numbers, cached results, STALE_SEQUENCE) must make
// every write apply once whatever it does.
type clientFaults struct {
	life   context.Context
	cancel context.CancelFunc
	copies sync.WaitGroup // duplicates and replays in flight

	mu struct {
		sync.Mutex
		rng   *rand.Rand
		rules clientRules
	}
	stats struct {
		duplicated, lost, replayed, staleReplays, delayed atomic.Int64
	}
}

// newClientFaults returns clientFaults with rules; the test's cleanup
// waits for its copies.
func newClientFaults(t *testing.T, seed uint64, rules clientRules) *clientFaults {
	f := &clientFaults{}
	f.life, f.cancel = context.WithCancel(context.Background())
	f.mu.rng = rand.New(rand.NewPCG(seed, 0xc11e))
	f.mu.rules = rules
	t.Cleanup(func() {
		f.cancel()
		f.copies.Wait()
	})
	return f
}

// DialOption installs f on a client's connections.
func (f *clientFaults) DialOption() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(f.intercept)
}

// quiesce stops injecting faults and waits for the copies in flight.
func (f *clientFaults) quiesce() {
	f.mu.Lock()
	f.mu.rules = clientRules{}
	f.mu.Unlock()
	f.copies.Wait()
}

func (f *clientFaults) String() string {
	return fmt.Sprintf("duplicated %d, replies lost %d, replayed late %d (refused as stale %d), delayed %d",
		f.stats.duplicated.Load(), f.stats.lost.Load(), f.stats.replayed.Load(),
		f.stats.staleReplays.Load(), f.stats.delayed.Load())
}

// faulted are the methods clientFaults meddles with: the KV data calls.
var faulted = map[string]bool{
	kvpb.KV_Get_FullMethodName:            true,
	kvpb.KV_Put_FullMethodName:            true,
	kvpb.KV_Delete_FullMethodName:         true,
	kvpb.KV_CompareAndSwap_FullMethodName: true,
	kvpb.KV_Append_FullMethodName:         true,
	kvpb.KV_Batch_FullMethodName:          true,
}

type clientVerdict struct {
	delay, replayAfter time.Duration
	duplicate, lose    bool
	replay             bool
}

func (f *clientFaults) decide() clientVerdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, rng := f.mu.rules, f.mu.rng
	var v clientVerdict
	if r.Delay > 0 {
		v.delay = time.Duration(rng.Int64N(int64(r.Delay)))
	}
	v.duplicate = rng.Float64() < r.Duplicate
	v.lose = rng.Float64() < r.LoseReply
	if rng.Float64() < r.Replay && r.ReplayDelay > 0 {
		v.replay = true
		v.replayAfter = time.Duration(rng.Int64N(int64(r.ReplayDelay)))
	}
	return v
}

func (f *clientFaults) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !faulted[method] || f.life.Err() != nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	v := f.decide()
	if v.delay > 0 {
		f.stats.delayed.Add(1)
		t := time.NewTimer(v.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	var clone proto.Message
	if v.duplicate || v.replay {
		// The client may reuse req for its next attempt: copy it now.
		clone = proto.Clone(req.(proto.Message))
	}
	if v.duplicate {
		f.stats.duplicated.Add(1)
		f.sendCopy(cc, method, clone, reply, 0)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if v.replay {
		f.stats.replayed.Add(1)
		f.sendCopy(cc, method, clone, reply, v.replayAfter)
	}
	if err == nil && v.lose {
		f.stats.lost.Add(1)
		return status.Error(codes.Unavailable, "clientfaults: reply lost")
	}
	return err
}

// sendCopy sends req again on cc after delay, from a goroutine, and
// ignores the answer (but counts the copies refused as stale).
func (f *clientFaults) sendCopy(cc *grpc.ClientConn, method string, req proto.Message, replyType any, delay time.Duration) {
	reply := replyType.(proto.Message).ProtoReflect().New().Interface()
	f.copies.Go(func() {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-f.life.Done():
				t.Stop()
				return
			}
		}
		ctx, cancel := context.WithTimeout(f.life, 2*time.Second)
		defer cancel()
		err := cc.Invoke(ctx, method, req, reply)
		if kvpb.DetailOf(err).GetCode() == kvpb.ErrorCode_STALE_SEQUENCE {
			f.stats.staleReplays.Add(1)
		}
	})
}

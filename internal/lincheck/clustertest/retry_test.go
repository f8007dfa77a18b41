package clustertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// TestRetryAcrossLeaderChange: an append executes at the leader but its
// reply is lost; before the client retries, the leader changes (the
// leader crashes, or shuts down handing off, or is cut off). The retry,
// with the same session and seq, reaches the new leader, which must answer
// with the original result (the same length: the token's original
// position) and not apply the append again. Other clients append to the
// same key all along, so a second application would land elsewhere; the
// final value must hold each token exactly once, where its append said.
func TestRetryAcrossLeaderChange(t *testing.T) {
	h := newHarness(t, testcluster.Options{})
	ctx := h.ctx(120 * time.Second)
	lr := &lostReply{stop: t.Context().Done()}
	cl := h.client(func(cfg *client.Config) {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(lr.intercept))
		// Room for the leader change while the reply is held back.
		cfg.AttemptTimeout = 2 * time.Second
		cfg.RequestTimeout = 60 * time.Second
	})
	kv := h.newKV(cl)

	wl := defaultWorkload()
	wl.Logs, wl.AppendShare = []string{"log"}, 1
	wl.Clients, wl.Workers = 2, 2
	run := h.start(wl)

	for round, change := range []string{"crash", "shutdown", "isolate"} {
		token := "target-" + change + lincheck.AppendSep
		first := lr.arm(token)
		type result struct {
			out lincheck.Output
			res *client.AppendResult
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, res, err := kv.Append(ctx, "log", token)
			done <- result{out, res, err}
		}()
		var got firstAttempt
		select {
		case got = <-first:
		case <-ctx.Done():
			t.Fatalf("round %d: the append's first attempt never executed", round)
		}
		old := raft.NodeID(got.resp.GetHeader().GetNodeId())
		h.logf("round %d: %q executed at node %d (length %d), reply held back; %s the leader",
			round, token, old, got.resp.GetLength(), change)
		switch change {
		case "crash":
			h.c.Stop(old)
		case "shutdown":
			h.c.Shutdown(old)
		case "isolate":
			h.c.Isolate(old)
		}
		lead := h.c.WaitLeader(ctx, server.DefaultGroup, without(h.c.IDs(), old)...)
		h.logf("round %d: node %d leads; the reply is lost, the client retries", round, lead)
		close(got.release)

		r := <-done
		switch {
		case r.err != nil:
			t.Errorf("round %d: the retried append failed: %v", round, r.err)
		case r.res.Length != got.resp.GetLength():
			t.Errorf("round %d: the retry returned length %d, the original execution %d: not the original result",
				round, r.res.Length, got.resp.GetLength())
		case raft.NodeID(r.res.Header.Node) == old:
			t.Errorf("round %d: the retry was answered by node %d, the old leader", round, old)
		default:
			h.logf("round %d: the retry returned the original length %d, from node %d", round, r.res.Length, r.res.Header.Node)
		}
		attempts := lr.attempts(token)
		if len(attempts) < 2 {
			t.Errorf("round %d: %d attempts of the append, want a retry", round, len(attempts))
		}
		for _, a := range attempts[1:] {
			if a.GetSessionId() != attempts[0].GetSessionId() || a.GetSeq() != attempts[0].GetSeq() {
				t.Errorf("round %d: the retry was sent as session %d seq %d, the first attempt as %d/%d",
					round, a.GetSessionId(), a.GetSeq(), attempts[0].GetSessionId(), attempts[0].GetSeq())
			}
		}

		switch change {
		case "crash", "shutdown":
			h.c.Restart(old)
		case "isolate":
			h.c.Heal()
		}
	}
	run.end()
	// finish checks that every token, the targets included, is in the
	// final value exactly once, ending where its append's result said.
	h.finish(wl)
}

// lostReply is a client interceptor that, for an armed append token,
// lets the first attempt execute, hands its reply to the test and holds
// it until the test releases it, then reports the reply lost
// (UNAVAILABLE), so that the client retries.
type lostReply struct {
	stop <-chan struct{} // the test's end: stop holding replies

	mu    sync.Mutex
	armed map[string]chan firstAttempt
	sent  map[string][]*kvpb.WriteHeader
}

type firstAttempt struct {
	resp    *kvpb.AppendResponse
	release chan struct{}
}

// arm makes the next append of token lose its reply; its response arrives
// on the returned channel.
func (l *lostReply) arm(token string) <-chan firstAttempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.armed == nil {
		l.armed = map[string]chan firstAttempt{}
		l.sent = map[string][]*kvpb.WriteHeader{}
	}
	ch := make(chan firstAttempt, 1)
	l.armed[token] = ch
	return ch
}

// attempts returns the write headers of the attempts of token's append.
func (l *lostReply) attempts(token string) []*kvpb.WriteHeader {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[token]
}

func (l *lostReply) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ar, ok := req.(*kvpb.AppendRequest)
	if !ok {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	token := string(ar.GetSuffix())
	l.mu.Lock()
	ch := l.armed[token]
	delete(l.armed, token)
	if l.sent != nil {
		l.sent[token] = append(l.sent[token], ar.GetHeader())
	}
	l.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if ch == nil || err != nil {
		if ch != nil { // not executed for sure: arm again for the next attempt
			l.mu.Lock()
			l.armed[token] = ch
			l.mu.Unlock()
		}
		return err
	}
	release := make(chan struct{})
	ch <- firstAttempt{resp: reply.(*kvpb.AppendResponse), release: release}
	// Not bounded by the attempt's deadline: the retry must come after
	// the leader change, when the test releases it.
	select {
	case <-release:
	case <-l.stop:
	}
	return status.Error(codes.Unavailable, "lostreply: reply lost")
}

package client

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Client is a connection to a cairn cluster. It is safe for concurrent
// use by many goroutines; make one per process (or per group) and share
// it. Close it when done.
type Client struct {
	cfg      Config
	log      *slog.Logger
	router   *router
	sessions *sessionManager
	jitter   *jitter

	// lifetime ends at Close, with cause ErrClosed: every call, and the
	// client's own goroutines, stop then.
	lifetime       context.Context
	cancelLifetime context.CancelCauseFunc
	// wg counts the client's goroutines (the session opener and
	// keep-alive loops); Close waits for them.
	wg sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// maxMsgSize bounds a message either way: the server's hard ceiling on
// max_request_size (64 MiB), plus room for framing.
const maxMsgSize = 64<<20 + 1<<20

// New returns a Client for cfg's cluster. It does no I/O: connections
// are established on first use, and the session on the first write.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.Retry.BaseBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.Retry.MaxBackoff,
			},
			MinConnectTimeout: cfg.DialTimeout,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	}
	dialOpts = append(dialOpts, cfg.DialOptions...)

	c := &Client{
		cfg:    cfg,
		log:    cfg.Logger,
		router: newRouter(cfg.Endpoints, dialOpts, cfg.Logger),
		jitter: newJitter(cfg.Retry.JitterSeed),
	}
	// Make the endpoints' connections now (no I/O: gRPC connects on first
	// use), so that an address gRPC cannot use is New's error.
	for _, ep := range cfg.Endpoints {
		if _, err := c.router.client(ep); err != nil {
			_ = c.router.close()
			return nil, err
		}
	}
	c.lifetime, c.cancelLifetime = context.WithCancelCause(context.Background())
	c.sessions = newSessionManager(c)
	return c, nil
}

// Close ends the client: calls in flight fail (with ErrClosed in their
// chain), the session is closed on the server (one brief best-effort try;
// otherwise it expires by itself), and connections are closed. Close
// returns once the client's goroutines have stopped. Calling it again
// returns the first call's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancelLifetime(ErrClosed)
		sess := c.sessions.close()
		c.wg.Wait()
		if sess != nil {
			c.closeSession(sess)
		}
		c.closeErr = c.router.close()
	})
	return c.closeErr
}

// callContext derives a call's context from the caller's: bounded by
// RequestTimeout and canceled, with cause ErrClosed, when the client
// closes.
func (c *Client) callContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancelCause := context.WithCancelCause(parent)
	stop := context.AfterFunc(c.lifetime, func() { cancelCause(ErrClosed) })
	ctx, cancelTimeout := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	if c.lifetime.Err() != nil { // AfterFunc runs asynchronously
		cancelCause(ErrClosed)
	}
	return ctx, func() {
		stop()
		cancelTimeout()
		cancelCause(context.Canceled)
	}
}

// backoff waits before the next attempt after failures failed attempts
// (failures >= 1): a uniform draw from [d/2, d], where d is BaseBackoff
// doubled failures-1 times, capped at MaxBackoff. It returns ctx's cause
// if ctx ends first.
func (c *Client) backoff(ctx context.Context, failures int) error {
	d := c.cfg.Retry.BaseBackoff
	for i := 1; i < failures && d < c.cfg.Retry.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.Retry.MaxBackoff)
	t := time.NewTimer(c.jitter.between(d/2, d))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// jitter draws wait times from a seeded PCG (guarded, as a rand.Rand is
// not safe for concurrent use) or from math/rand/v2's top-level source.
type jitter struct {
	mu  sync.Mutex
	rng *rand.Rand // nil: the top-level source
}

func newJitter(seed uint64) *jitter {
	if seed == 0 {
		return &jitter{}
	}
	return &jitter{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (j *jitter) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	span := int64(hi - lo)
	if span == math.MaxInt64 {
		span--
	}
	if j.rng == nil {
		return lo + time.Duration(rand.Int64N(span+1))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return lo + time.Duration(j.rng.Int64N(span+1))
}

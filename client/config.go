package client

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Config configures a Client. Zero fields take the defaults below
// (withDefaults fills them in one place); Validate reports every problem.
type Config struct {
	// Endpoints are the cluster's nodes' KV service addresses (host:port).
	// Any subset that includes a live node will do: the client learns the
	// leader from the nodes' answers. Required.
	Endpoints []string

	// Group is the group the client's session and requests name; 0 (the
	// default) lets the server route by key. A session belongs to one
	// group, so a client talks to one group.
	Group GroupID

	// DialTimeout bounds one attempt to connect to a node. Default 2s.
	DialTimeout time.Duration

	// RequestTimeout bounds a whole call, retries included, when the
	// caller's context has no earlier deadline. Default 10s.
	RequestTimeout time.Duration

	// AttemptTimeout bounds one RPC attempt, so that a node that stops
	// answering (rather than refusing) is given up on and the next one
	// tried. A write whose attempt timed out is retried with the same
	// seq. Default 3s.
	AttemptTimeout time.Duration

	// Retry is how calls are retried.
	Retry RetryPolicy

	// MaxInflight bounds the writes in flight on the session, as a window
	// of sequence numbers: a write waits for its seq while
	// next seq - lowest unacknowledged seq == MaxInflight. Keep it at or
	// below the server's max_pending_per_session (default 1024), and the
	// server never refuses a write with TOO_MANY_PENDING. Reads are not
	// limited. Default 256.
	MaxInflight int

	// SessionTTL is the session lifetime the client assumes when the
	// server's OpenSession answer does not say (the server's answer wins).
	// Default 60s, the server's default.
	SessionTTL time.Duration

	// KeepAliveInterval is how often the client renews its session. 0
	// (the default) means a third of the session's TTL, so two KeepAlives
	// in a row may fail before the session is at risk. Must be below the
	// TTL.
	KeepAliveInterval time.Duration

	// Logger receives the client's events (sessions opened and lost,
	// leader changes, failing keep-alives). Default: discard.
	Logger *slog.Logger

	// DialOptions are appended to the client's own gRPC dial options
	// (insecure transport credentials, reconnect backoff, message size
	// limits); TLS credentials, interceptors and the like go here.
	DialOptions []grpc.DialOption
}

// RetryPolicy is how a call is retried: exponential backoff with jitter,
// until it succeeds, fails for good, its context ends or MaxAttempts
// attempts have failed. A redirect to a newly named leader is retried at
// once, without backoff.
type RetryPolicy struct {
	// BaseBackoff is the wait after the first failed attempt; each
	// further failure doubles it, up to MaxBackoff. Default 10ms.
	BaseBackoff time.Duration
	// MaxBackoff caps the wait between attempts. Default 1s.
	MaxBackoff time.Duration
	// MaxAttempts bounds the attempts of one call; 0 (the default) means
	// no bound but the call's deadline (see Config.RequestTimeout).
	MaxAttempts int
	// JitterSeed seeds the jitter's random source (a PCG, for
	// reproducible runs). 0 (the default) uses math/rand/v2's top-level
	// source, which the runtime seeds from the operating system's
	// cryptographic randomness. Each wait is a uniform draw from
	// [d/2, d], d the exponential backoff.
	JitterSeed uint64
}

// Defaults.
const (
	DefaultDialTimeout    = 2 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultAttemptTimeout = 3 * time.Second
	DefaultBaseBackoff    = 10 * time.Millisecond
	DefaultMaxBackoff     = time.Second
	DefaultMaxInflight    = 256
	DefaultSessionTTL     = 60 * time.Second
)

// withDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&cfg.DialTimeout, DefaultDialTimeout)
	setDur(&cfg.RequestTimeout, DefaultRequestTimeout)
	setDur(&cfg.AttemptTimeout, DefaultAttemptTimeout)
	setDur(&cfg.Retry.BaseBackoff, DefaultBaseBackoff)
	setDur(&cfg.Retry.MaxBackoff, DefaultMaxBackoff)
	setDur(&cfg.SessionTTL, DefaultSessionTTL)
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	return cfg
}

// Validate reports every problem with cfg (after defaults) in one error.
func (cfg Config) Validate() error {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if len(cfg.Endpoints) == 0 {
		bad("no endpoints")
	}
	seen := make(map[string]bool)
	for _, e := range cfg.Endpoints {
		switch {
		case strings.TrimSpace(e) == "":
			bad("empty endpoint")
		case seen[e]:
			bad("endpoint %q listed twice", e)
		}
		seen[e] = true
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", cfg.DialTimeout},
		{"RequestTimeout", cfg.RequestTimeout},
		{"AttemptTimeout", cfg.AttemptTimeout},
		{"Retry.BaseBackoff", cfg.Retry.BaseBackoff},
		{"Retry.MaxBackoff", cfg.Retry.MaxBackoff},
		{"SessionTTL", cfg.SessionTTL},
	} {
		if d.v < 0 {
			bad("%s %v is negative", d.name, d.v)
		}
	}
	if cfg.Retry.MaxBackoff < cfg.Retry.BaseBackoff {
		bad("Retry.MaxBackoff %v below Retry.BaseBackoff %v", cfg.Retry.MaxBackoff, cfg.Retry.BaseBackoff)
	}
	if cfg.Retry.MaxAttempts < 0 {
		bad("Retry.MaxAttempts %d is negative", cfg.Retry.MaxAttempts)
	}
	if cfg.MaxInflight < 1 {
		bad("MaxInflight %d below 1", cfg.MaxInflight)
	}
	if cfg.KeepAliveInterval < 0 {
		bad("KeepAliveInterval %v is negative", cfg.KeepAliveInterval)
	}
	if cfg.KeepAliveInterval > 0 && cfg.KeepAliveInterval >= cfg.SessionTTL {
		bad("KeepAliveInterval %v not below SessionTTL %v", cfg.KeepAliveInterval, cfg.SessionTTL)
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("client: bad config: " + strings.Join(problems, "; "))
}

package loadgen

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is returned (wrapped, with every problem found) by
// Config.Validate and by Run when the configuration cannot be run.
var ErrInvalidConfig = errors.New("loadgen: invalid config")

// Config describes one workload. The zero value of each field means "the
// default"; Run fills the defaults in (see WithDefaults) and then validates.
type Config struct {
	// Target and Workload name the system and the workload in the result
	// (for example "etcd" and "put-c16"). Informational only.
	Target   string
	Workload string

	// Clients is the number of concurrent closed-loop clients: each has at
	// most one operation outstanding and issues the next as soon as the
	// previous one returns. Default 16.
	Clients int
	// Conns is the number of connections (Drivers) the clients share;
	// client i uses connection i mod Conns. Default min(Clients, 8).
	// Invariant after defaults: 1 ≤ Conns ≤ Clients.
	Conns int

	// Keys is the size of the key space; keys are KeyPrefix followed by a
	// zero-padded decimal index in [0, Keys), chosen uniformly at random.
	// Default 10,000.
	Keys int
	// KeyPrefix defaults to "bench/".
	KeyPrefix string
	// ValueSize is the size in bytes of every value written. Default 256.
	ValueSize int

	// ReadFraction is the probability that an operation is a Get rather
	// than a Put, in [0, 1]. 0 (the default) is a pure write workload.
	ReadFraction float64
	// ReadLevel is the consistency every Get asks for. Default
	// Linearizable.
	ReadLevel ReadLevel

	// Duration is how long the measured phase lasts; Ops is how many
	// operations it issues. Exactly one may be set; if neither is, Duration
	// defaults to 10s.
	Duration time.Duration
	Ops      int64
	// Warmup is run, with the same clients and mix, before the measured
	// phase; its operations are not recorded. Default 0.
	Warmup time.Duration
	// Preload, if set, writes every key of the key space once before the
	// warmup, so that Gets find values. Not measured.
	Preload bool

	// Seed makes the key and operation choices reproducible: client i
	// draws from a generator seeded with (Seed, i). Default 1.
	Seed uint64
	// OpTimeout bounds each operation; an operation that exceeds it counts
	// as an error. Default 10s.
	OpTimeout time.Duration

	// ServerPIDs are the processes of the system under test whose CPU time
	// (user + system, from /proc/<pid>/stat) is charged to the run. Empty
	// means not measured.
	ServerPIDs []int

	// Progress, if non-nil, is called from Run's coordinating goroutine
	// (never concurrently with itself) every ProgressInterval, and once at
	// the end of each phase. ProgressInterval defaults to 1s.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Defaults applied by WithDefaults.
const (
	DefaultClients          = 16
	DefaultMaxConns         = 8
	DefaultKeys             = 10000
	DefaultKeyPrefix        = "bench/"
	DefaultValueSize        = 256
	DefaultDuration         = 10 * time.Second
	DefaultSeed             = 1
	DefaultOpTimeout        = 10 * time.Second
	DefaultProgressInterval = time.Second
)

// WithDefaults returns c with every unset field given its default. It is the
// one place defaults are decided.
func (c Config) WithDefaults() Config {
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Conns == 0 {
		c.Conns = min(c.Clients, DefaultMaxConns)
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Duration == 0 && c.Ops == 0 {
		c.Duration = DefaultDuration
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	return c
}

// Validate reports every problem with c (after defaults), wrapped in
// ErrInvalidConfig, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Clients < 1 {
		bad("clients must be at least 1, got %d", c.Clients)
	}
	if c.Conns < 1 || c.Conns > max(c.Clients, 1) {
		bad("conns must be between 1 and clients (%d), got %d", c.Clients, c.Conns)
	}
	if c.Keys < 1 {
		bad("keys must be at least 1, got %d", c.Keys)
	}
	if c.ValueSize < 0 {
		bad("value size must not be negative, got %d", c.ValueSize)
	}
	if !(c.ReadFraction >= 0 && c.ReadFraction <= 1) { // also rejects NaN
		bad("read fraction must be in [0, 1], got %v", c.ReadFraction)
	}
	if c.ReadLevel != Linearizable && c.ReadLevel != Serializable {
		bad("unknown read level %v", c.ReadLevel)
	}
	switch {
	case c.Duration < 0:
		bad("duration must not be negative, got %v", c.Duration)
	case c.Ops < 0:
		bad("ops must not be negative, got %d", c.Ops)
	case c.Duration > 0 && c.Ops > 0:
		bad("set duration (%v) or ops (%d), not both", c.Duration, c.Ops)
	case c.Duration == 0 && c.Ops == 0:
		bad("set duration or ops")
	}
	if c.Warmup < 0 {
		bad("warmup must not be negative, got %v", c.Warmup)
	}
	if c.OpTimeout <= 0 {
		bad("op timeout must be positive, got %v", c.OpTimeout)
	}
	if c.ProgressInterval <= 0 {
		bad("progress interval must be positive, got %v", c.ProgressInterval)
	}
	for _, pid := range c.ServerPIDs {
		if pid <= 0 {
			bad("server pid must be positive, got %d", pid)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
)

// Config configures one Node. Zero values take the defaults documented on
// each field (filled in by Validate); durations are in ticks, because the
// core has no clock.
type Config struct {
	// ID is this node's identity within its group. Required, non-zero.
	ID NodeID

	// Storage is the node's durable state. Required.
	Storage Storage

	// Applied is the index of the last entry the state machine had applied
	// when the node was (re)started. Entries up to it are not handed out
	// again. Zero means "nothing but the latest snapshot".
	Applied Index

	// ElectionTick is the election timeout: a follower that hears from no
	// leader for a random number of ticks in [ElectionTick, 2*ElectionTick)
	// starts an election (§5.2). Default 10. Must exceed HeartbeatTick.
	ElectionTick int
	// HeartbeatTick is how many ticks pass between a leader's heartbeats.
	// Default 1.
	HeartbeatTick int

	// DisablePreVote turns off the pre-vote phase (thesis §9.6). Pre-vote is
	// on by default: a node rejoining from a partition cannot then force a
	// healthy group into a new term.
	DisablePreVote bool
	// DisableCheckQuorum turns off check-quorum (thesis §6.2). It is on by
	// default: a leader that has not heard from a quorum within an election
	// timeout steps down, and followers that heard from a leader within an
	// election timeout refuse to vote (a leader lease).
	DisableCheckQuorum bool

	// MaxClockDriftTicks is how many ticks any node's clock may gain on
	// the leader's over one election timeout. Lease reads stop that many
	// ticks before the lease the followers grant runs out. Default
	// 1 + ElectionTick/5; must be below ElectionTick.
	MaxClockDriftTicks int

	// MaxSizePerMsg bounds the entry bytes of one MsgApp. Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs bounds the MsgApps a leader has in flight to one
	// follower in the replicate state (pipelining). Default 256.
	MaxInflightMsgs int
	// MaxUncommittedEntriesSize bounds the payload bytes of entries the
	// leader has appended but not yet committed; past it, Propose returns
	// ErrUncommittedLimit. Default 64 MiB. A single proposal is always
	// accepted when nothing is uncommitted, whatever its size.
	MaxUncommittedEntriesSize uint64
	// MaxCommittedSizePerReady bounds the bytes of CommittedEntries in one
	// Ready. Default 16 MiB.
	MaxCommittedSizePerReady uint64

	// Seed seeds the node's source of randomness (election timeouts, and
	// the numbering of forwarded read batches). Two nodes given the same
	// seed and the same inputs behave identically, which is what tests and
	// the simulator want. A driver must give each start of a node a
	// different seed: answers to reads forwarded before a restart are told
	// apart from answers to new ones by numbers drawn from it. Zero means a
	// random seed.
	Seed uint64

	// Logger receives the core's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultElectionTick              = 10
	DefaultHeartbeatTick             = 1
	DefaultMaxSizePerMsg             = 1 << 20
	DefaultMaxInflightMsgs           = 256
	DefaultMaxUncommittedEntriesSize = 64 << 20
	DefaultMaxCommittedSizePerReady  = 16 << 20
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("raft: invalid config")

// Validate fills in defaults and reports every problem it finds.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == None {
		errs = append(errs, fmt.Errorf("%w: ID must not be zero", ErrInvalidConfig))
	}
	if c.Storage == nil {
		errs = append(errs, fmt.Errorf("%w: Storage is required", ErrInvalidConfig))
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = DefaultHeartbeatTick
	}
	if c.ElectionTick == 0 {
		c.ElectionTick = DefaultElectionTick
	}
	if c.ElectionTick < 0 {
		errs = append(errs, fmt.Errorf("%w: ElectionTick %d is negative", ErrInvalidConfig, c.ElectionTick))
	}
	if c.HeartbeatTick < 0 {
		errs = append(errs, fmt.Errorf("%w: HeartbeatTick %d is negative", ErrInvalidConfig, c.HeartbeatTick))
	}
	if c.ElectionTick >= 0 && c.HeartbeatTick >= 0 && c.ElectionTick <= c.HeartbeatTick {
		errs = append(errs, fmt.Errorf("%w: ElectionTick %d must exceed HeartbeatTick %d", ErrInvalidConfig, c.ElectionTick, c.HeartbeatTick))
	}
	if c.MaxClockDriftTicks == 0 {
		c.MaxClockDriftTicks = 1 + c.ElectionTick/5
	}
	if c.MaxClockDriftTicks < 0 || (c.ElectionTick > 0 && c.MaxClockDriftTicks >= c.ElectionTick) {
		errs = append(errs, fmt.Errorf("%w: MaxClockDriftTicks %d must be in [0, ElectionTick %d)",
			ErrInvalidConfig, c.MaxClockDriftTicks, c.ElectionTick))
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxInflightMsgs < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxInflightMsgs %d is negative", ErrInvalidConfig, c.MaxInflightMsgs))
	}
	if c.MaxUncommittedEntriesSize == 0 {
		c.MaxUncommittedEntriesSize = DefaultMaxUncommittedEntriesSize
	}
	if c.MaxCommittedSizePerReady == 0 {
		c.MaxCommittedSizePerReady = DefaultMaxCommittedSizePerReady
	}
	for c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

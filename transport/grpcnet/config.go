package grpcnet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// Config configures a Transport. Zero values take the defaults documented
// on each field (filled in by Validate).
type Config struct {
	// NodeID is this node's ID. Required. Every replica this node hosts
	// has it as its raft.NodeID: in cairn a replica is named by its node.
	NodeID raft.NodeID
	// ClusterID names the cluster. Required, non-zero. Streams from or to
	// a node of another cluster are refused.
	ClusterID uint64
	// Peers are the peer addresses known at start (host:port), by node.
	// SetPeer and RemovePeer change them later. An entry for NodeID
	// itself is ignored.
	Peers map[raft.NodeID]string

	// QueueSize is how many messages (and snapshot acks) wait for each
	// peer's connection; Send drops what does not fit and reports the peer
	// unreachable. Default 4096.
	QueueSize int
	// MaxBatchMessages and MaxBatchBytes bound one frame of a Raft
	// stream: a writer takes what is queued until either is reached (a
	// single larger message goes alone). Defaults 512 and 1 MiB.
	MaxBatchMessages int
	MaxBatchBytes    int
	// MaxFrameBytes is the largest frame sent or received (gRPC's message
	// size limit). A message larger than it is dropped (and its peer
	// reported unreachable). Default 64 MiB; at least
	// Snapshots.MaxChunkSize plus 64 KiB.
	MaxFrameBytes int
	// SnapshotQueue is how many snapshot chunks wait for each peer's
	// snapshot stream; a sender beyond it waits (flow control). Default 2.
	SnapshotQueue int

	// MinBackoff and MaxBackoff bound the wait between attempts to
	// (re)connect to a peer, which doubles from the one to the other (with
	// jitter) while attempts fail. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds one attempt to open a stream: dialling and the
	// Hello exchange. Default 5s.
	ConnectTimeout time.Duration
	// StepTimeout bounds how long the delivery of an inbound message may
	// wait for a replica whose inbound queue is full (Replica.Step blocks
	// then). A group whose replica did not take a message in that time is
	// skipped (its messages from that peer dropped at once) for the next
	// ten StepTimeouts, so a stuck replica delays its peers' other groups
	// by at most StepTimeout in every eleven. Default 100ms.
	StepTimeout time.Duration

	// Snapshots tunes the snapshot transfers (see snapxfer.Options); every
	// group shares the settings. Its Logger defaults to Logger.
	Snapshots snapxfer.Options

	// DialOptions are added to the transport's own when it dials a peer
	// (transport credentials, for instance; the default is plaintext).
	DialOptions []grpc.DialOption
	// ServerOptions are added to the transport's own for its gRPC server.
	ServerOptions []grpc.ServerOption

	// Logger receives the transport's log lines, with a node attribute
	// added. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultQueueSize        = 4096
	DefaultMaxBatchMessages = 512
	DefaultMaxBatchBytes    = 1 << 20
	DefaultMaxFrameBytes    = 64 << 20
	DefaultSnapshotQueue    = 2
	DefaultMinBackoff       = 50 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStepTimeout      = 100 * time.Millisecond
)

// frameOverhead is what a frame may add to a snapshot chunk's data.
const frameOverhead = 64 << 10

// Validate fills in defaults and reports every problem it finds, each
// wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Snapshots.Logger == nil {
		c.Snapshots.Logger = c.Logger
	}
	if err := c.Snapshots.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: Snapshots: %w", ErrInvalidConfig, err))
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.QueueSize, DefaultQueueSize)
	def(&c.MaxBatchMessages, DefaultMaxBatchMessages)
	def(&c.MaxBatchBytes, DefaultMaxBatchBytes)
	def(&c.MaxFrameBytes, max(DefaultMaxFrameBytes, c.Snapshots.MaxChunkSize+frameOverhead))
	def(&c.SnapshotQueue, DefaultSnapshotQueue)
	defDur(&c.MinBackoff, DefaultMinBackoff)
	defDur(&c.MaxBackoff, max(DefaultMaxBackoff, c.MinBackoff))
	defDur(&c.ConnectTimeout, DefaultConnectTimeout)
	defDur(&c.StepTimeout, DefaultStepTimeout)

	if c.NodeID == raft.None {
		bad("NodeID must not be zero")
	}
	if c.ClusterID == 0 {
		bad("ClusterID must not be zero")
	}
	for id, addr := range c.Peers {
		if id == raft.None {
			bad("Peers names node 0")
		}
		if addr == "" && id != c.NodeID {
			bad("Peers gives node %d no address", id)
		}
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"QueueSize", c.QueueSize}, {"MaxBatchMessages", c.MaxBatchMessages}, {"MaxBatchBytes", c.MaxBatchBytes}, {"SnapshotQueue", c.SnapshotQueue}} {
		if v.v < 0 {
			bad("%s %d is negative", v.name, v.v)
		}
	}
	if c.MaxFrameBytes < c.Snapshots.MaxChunkSize+frameOverhead {
		bad("MaxFrameBytes %d is below Snapshots.MaxChunkSize %d plus %d", c.MaxFrameBytes, c.Snapshots.MaxChunkSize, frameOverhead)
	}
	if c.MinBackoff < 0 {
		bad("MinBackoff %v is negative", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.ConnectTimeout < 0 {
		bad("ConnectTimeout %v is negative", c.ConnectTimeout)
	}
	if c.StepTimeout < 0 {
		bad("StepTimeout %v is negative", c.StepTimeout)
	}
	return errors.Join(errs...)
}

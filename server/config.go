package server

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
)

// Peer is where one node of the cluster is reached.
type Peer struct {
	// PeerAddr is the host:port of the node's peer transport (Raft
	// traffic between nodes).
	PeerAddr string
	// ClientAddr is the host:port of the node's KV and Admin services:
	// what clients dial, and what a follower names as the leader's address
	// when it redirects a client.
	ClientAddr string
}

func (p Peer) String() string { return p.PeerAddr + "/" + p.ClientAddr }

// Config configures a Node. Zero values take the defaults documented on
// each field (filled in by Validate, in one place).
type Config struct {
	// NodeID is this node's ID, unique in the cluster and never reused.
	// Required, non-zero. A node's replicas all have it as their Raft ID.
	NodeID raft.NodeID
	// ClusterID names the cluster. Required, non-zero. The data directory
	// records it, and peers of another cluster are refused.
	ClusterID uint64
	// DataDir holds the node's durable state (doc.go draws the layout).
	// Required. Created on first start; afterwards it must belong to this
	// cluster and node.
	DataDir string

	// Peers lists every node of the cluster, this one included, with the
	// addresses it advertises. Required. The nodes of a brand-new cluster
	// are the initial voters of its groups, so every node must be given
	// the same list.
	Peers map[raft.NodeID]Peer

	// ListenPeer and ListenClient are the addresses the node listens on
	// (for example 0.0.0.0:7001). Default: its own PeerAddr and ClientAddr
	// from Peers.
	ListenPeer, ListenClient string
	// PeerListener and ClientListener, if set, are used instead of
	// listening on ListenPeer and ListenClient (tests bind 127.0.0.1:0
	// first, to learn the ports). The node closes them when it stops.
	PeerListener, ClientListener net.Listener

	// Join makes a node whose data directory is new start its groups
	// empty, without bootstrapping them: it joins a cluster that already
	// runs (or rejoins it after its data directory was wiped, the repair
	// path of docs/storage.md) and catches up from its peers. Without
	// Join, a node whose data directory is new bootstraps a brand-new
	// cluster with every node of Peers as a voter. A node whose data
	// directory holds state ignores Join.
	Join bool

	// TickInterval is the length of one Raft tick. Default 50ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10 (so a
	// leader that fails is replaced within 1-2 s by default).
	ElectionTicks int
	// HeartbeatTicks is the interval of the leader's heartbeats in ticks.
	// Default 1.
	HeartbeatTicks int
	// MaxClockDriftTicks bounds, in ticks over one election timeout, how
	// much faster any node's clock may run than the leader's; lease reads
	// rely on it (raft.Config.MaxClockDriftTicks). Default: the core's,
	// 1 + ElectionTicks/5.
	MaxClockDriftTicks int

	// InitialLimits, if set, are the replicated limits this node gives a
	// group it leads while the group still has the default limits
	// (kv.DefaultLimits): a new cluster starts with them. Configure every
	// node alike. Later changes go through the Admin service's SetLimits.
	InitialLimits *kv.Limits
	// MaxRecvMsgSize caps the size of a request the KV service reads off
	// the wire (gRPC's receive limit). A request over the group's
	// max_request_size but under this cap is answered INVALID_ARGUMENT
	// naming max_request_size, with nothing applied; one over the cap is
	// refused by gRPC (RESOURCE_EXHAUSTED) without being read into memory.
	// Default: twice the largest max_request_size of the hosted groups
	// (and InitialLimits) at start, plus 64 KiB.
	MaxRecvMsgSize int
	// MaxScanLimit caps the pairs one Scan returns (kv.Config). Default
	// kv.DefaultMaxScanLimit.
	MaxScanLimit uint32
	// KVCacheSize is each group's engine block cache, in bytes. Default
	// kv.DefaultCacheSize.
	KVCacheSize int64

	// The replicas' compaction policy (replica.Config): a snapshot every
	// SnapshotEvery applied entries or SnapshotBytes bytes of them, and
	// CompactionMargin entries kept behind it. Zero: replica's defaults.
	SnapshotEvery    uint64
	SnapshotBytes    uint64
	CompactionMargin uint64

	// RequestTimeout bounds how long the node works on one KV request
	// whose caller set no earlier deadline: a write whose outcome is not
	// known by then is answered DEADLINE_EXCEEDED (outcome unknown).
	// Default 30s.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds how long Shutdown lets requests in flight
	// finish and hands leadership off before it stops anyway. Default 5s.
	ShutdownTimeout time.Duration

	// EnableFaultInjection installs a grpcnet.Faults filter on the peer
	// transport and storage failpoints (vfs.Faulty) under the groups' Raft
	// logs and snapshot stores, and enables the Admin service's SetFaults
	// and SetDiskFaults. For tests and chaos runs only.
	EnableFaultInjection bool
	// FaultSeed seeds the fault filter's random draws (0: from the node
	// ID).
	FaultSeed uint64

	// Logger receives the node's log lines (with a node attribute).
	// Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultTickInterval    = 50 * time.Millisecond
	DefaultElectionTicks   = 10
	DefaultHeartbeatTicks  = 1
	DefaultRequestTimeout  = 30 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
	// recvOverhead is what a request adds to its command's size limit.
	recvOverhead = 64 << 10
)

// Validate fills in defaults and reports every problem it finds, each
// wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.NodeID == raft.None {
		bad("node id must not be zero")
	}
	if c.ClusterID == 0 {
		bad("cluster id must not be zero")
	}
	if c.DataDir == "" {
		bad("data dir is required")
	}
	c.validatePeers(bad)

	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.TickInterval < time.Millisecond {
		bad("tick interval %v is under 1ms", c.TickInterval)
	}
	if c.HeartbeatTicks < 0 {
		bad("heartbeat ticks %d is negative", c.HeartbeatTicks)
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		bad("election ticks %d must exceed heartbeat ticks %d", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.MaxClockDriftTicks < 0 || (c.MaxClockDriftTicks > 0 && c.MaxClockDriftTicks >= c.ElectionTicks) {
		bad("max clock drift ticks %d not in [0, election ticks %d)", c.MaxClockDriftTicks, c.ElectionTicks)
	}

	if c.InitialLimits != nil {
		if err := c.InitialLimits.Validate(); err != nil {
			bad("initial limits: %v", err)
		}
	}
	if c.MaxRecvMsgSize < 0 {
		bad("max receive message size %d is negative", c.MaxRecvMsgSize)
	}
	if c.KVCacheSize < 0 {
		bad("kv cache size %d is negative", c.KVCacheSize)
	}
	if c.CompactionMargin > 0 && c.SnapshotEvery > 0 && c.CompactionMargin > c.SnapshotEvery {
		bad("compaction margin %d exceeds snapshot-every %d", c.CompactionMargin, c.SnapshotEvery)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		bad("request timeout %v is negative", c.RequestTimeout)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown timeout %v is negative", c.ShutdownTimeout)
	}
	if c.FaultSeed == 0 {
		c.FaultSeed = uint64(c.NodeID)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

// validatePeers checks Peers and the listen addresses, and fills in the
// latter.
func (c *Config) validatePeers(bad func(string, ...any)) {
	if len(c.Peers) == 0 {
		bad("peers must list every node of the cluster, this one included")
		return
	}
	self, ok := c.Peers[c.NodeID]
	if !ok && c.NodeID != raft.None {
		bad("peers %s do not include this node (%d)", FormatPeers(c.Peers), c.NodeID)
	}
	seen := map[string]raft.NodeID{}
	for _, id := range slices.Sorted(maps.Keys(c.Peers)) {
		p := c.Peers[id]
		if id == raft.None {
			bad("peers name node 0")
		}
		for _, a := range []struct{ what, addr string }{{"peer", p.PeerAddr}, {"client", p.ClientAddr}} {
			if a.addr == "" {
				bad("node %d has no %s address", id, a.what)
				continue
			}
			if _, _, err := net.SplitHostPort(a.addr); err != nil {
				bad("node %d's %s address %q is not host:port: %v", id, a.what, a.addr, err)
				continue
			}
			if other, dup := seen[a.addr]; dup {
				bad("address %s is given to node %d and node %d", a.addr, other, id)
			}
			seen[a.addr] = id
		}
	}
	if c.ListenPeer == "" {
		c.ListenPeer = self.PeerAddr
	}
	if c.ListenClient == "" {
		c.ListenClient = self.ClientAddr
	}
	if c.PeerListener == nil && c.ListenPeer != "" {
		if _, _, err := net.SplitHostPort(c.ListenPeer); err != nil {
			bad("listen peer address %q is not host:port: %v", c.ListenPeer, err)
		}
	}
	if c.ClientListener == nil && c.ListenClient != "" {
		if _, _, err := net.SplitHostPort(c.ListenClient); err != nil {
			bad("listen client address %q is not host:port: %v", c.ListenClient, err)
		}
	}
	if c.ListenPeer != "" && c.ListenPeer == c.ListenClient && c.PeerListener == nil && c.ClientListener == nil {
		bad("the peer and client services cannot both listen on %s", c.ListenPeer)
	}
}

// voters lists the nodes of Peers in ascending order.
func (c *Config) voters() []raft.NodeID { return slices.Sorted(maps.Keys(c.Peers)) }

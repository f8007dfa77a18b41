package testcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// Options configures a Cluster. Zero values take the defaults below.
type Options struct {
	// Nodes is the number of nodes, with IDs 1..Nodes. Default 3.
	Nodes int
	// ClusterID. Default 1.
	ClusterID uint64
	// Dir holds the nodes' data directories (Dir/node-<id>). Default: a
	// test temporary directory.
	Dir string
	// TickInterval and ElectionTicks are the nodes' Raft timing. Defaults
	// 25ms and 20: an election timeout of 0.5-1s, long enough that a
	// race-enabled run on a loaded machine rarely sees a spurious election,
	// short enough that failover tests are quick.
	TickInterval  time.Duration
	ElectionTicks int
	// Configure, if set, adjusts each node's config before it starts (at
	// every start, restarts included).
	Configure func(*server.Config)
	// Logger receives the nodes' log lines. Default: discarded, unless
	// the environment sets CAIRN_TEST_LOG (to "debug" for debug lines),
	// which sends them to stderr.
	Logger *slog.Logger
}

// Cluster is a running in-process cluster. Its methods are safe for
// concurrent use, and fail the test (tb.Fatal) on unexpected errors, so
// call them from the test's goroutine unless said otherwise.
type Cluster struct {
	tb    testing.TB
	opts  Options
	peers map[raft.NodeID]server.Peer

	mu struct {
		sync.Mutex
		nodes map[raft.NodeID]*server.Node // nil: stopped
		cuts  map[link]bool
	}
}

// link is one direction of the network between two nodes.
type link struct{ from, to raft.NodeID }

// Start starts a cluster of opts.Nodes nodes and registers its Close with
// tb.Cleanup. It returns once every node serves; it does not wait for a
// leader (WaitLeader does).
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.ClusterID == 0 {
		opts.ClusterID = 1
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 25 * time.Millisecond
	}
	if opts.ElectionTicks == 0 {
		opts.ElectionTicks = 20
	}
	if opts.Logger == nil {
		opts.Logger = defaultLogger()
	}
	c := &Cluster{tb: tb, opts: opts, peers: map[raft.NodeID]server.Peer{}}
	c.mu.nodes = map[raft.NodeID]*server.Node{}
	c.mu.cuts = map[link]bool{}

	// Bind every listener first, so that every node knows every address.
	type listeners struct{ peer, client net.Listener }
	lis := map[raft.NodeID]listeners{}
	closeAll := func() {
		for _, l := range lis {
			l.peer.Close()
			l.client.Close()
		}
	}
	for i := 1; i <= opts.Nodes; i++ {
		id := raft.NodeID(i)
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll()
			tb.Fatalf("testcluster: listen: %v", err)
		}
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			pl.Close()
			closeAll()
			tb.Fatalf("testcluster: listen: %v", err)
		}
		lis[id] = listeners{pl, cl}
		c.peers[id] = server.Peer{PeerAddr: pl.Addr().String(), ClientAddr: cl.Addr().String()}
	}
	tb.Cleanup(c.Close)
	for _, id := range c.IDs() {
		n, err := server.Start(c.config(id, lis[id].peer, lis[id].client))
		delete(lis, id)
		if err != nil {
			closeAll()
			tb.Fatalf("testcluster: start node %d: %v", id, err)
		}
		c.mu.Lock()
		c.mu.nodes[id] = n
		c.mu.Unlock()
	}
	return c
}

func defaultLogger() *slog.Logger {
	v := os.Getenv("CAIRN_TEST_LOG")
	if v == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	level := slog.LevelInfo
	if v == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// config is node id's config; the listeners are nil on a restart.
func (c *Cluster) config(id raft.NodeID, peerLis, clientLis net.Listener) server.Config {
	cfg := server.Config{
		NodeID:               id,
		ClusterID:            c.opts.ClusterID,
		DataDir:              c.DataDir(id),
		Peers:                maps.Clone(c.peers),
		PeerListener:         peerLis,
		ClientListener:       clientLis,
		TickInterval:         c.opts.TickInterval,
		ElectionTicks:        c.opts.ElectionTicks,
		EnableFaultInjection: true,
		ShutdownTimeout:      2 * time.Second,
		Logger:               c.opts.Logger,
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	return cfg
}

// IDs returns the nodes' IDs, ascending.
func (c *Cluster) IDs() []raft.NodeID { return slices.Sorted(maps.Keys(c.peers)) }

// Peers returns every node's addresses.
func (c *Cluster) Peers() map[raft.NodeID]server.Peer { return maps.Clone(c.peers) }

// DataDir returns node id's data directory.
func (c *Cluster) DataDir(id raft.NodeID) string {
	return filepath.Join(c.opts.Dir, "node-"+strconv.FormatUint(uint64(id), 10))
}

// ClientAddr returns node id's client address.
func (c *Cluster) ClientAddr(id raft.NodeID) string { return c.peers[id].ClientAddr }

// Endpoints returns every node's client address, by ascending ID.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, id := range c.IDs() {
		eps = append(eps, c.peers[id].ClientAddr)
	}
	return eps
}

// Node returns node id, or nil while it is stopped.
func (c *Cluster) Node(id raft.NodeID) *server.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.nodes[id]
}

// Running returns the IDs of the running nodes, ascending.
func (c *Cluster) Running() []raft.NodeID {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []raft.NodeID
	for id, n := range c.mu.nodes {
		if n != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Stop stops node id at once (server.Node.Stop: no leadership hand-off,
// requests in flight cancelled), as close to a crash as a process can
// come while keeping what it synced. Its data directory stays.
func (c *Cluster) Stop(id raft.NodeID) {
	c.tb.Helper()
	if err := c.stop(id, false); err != nil {
		c.tb.Fatalf("testcluster: stop node %d: %v", id, err)
	}
}

// Shutdown stops node id gracefully (server.Node.Shutdown: it hands off
// its leaderships and drains its requests first).
func (c *Cluster) Shutdown(id raft.NodeID) {
	c.tb.Helper()
	if err := c.stop(id, true); err != nil {
		c.tb.Fatalf("testcluster: shut down node %d: %v", id, err)
	}
}

func (c *Cluster) stop(id raft.NodeID, graceful bool) error {
	c.mu.Lock()
	n := c.mu.nodes[id]
	c.mu.nodes[id] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	if graceful {
		return n.Shutdown()
	}
	return n.Stop()
}

// Restart starts node id again, on its data directory and addresses, and
// applies the cluster's cuts to it. The node must be stopped.
func (c *Cluster) Restart(id raft.NodeID) {
	c.tb.Helper()
	if err := c.Start(id); err != nil {
		c.tb.Fatalf("testcluster: restart node %d: %v", id, err)
	}
}

// Start starts stopped node id again (Restart without failing the test).
func (c *Cluster) Start(id raft.NodeID) error {
	if _, ok := c.peers[id]; !ok {
		return fmt.Errorf("testcluster: no node %d", id)
	}
	if c.Node(id) != nil {
		return fmt.Errorf("testcluster: node %d is running", id)
	}
	n, err := server.Start(c.config(id, nil, nil))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.nodes[id] = n
	for l := range c.mu.cuts {
		c.applyCutLocked(l)
	}
	return nil
}

// Close stops every running node. Start registers it with tb.Cleanup.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, id := range c.IDs() {
		wg.Go(func() {
			if err := c.stop(id, false); err != nil {
				c.tb.Errorf("testcluster: stop node %d: %v", id, err)
			}
		})
	}
	wg.Wait()
}

// Cut cuts the link from node from to node to, one way: what from sends
// to to is lost (to's traffic to from still flows).
func (c *Cluster) Cut(from, to raft.NodeID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := link{from, to}
	c.mu.cuts[l] = true
	c.applyCutLocked(l)
}

// applyCutLocked cuts l on both of its running ends.
func (c *Cluster) applyCutLocked(l link) {
	if n := c.mu.nodes[l.from]; n != nil {
		n.Faults().Cut(l.to, grpcnet.Outbound)
	}
	if n := c.mu.nodes[l.to]; n != nil {
		n.Faults().Cut(l.from, grpcnet.Inbound)
	}
}

// Partition cuts every link between nodes of different sides, both ways.
// Nodes on no side keep their links.
func (c *Cluster) Partition(sides ...[]raft.NodeID) {
	for i, a := range sides {
		for j, b := range sides {
			if i == j {
				continue
			}
			for _, from := range a {
				for _, to := range b {
					c.Cut(from, to)
				}
			}
		}
	}
}

// Isolate cuts node id off from every other node, both ways.
func (c *Cluster) Isolate(id raft.NodeID) {
	var rest []raft.NodeID
	for _, o := range c.IDs() {
		if o != id {
			rest = append(rest, o)
		}
	}
	c.Partition([]raft.NodeID{id}, rest)
}

// Heal removes every cut.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.mu.cuts)
	for _, n := range c.mu.nodes {
		if n != nil {
			n.Faults().Heal()
		}
	}
}

// WaitLeader waits until one of the running nodes among (all running
// nodes if none are given) leads group, and returns it. When several
// claim to lead (a deposed leader cut off from the rest has not noticed
// yet), the one with the highest term wins. It fails the test if ctx ends
// first.
func (c *Cluster) WaitLeader(ctx context.Context, group replica.GroupID, among ...raft.NodeID) raft.NodeID {
	c.tb.Helper()
	id, err := c.Leader(ctx, group, among...)
	if err != nil {
		c.tb.Fatalf("testcluster: no leader of group %d: %v", group, err)
	}
	return id
}

// Leader is WaitLeader returning an error instead of failing the test;
// it may be called from any goroutine.
func (c *Cluster) Leader(ctx context.Context, group replica.GroupID, among ...raft.NodeID) (raft.NodeID, error) {
	for {
		if len(among) == 0 {
			among = c.Running()
		}
		var (
			lead  raft.NodeID
			term  raft.Term
			cases = []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		)
		for _, id := range among {
			n := c.Node(id)
			if n == nil || n.Replica(group) == nil {
				continue
			}
			st, changed := n.Replica(group).Leader()
			if st.Role == raft.Leader && st.Term > term {
				lead, term = id, st.Term
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(changed)})
		}
		if lead != raft.None {
			return lead, nil
		}
		if len(cases) == 1 {
			return raft.None, fmt.Errorf("testcluster: none of nodes %v runs a replica of group %d", among, group)
		}
		if chosen, _, _ := reflect.Select(cases); chosen == 0 {
			return raft.None, ctx.Err()
		}
	}
}

// WaitApplied waits until node id's replica of group has applied index.
func (c *Cluster) WaitApplied(ctx context.Context, id raft.NodeID, group replica.GroupID, index raft.Index) {
	c.tb.Helper()
	n := c.Node(id)
	if n == nil || n.Replica(group) == nil {
		c.tb.Fatalf("testcluster: node %d is not running a replica of group %d", id, group)
	}
	if err := n.Replica(group).WaitApplied(ctx, index); err != nil {
		c.tb.Fatalf("testcluster: node %d group %d: waiting for index %d: %v", id, group, index, err)
	}
}

// Client returns a client of the whole cluster, closed at the test's
// cleanup. configure, if given, adjusts its config first.
func (c *Cluster) Client(configure ...func(*client.Config)) *client.Client {
	c.tb.Helper()
	return c.ClientOf(c.Endpoints(), configure...)
}

// ClientOf returns a client of the given endpoints, closed at the test's
// cleanup.
func (c *Cluster) ClientOf(endpoints []string, configure ...func(*client.Config)) *client.Client {
	c.tb.Helper()
	cfg := client.Config{
		Endpoints:      endpoints,
		AttemptTimeout: 2 * time.Second,
		RequestTimeout: 20 * time.Second,
		Logger:         c.opts.Logger,
	}
	for _, f := range configure {
		f(&cfg)
	}
	cl, err := client.New(cfg)
	if err != nil {
		c.tb.Fatalf("testcluster: client: %v", err)
	}
	c.tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

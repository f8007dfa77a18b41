package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// Node is one cairn server: a host of group replicas, their peer
// transport and clock, and the KV and Admin gRPC services in front of
// them (doc.go). It is safe for concurrent use.
type Node struct {
	cfg    Config
	logger *slog.Logger

	ticker    *replica.Ticker
	transport *grpcnet.Transport
	faults    *grpcnet.Faults // nil unless fault injection is enabled
	// disk is the storage failpoints under every group's log and snapshot
	// files; nil unless fault injection is enabled (the groups then use
	// vfs.Default directly).
	disk      *vfs.Faulty
	server    *grpc.Server
	clientLis net.Listener

	// groups are the hosted groups by ascending start key, and byID the
	// same by ID. Set by Start and never changed (moving groups is the
	// placement work's, which will guard them).
	groups []*group
	byID   map[replica.GroupID]*group

	// admin serializes SetFaults and SetDiskFaults, and keeps the fault
	// rules in force.
	admin struct {
		sync.Mutex
		rules []*adminpb.FaultRule
	}

	stopping chan struct{} // closed when Stop or Shutdown begins
	// ctx is cancelled when Stop or Shutdown begins: the node's own
	// background work (not requests) runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	served chan struct{} // closed when the client server's Serve returns
	wg     sync.WaitGroup

	fatalOnce sync.Once
	fatal     chan struct{} // closed on the first fatal error
	fatalErr  error         // written before fatal is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts a node: it checks (or claims) the data directory, listens
// on the peer and client addresses, opens and starts every group replica
// the node hosts (bootstrapping a brand-new cluster's groups), and serves
// the KV and Admin services. Stop or Shutdown it when done; watch Fatal
// for a failure that stops it on its own.
func Start(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		closeListeners(cfg.PeerListener, cfg.ClientListener)
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		logger:   cfg.Logger.With(slog.Uint64("node", uint64(cfg.NodeID))),
		byID:     map[replica.GroupID]*group{},
		stopping: make(chan struct{}),
		served:   make(chan struct{}),
		fatal:    make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, n.cancel, func() { closeListeners(cfg.PeerListener, cfg.ClientListener) })

	meta, err := openDataDir(vfs.Default, cfg.DataDir, cfg.ClusterID, cfg.NodeID)
	if err != nil {
		return nil, err
	}

	peerLis := cfg.PeerListener
	if peerLis == nil {
		if peerLis, err = net.Listen("tcp", cfg.ListenPeer); err != nil {
			return nil, fmt.Errorf("server: listen for peers on %s: %w", cfg.ListenPeer, err)
		}
		undo = append(undo, func() { peerLis.Close() })
	}
	n.clientLis = cfg.ClientListener
	if n.clientLis == nil {
		if n.clientLis, err = net.Listen("tcp", cfg.ListenClient); err != nil {
			return nil, fmt.Errorf("server: listen for clients on %s: %w", cfg.ListenClient, err)
		}
		undo = append(undo, func() { n.clientLis.Close() })
	}

	peerAddrs := map[raft.NodeID]string{}
	for id, p := range cfg.Peers {
		if id != cfg.NodeID {
			peerAddrs[id] = p.PeerAddr
		}
	}
	if n.transport, err = grpcnet.New(grpcnet.Config{
		NodeID:    cfg.NodeID,
		ClusterID: cfg.ClusterID,
		Peers:     peerAddrs,
		Logger:    cfg.Logger,
	}, peerLis); err != nil {
		return nil, fmt.Errorf("server: peer transport: %w", err)
	}
	undo = append(undo, func() { _ = n.transport.Close() })
	if cfg.EnableFaultInjection {
		n.faults = grpcnet.NewFaults(cfg.FaultSeed)
		n.transport.SetFilter(n.faults.Filter)
		n.disk = vfs.NewFaulty(vfs.Default)
		n.logger.Warn("fault injection is enabled: the Admin service's SetFaults can cut this node's links, and SetDiskFaults can make its disk slow or full")
	}

	n.ticker = replica.NewTicker(cfg.TickInterval)
	undo = append(undo, n.ticker.Stop)

	bootstrap := !meta.initialized && !cfg.Join
	for _, spec := range placement(&cfg) {
		if !slices.Contains(spec.voters, cfg.NodeID) {
			continue
		}
		g, err := n.openGroup(spec, bootstrap)
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { _ = g.stopReplica(); _ = g.closeStorage() })
		n.groups = append(n.groups, g)
		n.byID[spec.id] = g
	}
	slices.SortFunc(n.groups, func(a, b *group) int { return bytes.Compare(a.spec.start, b.spec.start) })
	if !meta.initialized {
		// The groups are created (bootstrapped durably, or empty for a
		// joining node): later starts never bootstrap again.
		meta.initialized = true
		if err := writeMeta(vfs.Default, cfg.DataDir, meta); err != nil {
			return nil, err
		}
	}

	recv := n.cfg.MaxRecvMsgSize
	if recv == 0 {
		recv = 2*int(n.maxRequestSize()) + recvOverhead
	}
	n.server = grpc.NewServer(
		grpc.MaxRecvMsgSize(recv),
		grpc.MaxSendMsgSize(max(recv, 2*int(n.maxRequestSize())+recvOverhead)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Stop waits for the handlers, so that nothing touches a replica
		// after it is stopped.
		grpc.WaitForHandlers(true),
	)
	kvpb.RegisterKVServer(n.server, &kvService{n: n})
	adminpb.RegisterAdminServer(n.server, &adminService{n: n})
	go func() {
		defer close(n.served)
		if err := n.server.Serve(n.clientLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.fail(fmt.Errorf("server: serving clients on %s: %w", n.clientLis.Addr(), err))
		}
	}()
	for _, g := range n.groups {
		n.wg.Go(func() { n.supervise(g) })
	}
	n.logger.Info("node started",
		"cluster", cfg.ClusterID,
		"peer_addr", n.transport.Addr().String(),
		"client_addr", n.clientLis.Addr().String(),
		"groups", len(n.groups),
		"max_recv_msg_size", recv)
	return n, nil
}

func closeListeners(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

// maxRequestSize is the largest max_request_size of the hosted groups
// and of InitialLimits.
func (n *Node) maxRequestSize() uint64 {
	var m uint64
	if n.cfg.InitialLimits != nil {
		m = n.cfg.InitialLimits.MaxRequestSize
	}
	for _, g := range n.groups {
		m = max(m, g.sm.Limits().MaxRequestSize)
	}
	if m == 0 {
		m = kv.DefaultLimits.MaxRequestSize
	}
	return m
}

// ID returns the node's ID.
func (n *Node) ID() raft.NodeID { return n.cfg.NodeID }

// ClusterID returns the cluster's ID.
func (n *Node) ClusterID() uint64 { return n.cfg.ClusterID }

// ClientAddr returns the address the KV and Admin services listen on.
func (n *Node) ClientAddr() net.Addr { return n.clientLis.Addr() }

// PeerAddr returns the address the peer transport listens on.
func (n *Node) PeerAddr() net.Addr { return n.transport.Addr() }

// Groups returns the IDs of the groups the node hosts, ascending.
func (n *Node) Groups() []replica.GroupID { return slices.Sorted(maps.Keys(n.byID)) }

// Replica returns the node's replica of group id, or nil. Tests use it to
// watch leadership (Replica.Leader) or transfer it.
func (n *Node) Replica(id replica.GroupID) *replica.Replica {
	if g := n.byID[id]; g != nil {
		return g.r
	}
	return nil
}

// StateMachine returns the node's state machine of group id, or nil.
// Tests read it directly (a serializable read without the network).
func (n *Node) StateMachine(id replica.GroupID) *kv.StateMachine {
	if g := n.byID[id]; g != nil {
		return g.sm
	}
	return nil
}

// Faults returns the peer transport's fault filter, or nil if fault
// injection is not enabled (Config.EnableFaultInjection).
func (n *Node) Faults() *grpcnet.Faults { return n.faults }

// DiskFaults returns the storage failpoints in force (admin.go,
// SetDiskFaults): zero for a healthy disk, and always zero when fault
// injection is not enabled.
func (n *Node) DiskFaults() vfs.DiskFaults {
	if n.disk == nil {
		return vfs.DiskFaults{}
	}
	return n.disk.Faults()
}

// diskFS is the filesystem of the groups' logs and snapshot files: the
// node's vfs.Faulty when fault injection is enabled, else nil (the
// storage packages' default, vfs.Default, with nothing in between).
func (n *Node) diskFS() vfs.FS {
	if n.disk == nil {
		return nil
	}
	return n.disk
}

// Fatal is closed when the node has failed on its own: a replica stopped
// on a fatal error (a failed disk write, say) or the client server failed.
// The node must then be stopped and the process exit with Err: a restart
// reads back what the disk really holds (replica's doc, "Disk failures").
func (n *Node) Fatal() <-chan struct{} { return n.fatal }

// Err returns the fatal error once Fatal is closed, and nil before.
func (n *Node) Err() error {
	select {
	case <-n.fatal:
		return n.fatalErr
	default:
		return nil
	}
}

// fail records the first fatal error and closes Fatal.
func (n *Node) fail(err error) {
	n.fatalOnce.Do(func() {
		n.logger.Error("node failed; it must be stopped and restarted", "err", err)
		n.fatalErr = err
		close(n.fatal)
	})
}

// supervise watches one group's replica for the node: a fatal error fails
// the node, and a new leadership of this node applies InitialLimits.
func (n *Node) supervise(g *group) {
	var limitsTerm raft.Term
	for {
		st, changed := g.r.Leader()
		if st.Role == raft.Leader && st.Term != limitsTerm && n.cfg.InitialLimits != nil {
			limitsTerm = st.Term
			n.applyInitialLimits(g)
		}
		select {
		case <-g.r.Done():
			if err := g.r.Err(); err != nil {
				n.fail(fmt.Errorf("group %d: %w", g.spec.id, err))
			}
			return
		case <-n.stopping:
			return
		case <-changed:
		}
	}
}

// applyInitialLimits proposes InitialLimits to a group this node leads if
// the group still has the default limits. It first waits until it has
// applied everything committed before its term (a ReadIndex), so that
// limits set by an earlier leader are seen.
func (n *Node) applyInitialLimits(g *group) {
	want := *n.cfg.InitialLimits
	if want == kv.DefaultLimits {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 4*n.electionTimeout())
	defer cancel()
	if _, err := g.r.ReadIndex(ctx); err != nil {
		g.logger.Debug("initial limits: not applied yet", "err", err)
		return
	}
	if g.sm.Limits() != kv.DefaultLimits {
		return
	}
	if _, err := n.setLimits(ctx, g, want); err != nil {
		g.logger.Warn("initial limits: proposing them failed; the next leader tries again", "err", err)
		return
	}
	g.logger.Info("applied the initial limits", "limits", fmt.Sprintf("%+v", want))
}

// electionTimeout is the election timeout as a duration.
func (n *Node) electionTimeout() time.Duration {
	return time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

// leaderAddr returns the client address of node id, or "".
func (n *Node) leaderAddr(id raft.NodeID) string {
	return n.cfg.Peers[id].ClientAddr
}

// Stop stops the node at once: it stops serving (requests in flight are
// cancelled), stops every replica (pending proposals fail), closes the
// peer transport, then syncs and closes every engine and log. It returns
// the node's fatal error, if it had one, and any error closing its
// storage. It may be called more than once, and after Shutdown.
func (n *Node) Stop() error { return n.stop(false) }

// Shutdown stops the node gracefully: it stops accepting requests, hands
// the leadership of every group it leads to an up-to-date follower, and
// lets the requests in flight finish, for up to Config.ShutdownTimeout;
// then it stops as Stop does. cairn server calls it on SIGTERM.
func (n *Node) Shutdown() error { return n.stop(true) }

func (n *Node) stop(graceful bool) error {
	n.stopOnce.Do(func() { n.stopErr = n.shutdown(graceful) })
	return n.stopErr
}

func (n *Node) shutdown(graceful bool) error {
	close(n.stopping)
	n.cancel()
	if graceful {
		n.logger.Info("shutting down: draining requests and handing off leadership")
		drained := make(chan struct{})
		go func() {
			n.server.GracefulStop()
			close(drained)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		n.handOff(ctx)
		select {
		case <-drained:
		case <-ctx.Done():
			n.logger.Warn("shutdown: requests still in flight after the shutdown timeout; cancelling them")
			n.server.Stop()
			<-drained
		}
		cancel()
	} else {
		n.server.Stop()
	}
	<-n.served

	var errs []error
	for _, g := range n.groups {
		if err := g.stopReplica(); err != nil {
			errs = append(errs, fmt.Errorf("group %d: %w", g.spec.id, err))
		}
	}
	if err := n.transport.Close(); err != nil {
		errs = append(errs, err)
	}
	n.wg.Wait()
	for _, g := range n.groups {
		if err := g.closeStorage(); err != nil {
			errs = append(errs, fmt.Errorf("group %d: %w", g.spec.id, err))
		}
	}
	n.ticker.Stop()
	if err := n.Err(); err != nil && len(errs) == 0 {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		n.logger.Error("node stopped", "err", err)
	} else {
		n.logger.Info("node stopped")
	}
	return err
}

// handOff transfers the leadership of every group this node leads to the
// follower with the longest log, so that the group need not wait an
// election timeout for a new leader. Best effort, bounded by ctx.
func (n *Node) handOff(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range n.groups {
		if st, _ := g.r.Leader(); st.Role != raft.Leader {
			continue
		}
		wg.Go(func() {
			st, err := g.r.Status(ctx)
			if err != nil {
				return
			}
			to, best := raft.None, raft.Index(0)
			for _, id := range slices.Sorted(maps.Keys(st.Progress)) {
				if pr := st.Progress[id]; id != n.cfg.NodeID && pr.Active && (to == raft.None || pr.Match > best) {
					to, best = id, pr.Match
				}
			}
			if to == raft.None {
				return
			}
			if err := g.r.TransferLeadership(ctx, to); err != nil {
				g.logger.Info("shutdown: leadership hand-off failed; the group elects a leader after its election timeout", "to", uint64(to), "err", err)
				return
			}
			g.logger.Info("shutdown: handed leadership off", "to", uint64(to))
		})
	}
	wg.Wait()
}

// version is the server's build version.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

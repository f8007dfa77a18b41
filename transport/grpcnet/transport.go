package grpcnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
)

// Keepalive: a client pings a connection that has been quiet this long
// (gRPC's floor is 10s), and gives up on it after Timeout more without an
// answer; a server accepts pings this often.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	keepaliveMinTime = 5 * time.Second
)

// Transport is one node's peer transport: it serves the Peer service on
// its listener, keeps one connection to each peer node, and carries the
// traffic of every group the node hosts (see the package doc). It is safe
// for concurrent use.
type Transport struct {
	id      raft.NodeID
	cluster uint64
	cfg     Config
	logger  *slog.Logger
	server  *grpc.Server
	addr    net.Addr
	delayer *delayer
	stats   counters
	filter  atomic.Pointer[Filter]

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the server's and the delayer's goroutines

	closeOnce sync.Once

	mu struct {
		sync.RWMutex
		closed bool
		groups map[GroupID]*Group
		peers  map[raft.NodeID]*peer
	}
}

// New starts a transport that serves its peers on lis (which it closes on
// Close) and dials those in cfg.Peers. Close it when done.
func New(cfg Config, lis net.Listener) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if lis == nil {
		return nil, fmt.Errorf("%w: New needs a listener", ErrInvalidConfig)
	}
	t := &Transport{
		id:      cfg.NodeID,
		cluster: cfg.ClusterID,
		cfg:     cfg,
		logger:  cfg.Logger.With(slog.Uint64("node", uint64(cfg.NodeID))),
		addr:    lis.Addr(),
		delayer: newDelayer(),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.groups = make(map[GroupID]*Group)
	t.mu.peers = make(map[raft.NodeID]*peer)

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxFrameBytes),
		grpc.MaxSendMsgSize(cfg.MaxFrameBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		// Stop waits for the stream handlers, so that nothing is delivered
		// after Close returns.
		grpc.WaitForHandlers(true),
	}
	t.server = grpc.NewServer(append(opts, cfg.ServerOptions...)...)
	raftpb.RegisterPeerServer(t.server, peerService{t: t})

	for _, id := range slices.Sorted(maps.Keys(cfg.Peers)) {
		if id == t.id {
			continue
		}
		p, err := t.newPeer(id, cfg.Peers[id])
		if err != nil {
			t.closePeers(slices.Collect(maps.Values(t.mu.peers)))
			lis.Close()
			t.cancel()
			return nil, err
		}
		t.mu.peers[id] = p
	}
	t.wg.Go(func() { t.delayer.run(t.ctx) })
	t.wg.Go(func() {
		if err := t.server.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.logger.Error("peer server stopped", "err", err)
		}
	})
	t.logger.Info("peer transport listening", "addr", t.addr.String(), "cluster", t.cluster)
	return t, nil
}

// ID returns the node's ID.
func (t *Transport) ID() raft.NodeID { return t.id }

// Addr returns the address the transport serves its peers on.
func (t *Transport) Addr() net.Addr { return t.addr }

// Close stops serving, ends every connection and snapshot transfer (their
// senders hear snapxfer.ErrClosed), drops whatever is queued, and waits for
// every goroutine the transport started. Nothing is delivered to a handler
// after Close returns. It may be called more than once.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.mu.closed = true
		groups := slices.Collect(maps.Values(t.mu.groups))
		peers := slices.Collect(maps.Values(t.mu.peers))
		clear(t.mu.groups)
		clear(t.mu.peers)
		t.mu.Unlock()

		// Cancel first: writers stop, and a snapshot sender waiting for
		// room in a peer's queue gives up at once.
		t.cancel()
		// Stop ends the inbound streams (a handler blocked in Step sees
		// its context end) and waits for their handlers.
		t.server.Stop()
		for _, g := range groups {
			g.close()
		}
		t.closePeers(peers)
		t.wg.Wait()
		t.logger.Info("peer transport closed")
	})
	return nil
}

func (t *Transport) closePeers(ps []*peer) {
	for _, p := range ps {
		p.stop()
	}
}

// SetPeer sets (or changes) node id's peer address. Changing it drops the
// old connection and what was queued for it.
func (t *Transport) SetPeer(id raft.NodeID, addr string) error {
	if id == raft.None || id == t.id || addr == "" {
		return fmt.Errorf("%w: SetPeer(%d, %q): this node is %d", ErrInvalidConfig, id, addr, t.id)
	}
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	old := t.mu.peers[id]
	if old != nil && old.addr == addr {
		t.mu.Unlock()
		return nil
	}
	p, err := t.newPeer(id, addr)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	t.mu.peers[id] = p
	t.mu.Unlock()
	if old != nil {
		old.stop()
	}
	return nil
}

// RemovePeer forgets node id's address and closes its connection.
// Messages to it are then dropped and reported unreachable.
func (t *Transport) RemovePeer(id raft.NodeID) {
	t.mu.Lock()
	p := t.mu.peers[id]
	delete(t.mu.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

func (t *Transport) peer(id raft.NodeID) *peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.peers[id]
}

// Register returns group id's endpoint, creating it on first use, and
// attaches h to it (see Group.Attach; h may be nil, to attach a replica
// once it exists, since the replica needs the endpoint as its Transport).
func (t *Transport) Register(id GroupID, h Handler) (*Group, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrClosed
	}
	g := t.mu.groups[id]
	if g == nil {
		var err error
		if g, err = t.newGroup(id); err != nil {
			return nil, err
		}
		t.mu.groups[id] = g
	}
	g.Attach(h)
	return g, nil
}

// Unregister removes group id from the node: its snapshot transfers end
// (senders hear snapxfer.ErrClosed), what arrives for it is dropped as for
// an unknown group, and its endpoint sends nothing more. A later Register
// creates a new endpoint.
func (t *Transport) Unregister(id GroupID) {
	t.mu.Lock()
	g := t.mu.groups[id]
	delete(t.mu.groups, id)
	t.mu.Unlock()
	if g != nil {
		g.close()
	}
}

func (t *Transport) group(id GroupID) *Group {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.groups[id]
}

// SetFilter makes f decide the fate of every packet sent or received from
// now on; nil passes everything.
func (t *Transport) SetFilter(f Filter) {
	if f == nil {
		t.filter.Store(nil)
		return
	}
	t.filter.Store(&f)
}

// reportUnreachable tells every attached replica that peer cannot be
// reached (the replicas of groups without that peer ignore it).
func (t *Transport) reportUnreachable(peer raft.NodeID) {
	if t.ctx.Err() != nil {
		return
	}
	t.mu.RLock()
	hs := make([]Handler, 0, len(t.mu.groups))
	for _, g := range t.mu.groups {
		if h := g.handler(); h != nil {
			hs = append(hs, h)
		}
	}
	t.mu.RUnlock()
	for _, h := range hs {
		h.ReportUnreachable(peer)
	}
}

// Stats are a transport's counters since it started.
type Stats struct {
	// Outbound.
	MessagesSent uint64 // messages and snapshot acks written to a peer's stream
	FramesSent   uint64 // Raft stream frames written
	ChunksSent   uint64 // snapshot chunks written
	// Inbound.
	MessagesReceived uint64 // messages a replica accepted (Step returned nil)
	AcksReceived     uint64 // snapshot acks handed to a group's transfers
	ChunksReceived   uint64 // snapshot chunks handed to a group's transfers
	FramesReceived   uint64 // Raft and snapshot stream frames decoded

	// Losses, outbound.
	DroppedUnreachable uint64 // no address, or the peer's connection is down
	DroppedQueueFull   uint64 // the peer's queue was full
	DroppedTooLarge    uint64 // a message larger than MaxFrameBytes
	DroppedInvalid     uint64 // a MsgSnap handed to Send, or a message not from this node
	DroppedSendFailed  uint64 // lost with a stream that broke, or drained when it did
	ChunksLost         uint64 // snapshot chunks lost with a stream that broke or did not open
	// Losses, inbound.
	DroppedUnknownGroup uint64 // messages, acks and chunks for a group not registered here
	DroppedNoHandler    uint64 // messages for a group with no replica attached
	DroppedSlow         uint64 // messages a replica could not take within StepTimeout
	StepErrors          uint64 // messages a replica refused (stopped, or invalid)

	// Faults injected by the filter.
	Filtered   uint64 // packets dropped
	Delayed    uint64 // packets held back (copies included)
	Duplicated uint64 // extra copies

	// Trouble.
	MalformedFrames uint64 // inbound frames refused as malformed (the stream is ended)
	RejectedStreams uint64 // inbound streams refused (another cluster, wrong node, bad Hello)
	ConnectFailures uint64 // outbound streams that failed to open or broke
}

type counters struct {
	messagesSent, framesSent, chunksSent                                          atomic.Uint64
	messagesReceived, acksReceived, chunksReceived, framesReceived                atomic.Uint64
	droppedUnreachable, droppedQueueFull, droppedTooLarge, droppedSendFailed      atomic.Uint64
	droppedInvalid                                                                atomic.Uint64
	chunksLost                                                                    atomic.Uint64
	droppedUnknownGroup, droppedNoHandler, droppedSlow, stepErrors                atomic.Uint64
	filtered, delayed, duplicated, malformedFrames, rejectedStreams, connFailures atomic.Uint64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		MessagesSent: c.messagesSent.Load(), FramesSent: c.framesSent.Load(), ChunksSent: c.chunksSent.Load(),
		MessagesReceived: c.messagesReceived.Load(), AcksReceived: c.acksReceived.Load(),
		ChunksReceived: c.chunksReceived.Load(), FramesReceived: c.framesReceived.Load(),
		DroppedUnreachable: c.droppedUnreachable.Load(), DroppedQueueFull: c.droppedQueueFull.Load(),
		DroppedTooLarge: c.droppedTooLarge.Load(), DroppedSendFailed: c.droppedSendFailed.Load(),
		DroppedInvalid:      c.droppedInvalid.Load(),
		ChunksLost:          c.chunksLost.Load(),
		DroppedUnknownGroup: c.droppedUnknownGroup.Load(), DroppedNoHandler: c.droppedNoHandler.Load(),
		DroppedSlow: c.droppedSlow.Load(), StepErrors: c.stepErrors.Load(),
		Filtered: c.filtered.Load(), Delayed: c.delayed.Load(), Duplicated: c.duplicated.Load(),
		MalformedFrames: c.malformedFrames.Load(), RejectedStreams: c.rejectedStreams.Load(),
		ConnectFailures: c.connFailures.Load(),
	}
}

// later runs fn after d, from the delayer's goroutine: a packet the
// filter delayed. If too many wait already, the packet is dropped (and
// counted as filtered).
func (t *Transport) later(d time.Duration, fn func()) {
	if t.delayer.add(d, fn) {
		t.stats.delayed.Add(1)
	} else {
		t.stats.filtered.Add(1)
	}
}

// applyFilter runs the filter, if any, on p.
func (t *Transport) applyFilter(p *Packet) Verdict {
	f := t.filter.Load()
	if f == nil {
		return Verdict{}
	}
	v := (*f)(p)
	v.Duplicates = max(0, v.Duplicates)
	if v.Drop {
		t.stats.filtered.Add(1)
	}
	return v
}

package grpcnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
)

// This file is the sending side: one peer per remote node, with one
// connection, a bounded queue of envelopes, a bounded queue of snapshot
// chunks, and two goroutines, the Raft writer and the snapshot writer,
// each of which owns its stream.

// peerState is what the Raft writer knows of its connection.
type peerState uint32

const (
	// peerConnecting: no stream has failed yet. Messages are queued.
	peerConnecting peerState = iota
	// peerUp: the Raft stream is open. Messages are queued.
	peerUp
	// peerDown: the last attempt failed, and the writer is waiting to
	// retry. Messages (and new snapshot transfers) are dropped, and their
	// senders told the peer is unreachable.
	peerDown
)

type peer struct {
	t      *Transport
	id     raft.NodeID
	addr   string
	logger *slog.Logger
	conn   *grpc.ClientConn
	client raftpb.PeerClient

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the two writers

	msgs   chan outItem               // the Raft writer's queue
	chunks chan *raftpb.SnapshotFrame // the snapshot writer's queue
	state  atomic.Uint32              // a peerState; written by the Raft writer
}

// newPeer creates node id's peer and starts its writers. gRPC dials
// lazily, so this never blocks.
func (t *Transport) newPeer(id raft.NodeID, addr string) (*peer, error) {
	cfg := &t.cfg
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxFrameBytes), grpc.MaxCallSendMsgSize(cfg.MaxFrameBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: cfg.MinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.MaxBackoff},
			MinConnectTimeout: cfg.ConnectTimeout,
		}),
	}
	conn, err := grpc.NewClient(addr, append(opts, cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %d at %q: %w", ErrInvalidConfig, id, addr, err)
	}
	p := &peer{
		t:      t,
		id:     id,
		addr:   addr,
		logger: t.logger.With(slog.Uint64("peer", uint64(id)), slog.String("addr", addr)),
		conn:   conn,
		client: raftpb.NewPeerClient(conn),
		msgs:   make(chan outItem, cfg.QueueSize),
		chunks: make(chan *raftpb.SnapshotFrame, cfg.SnapshotQueue),
	}
	p.state.Store(uint32(peerConnecting))
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.wg.Go(p.runRaft)
	p.wg.Go(p.runSnapshots)
	return p, nil
}

// stop ends the writers, waits for them and closes the connection.
func (p *peer) stop() {
	p.cancel()
	p.wg.Wait()
	if err := p.conn.Close(); err != nil {
		p.logger.Debug("closing connection", "err", err)
	}
}

func (p *peer) isDown() bool { return peerState(p.state.Load()) == peerDown }

// offer queues it without blocking, reporting whether it fit.
func (p *peer) offer(it outItem) bool {
	if p.isDown() {
		p.t.stats.droppedUnreachable.Add(1)
		return false
	}
	select {
	case p.msgs <- it:
		return true
	default:
		p.t.stats.droppedQueueFull.Add(1)
		return false
	}
}

// offerChunk queues f without blocking; a chunk that does not fit is
// lost (snapxfer resends it).
func (p *peer) offerChunk(f *raftpb.SnapshotFrame) {
	select {
	case p.chunks <- f:
	default:
		p.t.stats.chunksLost.Add(1)
	}
}

// retry is the writer's reconnection backoff: it doubles from MinBackoff
// to MaxBackoff while attempts fail, with jitter.
type retry struct {
	min, max, cur time.Duration
}

func (r *retry) next() time.Duration {
	if r.cur == 0 {
		r.cur = r.min
	}
	d := r.cur
	r.cur = min(2*r.cur, r.max)
	return d/2 + rand.N(d/2+1)
}

func (r *retry) reset() { r.cur = 0 }

// sleep waits d, or until the peer stops (false).
func (p *peer) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// runRaft is the Raft writer: it opens the Raft stream, sends what is
// queued in batches until the stream breaks, and starts over after a
// backoff, until the peer stops.
func (p *peer) runRaft() {
	r := retry{min: p.t.cfg.MinBackoff, max: p.t.cfg.MaxBackoff}
	for {
		err := p.raftSession(&r)
		if p.ctx.Err() != nil {
			return
		}
		p.fail(err)
		if !p.sleep(r.next()) {
			return
		}
	}
}

// raftSession runs one Raft stream: open, Hello exchange, then batches.
// It returns why the stream ended.
func (p *peer) raftSession(r *retry) error {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	st, err := p.client.Raft(ctx)
	if err != nil {
		return fmt.Errorf("open Raft stream: %w", err)
	}
	err = p.handshake(cancel,
		func(h *raftpb.Hello) error { return st.Send(&raftpb.RaftFrame{Hello: h}) },
		st.Recv)
	if err != nil {
		return err
	}
	r.reset()
	if peerState(p.state.Swap(uint32(peerUp))) != peerUp {
		p.logger.Info("connected to peer")
	}
	return p.pump(st)
}

// handshake sends this node's Hello and checks the peer's answer, within
// ConnectTimeout (cancel ends the stream when it passes).
func (p *peer) handshake(cancel context.CancelFunc, send func(*raftpb.Hello) error, recv func() (*raftpb.Hello, error)) error {
	timer := time.AfterFunc(p.t.cfg.ConnectTimeout, cancel)
	defer timer.Stop()
	// A failed send shows up as the stream's error in recv.
	_ = send(hello{cluster: p.t.cluster, from: p.t.id, to: p.id}.toProto())
	pb, err := recv()
	if err != nil {
		if !timer.Stop() {
			return fmt.Errorf("no answer to Hello within %v: %w", p.t.cfg.ConnectTimeout, err)
		}
		return fmt.Errorf("exchanging Hellos: %w", err)
	}
	h, err := helloFromProto(pb)
	switch {
	case err != nil:
		return fmt.Errorf("peer's Hello: %w", err)
	case h.cluster != p.t.cluster:
		return fmt.Errorf("%w: node at %s answers for cluster %d, this node is in cluster %d", ErrWrongCluster, p.addr, h.cluster, p.t.cluster)
	case h.from != p.id || h.to != p.t.id:
		return fmt.Errorf("%w: node at %s answers as node %d (to node %d), expected node %d", ErrWrongNode, p.addr, h.from, h.to, p.id)
	}
	return nil
}

// pump sends what is queued in batches until the stream breaks or the
// peer stops.
func (p *peer) pump(st raftpb.Peer_RaftClient) error {
	cfg := &p.t.cfg
	var carry *outItem // an item that did not fit in the previous frame
	for {
		var first outItem
		if carry != nil {
			first, carry = *carry, nil
		} else {
			select {
			case <-p.ctx.Done():
				return p.ctx.Err()
			case first = <-p.msgs:
			}
		}
		f := &raftpb.RaftFrame{Envelopes: []*raftpb.Envelope{first.env}}
		size := first.size
	fill:
		for len(f.Envelopes) < cfg.MaxBatchMessages && size < cfg.MaxBatchBytes {
			select {
			case it := <-p.msgs:
				if size+it.size > cfg.MaxBatchBytes {
					carry = &it
					break fill
				}
				f.Envelopes = append(f.Envelopes, it.env)
				size += it.size
			default:
				break fill
			}
		}
		if err := st.Send(f); err != nil {
			p.t.stats.droppedSendFailed.Add(uint64(len(f.Envelopes)))
			if carry != nil {
				p.t.stats.droppedSendFailed.Add(1)
			}
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status says why.
				_, err = st.Recv()
			}
			return fmt.Errorf("send to peer: %w", err)
		}
		p.t.stats.messagesSent.Add(uint64(len(f.Envelopes)))
		p.t.stats.framesSent.Add(1)
	}
}

// fail records a broken or refused stream: the peer is down until the
// next stream opens, what is queued is dropped, and on the first failure
// every replica hears that the peer is unreachable.
func (p *peer) fail(err error) {
	prev := peerState(p.state.Swap(uint32(peerDown)))
	p.t.stats.connFailures.Add(1)
	var dropped uint64
	for drained := false; !drained; {
		select {
		case <-p.msgs:
			dropped++
		default:
			drained = true
		}
	}
	p.t.stats.droppedSendFailed.Add(dropped)
	if prev == peerDown {
		p.logger.Debug("peer still unreachable", "err", err)
		return
	}
	if status.Code(err) == codes.FailedPrecondition || errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrWrongNode) {
		p.logger.Error("peer refused this node: check the cluster ID, node IDs and peer addresses", "err", err)
	} else {
		p.logger.Warn("peer unreachable", "err", err, "dropped", dropped)
	}
	p.t.reportUnreachable(p.id)
}

// runSnapshots is the snapshot writer: it sends each queued chunk on the
// snapshot stream, opening it when needed. A chunk that cannot be sent is
// lost; snapxfer resends it or gives up on the transfer.
func (p *peer) runSnapshots() {
	var st raftpb.Peer_SnapshotClient
	cancel := func() {}
	defer func() { cancel() }()
	for {
		var f *raftpb.SnapshotFrame
		select {
		case <-p.ctx.Done():
			return
		case f = <-p.chunks:
		}
		if st == nil {
			var err error
			if st, cancel, err = p.openSnapshot(); err != nil {
				p.t.stats.chunksLost.Add(1)
				p.logger.Debug("cannot open snapshot stream; chunk lost", "err", err)
				continue
			}
		}
		if err := st.Send(f); err != nil {
			cancel()
			st, cancel = nil, func() {}
			p.t.stats.chunksLost.Add(1)
			p.logger.Debug("snapshot stream broke; chunk lost", "err", err)
			continue
		}
		p.t.stats.chunksSent.Add(1)
	}
}

func (p *peer) openSnapshot() (raftpb.Peer_SnapshotClient, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(p.ctx)
	st, err := p.client.Snapshot(ctx)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("open snapshot stream: %w", err)
	}
	err = p.handshake(cancel,
		func(h *raftpb.Hello) error { return st.Send(&raftpb.SnapshotFrame{Hello: h}) },
		st.Recv)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return st, cancel, nil
}

package grpcnet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// This file is the receiving side: gRPC runs one handler goroutine per
// inbound stream, that is one per peer node and stream kind, never one per
// group. Each decodes its frames and hands their items to the groups'
// replicas (Raft messages) and snapshot endpoints (chunks and acks).

type peerService struct {
	raftpb.UnimplementedPeerServer
	t *Transport
}

// Raft serves a peer's Raft stream.
func (s peerService) Raft(st raftpb.Peer_RaftServer) error {
	t := s.t
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if len(first.GetEnvelopes()) > 0 {
		return t.refuse(malformed("the Raft stream's first frame must carry a Hello alone"), "raft")
	}
	h, err := t.accept(first.GetHello(), "raft")
	if err != nil {
		return err
	}
	if err := st.Send(hello{cluster: t.cluster, from: t.id, to: h.from}.toProto()); err != nil {
		return err
	}
	ctx := st.Context()
	var items []inbound
	var cg congestion
	for {
		f, err := st.Recv()
		if err != nil {
			return endOfStream(err)
		}
		items, err = decodeRaftFrame(f, h.from, t.id, items[:0])
		if err != nil {
			return t.refuse(err, "raft", slog.Uint64("peer", uint64(h.from)))
		}
		t.stats.framesReceived.Add(1)
		t.deliver(ctx, items, &cg)
		clear(items) // let the messages go
	}
}

// Snapshot serves a peer's snapshot stream.
func (s peerService) Snapshot(st raftpb.Peer_SnapshotServer) error {
	t := s.t
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if first.GetChunk() != nil || first.GetGroup() != 0 {
		return t.refuse(malformed("the snapshot stream's first frame must carry a Hello alone"), "snapshot")
	}
	h, err := t.accept(first.GetHello(), "snapshot")
	if err != nil {
		return err
	}
	if err := st.Send(hello{cluster: t.cluster, from: t.id, to: h.from}.toProto()); err != nil {
		return err
	}
	for {
		f, err := st.Recv()
		if err != nil {
			return endOfStream(err)
		}
		g, c, err := decodeSnapshotFrame(f, h.from, t.id)
		if err != nil {
			return t.refuse(err, "snapshot", slog.Uint64("peer", uint64(h.from)))
		}
		t.stats.framesReceived.Add(1)
		t.deliverChunk(g, c)
	}
}

// endOfStream is what a handler returns when its stream's Recv fails: the
// peer closed it, or went away, or the server is stopping.
func endOfStream(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// accept checks a stream's Hello: the right cluster, this node, a version
// this node speaks. A refusal is logged here, and ends the stream with
// FAILED_PRECONDITION (or INVALID_ARGUMENT for a malformed Hello), which
// the peer logs too.
func (t *Transport) accept(pb *raftpb.Hello, stream string) (hello, error) {
	h, err := helloFromProto(pb)
	if err != nil {
		if errors.Is(err, ErrVersion) {
			t.stats.rejectedStreams.Add(1)
			t.logger.Error("refusing a peer stream", "stream", stream, "peer", pb.GetFrom(), "err", err)
			return hello{}, status.Error(codes.FailedPrecondition, err.Error())
		}
		return hello{}, t.refuse(err, stream)
	}
	switch {
	case h.cluster != t.cluster:
		t.stats.rejectedStreams.Add(1)
		t.logger.Error("refusing a peer of another cluster: check its cluster ID and this node's peer addresses",
			"stream", stream, "peer", uint64(h.from), "peer_cluster", h.cluster, "cluster", t.cluster)
		return hello{}, status.Errorf(codes.FailedPrecondition, "%v: node %d is in cluster %d, node %d in cluster %d",
			ErrWrongCluster, h.from, h.cluster, t.id, t.cluster)
	case h.to != t.id:
		t.stats.rejectedStreams.Add(1)
		t.logger.Error("refusing a peer stream meant for another node: the peer's address for that node is wrong",
			"stream", stream, "peer", uint64(h.from), "meant_for", uint64(h.to))
		return hello{}, status.Errorf(codes.FailedPrecondition, "%v: node %d reached node %d at an address it holds for node %d",
			ErrWrongNode, h.from, t.id, h.to)
	case h.from == t.id:
		t.stats.rejectedStreams.Add(1)
		t.logger.Error("refusing a peer stream from a node with this node's ID: two nodes share an ID", "stream", stream)
		return hello{}, status.Errorf(codes.FailedPrecondition, "%v: a peer claims to be node %d, which is this node",
			ErrWrongNode, t.id)
	}
	return h, nil
}

// refuse ends a stream that carried a malformed frame.
func (t *Transport) refuse(err error, stream string, attrs ...any) error {
	t.stats.malformedFrames.Add(1)
	t.logger.Warn("refusing a malformed frame; ending the peer's stream", append([]any{"stream", stream, "err", err}, attrs...)...)
	return status.Error(codes.InvalidArgument, err.Error())
}

// deliver hands a frame's items to their groups, in order. A replica whose
// inbound queue is full makes Step wait; each Step waits at most
// StepTimeout, and a group whose replica did not take a message in that
// time is congested: its messages on this stream are dropped without
// waiting for the next congestionSpan StepTimeouts, so that one stuck
// replica holds up its peers' other groups rarely and briefly.
func (t *Transport) deliver(ctx context.Context, items []inbound, cg *congestion) {
	var sc stepContext
	defer sc.release()
	for i := range items {
		in := &items[i]
		n := 1
		if t.filter.Load() != nil {
			p := Packet{Dir: Inbound, Group: in.group, Ack: in.ack}
			if in.ack != nil {
				p.From, p.To = in.ack.From, in.ack.To
			} else {
				p.From, p.To, p.Msg = in.msg.From, in.msg.To, &in.msg
			}
			v := t.applyFilter(&p)
			if v.Drop {
				continue
			}
			t.stats.duplicated.Add(uint64(v.Duplicates))
			n += v.Duplicates
			if v.Delay > 0 {
				for range n {
					c := cloneInbound(in)
					t.later(v.Delay, func() { t.deliverLater(c) })
				}
				continue
			}
		}
		for k := range n {
			c := *in
			if k > 0 {
				c = cloneInbound(in)
			}
			if c.ack != nil {
				t.deliverOne(ctx, c)
				continue
			}
			if cg.congested(c.group) {
				t.stats.droppedSlow.Add(1)
				continue
			}
			if !t.deliverOne(sc.get(ctx, t.cfg.StepTimeout), c) {
				cg.mark(c.group, congestionSpan*t.cfg.StepTimeout)
			}
		}
	}
}

// congestionSpan is how many StepTimeouts a congested group's messages
// are dropped for before its replica is tried again.
const congestionSpan = 10

// congestion is one inbound stream's memory of the groups whose replicas
// recently failed to take a message within StepTimeout. Only the stream's
// handler goroutine uses it.
type congestion struct {
	until map[GroupID]time.Time
}

func (cg *congestion) congested(g GroupID) bool {
	if len(cg.until) == 0 {
		return false
	}
	u, ok := cg.until[g]
	if !ok {
		return false
	}
	if time.Now().Before(u) {
		return true
	}
	delete(cg.until, g)
	return false
}

func (cg *congestion) mark(g GroupID, d time.Duration) {
	if cg.until == nil {
		cg.until = make(map[GroupID]time.Time)
	}
	cg.until[g] = time.Now().Add(d)
}

// stepContext bounds the Steps of a frame: each waits at most about
// StepTimeout. One context serves consecutive Steps until its deadline
// passes, so that a frame usually makes one.
type stepContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *stepContext) get(parent context.Context, d time.Duration) context.Context {
	if s.ctx != nil && s.ctx.Err() != nil && parent.Err() == nil {
		s.cancel()
		s.ctx = nil
	}
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithTimeout(parent, d)
	}
	return s.ctx
}

func (s *stepContext) release() {
	if s.cancel != nil {
		s.cancel()
	}
}

// deliverLater delivers an item the filter delayed, from the delayer's
// goroutine.
func (t *Transport) deliverLater(in inbound) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.StepTimeout)
	defer cancel()
	t.deliverOne(ctx, in)
}

func cloneInbound(in *inbound) inbound {
	c := inbound{group: in.group}
	if in.ack != nil {
		a := *in.ack
		c.ack = &a
	} else {
		c.msg = snapxfer.CloneMessage(&in.msg)
	}
	return c
}

// deliverOne routes one item by its group (the message's To is this
// node, checked when the frame was decoded). It reports false if the
// group's replica did not take the message before ctx ended.
func (t *Transport) deliverOne(ctx context.Context, in inbound) bool {
	g := t.group(in.group)
	if g == nil {
		t.stats.droppedUnknownGroup.Add(1)
		t.logger.Debug("dropped a message for a group this node does not host", "group", uint64(in.group))
		return true
	}
	if in.ack != nil {
		t.stats.acksReceived.Add(1)
		g.xfer.HandleAck(*in.ack) // never blocks
		return true
	}
	h := g.handler()
	if h == nil {
		t.stats.droppedNoHandler.Add(1)
		return true
	}
	if err := h.Step(ctx, in.msg); err != nil {
		if ctx.Err() != nil {
			t.stats.droppedSlow.Add(1)
			t.logger.Debug("a replica's inbound queue stayed full; message dropped", "group", uint64(in.group),
				"type", in.msg.Type.String(), "from", uint64(in.msg.From))
			return false
		}
		// A stopped replica, or a message its core refuses: what a
		// network loses too.
		t.stats.stepErrors.Add(1)
		return true
	}
	t.stats.messagesReceived.Add(1)
	return true
}

// deliverChunk hands a snapshot chunk to its group's transfers. A chunk
// for a group this node does not host is answered with a Failed ack, so
// that the sender gives up at once instead of after its stall timeout.
func (t *Transport) deliverChunk(g GroupID, c *snapxfer.Chunk) {
	n := 1
	if t.filter.Load() != nil {
		v := t.applyFilter(&Packet{Dir: Inbound, Group: g, From: c.From, To: c.To, Chunk: c})
		if v.Drop {
			return
		}
		t.stats.duplicated.Add(uint64(v.Duplicates))
		n += v.Duplicates
		if v.Delay > 0 {
			for range n {
				d := c.Clone()
				t.later(v.Delay, func() { t.deliverChunkNow(g, d) })
			}
			return
		}
	}
	for k := range n {
		d := c
		if k < n-1 {
			d = c.Clone() // the endpoint owns what it is handed
		}
		t.deliverChunkNow(g, d)
	}
}

func (t *Transport) deliverChunkNow(g GroupID, c *snapxfer.Chunk) {
	grp := t.group(g)
	if grp == nil {
		t.stats.droppedUnknownGroup.Add(1)
		if !c.Abort {
			t.sendAck(g, snapxfer.Ack{From: t.id, To: c.From, ID: c.ID, Kind: snapxfer.AckFailed, Reason: snapxfer.ReasonRefused})
		}
		return
	}
	t.stats.chunksReceived.Add(1)
	grp.xfer.HandleChunk(c) // never blocks
}

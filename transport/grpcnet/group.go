package grpcnet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// GroupID names a Raft group on the wire: a node routes what it receives
// by (group, to-node). It has the same values as replica.GroupID (this
// package does not import replica; a server converts).
type GroupID uint64

// Handler receives what the transport delivers for one group on this
// node; *replica.Replica implements it.
type Handler interface {
	// Step takes a message other than MsgSnap. It may block while the
	// replica's inbound queue is full, until ctx ends.
	Step(ctx context.Context, m raft.Message) error
	// StepSnapshot takes a MsgSnap and its data, streamed as the chunks
	// arrive (see snapxfer.Handler).
	StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error
	// ReportUnreachable is told (on the sending node) that a message to
	// peer was dropped or that the connection to peer failed. It must not
	// block.
	ReportUnreachable(peer raft.NodeID)
}

// Group is one group's endpoint on a Transport. It implements
// replica.Transport for the group's replica on this node, and delivers
// the group's inbound traffic to the attached Handler.
type Group struct {
	t      *Transport
	id     GroupID
	xfer   *snapxfer.Endpoint // the group's snapshot transfers, both ways
	h      atomic.Pointer[handlerRef]
	closed atomic.Bool
}

type handlerRef struct{ h Handler }

// newGroup creates group id's endpoint. The caller holds t.mu.
func (t *Transport) newGroup(id GroupID) (*Group, error) {
	g := &Group{t: t, id: id}
	opts := t.cfg.Snapshots
	opts.Logger = opts.Logger.With(slog.Uint64("group", uint64(id)))
	xfer, err := snapxfer.New(t.id, groupLink{g}, groupReceiver{g}, opts)
	if err != nil {
		return nil, fmt.Errorf("grpcnet: group %d: %w", id, err)
	}
	g.xfer = xfer
	return g, nil
}

// ID returns the group's ID.
func (g *Group) ID() GroupID { return g.id }

// Attach makes h the group's handler on this node: inbound messages go to
// it, and it hears about unreachable peers. Attach(nil) detaches (a
// stopped replica): messages for the group are then dropped.
func (g *Group) Attach(h Handler) {
	if h == nil {
		g.h.Store(nil)
		return
	}
	g.h.Store(&handlerRef{h})
}

func (g *Group) handler() Handler {
	if r := g.h.Load(); r != nil {
		return r.h
	}
	return nil
}

// close ends the group's snapshot transfers; its endpoint sends nothing
// more.
func (g *Group) close() {
	g.closed.Store(true)
	g.xfer.Close()
}

// Send implements replica.Transport. It never blocks: each message is
// encoded (so msgs may be reused at once) and queued for its peer's
// connection. A message whose peer has no address, whose connection is
// down or whose queue is full is dropped, and the peer is reported
// unreachable to the attached handler; what the filter drops is lost
// silently.
func (g *Group) Send(msgs []raft.Message) {
	t := g.t
	if g.closed.Load() || t.ctx.Err() != nil {
		return
	}
	var unreachable []raft.NodeID
	for i := range msgs {
		m := &msgs[i]
		if m.Type == raft.MsgSnap || m.From != t.id {
			// A replica sends MsgSnap through SendSnapshot, and has its
			// node's ID: a bug or a misconfigured replica. Sending it would
			// have the receiver end the stream, for every group.
			t.stats.droppedInvalid.Add(1)
			t.logger.Error("dropped an invalid outbound message: a MsgSnap handed to Send, or a replica whose ID is not its node's",
				"group", uint64(g.id), "type", m.Type.String(), "from", uint64(m.From), "to", uint64(m.To))
			continue
		}
		if !t.sendMessage(g.id, m) {
			unreachable = append(unreachable, m.To)
		}
	}
	if len(unreachable) == 0 {
		return
	}
	if h := g.handler(); h != nil {
		slices.Sort(unreachable)
		for _, id := range slices.Compact(unreachable) {
			h.ReportUnreachable(id)
		}
	}
}

// SendSnapshot implements replica.Transport: the snapshot is streamed to
// m.To in chunks over the peer's snapshot stream by the group's snapxfer
// endpoint. done hears an error wrapping ErrUnreachable at once if m.To has
// no address or its connection is down, and otherwise the transfer's
// outcome: nil, snapxfer.ErrStalled, a *snapxfer.RejectedError, or
// snapxfer.ErrClosed.
func (g *Group) SendSnapshot(m raft.Message, data io.ReadCloser, done func(error)) {
	g.xfer.Send(m, data, done)
}

// SnapshotStats returns the counters of the group's snapshot transfers.
func (g *Group) SnapshotStats() snapxfer.Stats { return g.xfer.Stats() }

// groupLink carries a group's snapshot chunks and acks (snapxfer.Link).
type groupLink struct{ g *Group }

// SendChunk implements snapxfer.Link: it encodes c (copying its data) and
// queues it for the peer's snapshot stream, waiting for room (flow
// control) until ctx ends, or for at most the snapshot RetransmitTimeout
// (the chunk is then lost, and resent later).
func (l groupLink) SendChunk(ctx context.Context, c *snapxfer.Chunk) error {
	return l.g.t.sendChunk(ctx, l.g.id, c)
}

// SendAck implements snapxfer.Link. It never blocks.
func (l groupLink) SendAck(a snapxfer.Ack) { l.g.t.sendAck(l.g.id, a) }

// groupReceiver hands an inbound snapshot stream to whichever handler is
// attached when the transfer starts (snapxfer.Handler).
type groupReceiver struct{ g *Group }

func (r groupReceiver) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	h := r.g.handler()
	if h == nil {
		return fmt.Errorf("grpcnet: group %d has no replica on node %d", r.g.id, r.g.t.id)
	}
	return h.StepSnapshot(ctx, m, data)
}

// outItem is one envelope queued for a peer's Raft stream.
type outItem struct {
	env  *raftpb.Envelope
	size int // an estimate of its encoded size, for batching
}

// Size estimates for batching: an envelope and message header, and each
// entry's header.
const (
	msgOverhead   = 64
	entryOverhead = 32
)

func messageSize(m *raft.Message) int {
	n := msgOverhead
	for i := range m.Entries {
		n += entryOverhead + len(m.Entries[i].Data)
	}
	return n
}

// sendMessage encodes m and queues it for its peer. It reports false when
// the message was dropped for a reason the sender should hear of (the peer
// is unreachable or its queue is full).
func (t *Transport) sendMessage(g GroupID, m *raft.Message) bool {
	p := t.peer(m.To)
	if p == nil || p.isDown() {
		t.stats.droppedUnreachable.Add(1)
		return false
	}
	v := t.applyFilter(&Packet{Dir: Outbound, Group: g, From: m.From, To: m.To, Msg: m})
	if v.Drop {
		return true
	}
	size := messageSize(m)
	if size > t.cfg.MaxFrameBytes-frameOverhead {
		t.stats.droppedTooLarge.Add(1)
		t.logger.Error("message larger than MaxFrameBytes; dropped", "group", uint64(g), "to", uint64(m.To),
			"type", m.Type.String(), "entries", len(m.Entries), "size", size, "max", t.cfg.MaxFrameBytes)
		return false
	}
	it := outItem{
		env:  &raftpb.Envelope{Group: uint64(g), Body: &raftpb.Envelope_Message{Message: MessageToProto(m)}},
		size: size,
	}
	return t.enqueue(p, it, v)
}

// sendAck queues a snapshot ack for its peer, dropping it if it does not
// fit: acks are cumulative, and snapxfer recovers from a lost one.
func (t *Transport) sendAck(g GroupID, a snapxfer.Ack) {
	p := t.peer(a.To)
	if p == nil || p.isDown() {
		t.stats.droppedUnreachable.Add(1)
		return
	}
	v := t.applyFilter(&Packet{Dir: Outbound, Group: g, From: a.From, To: a.To, Ack: &a})
	if v.Drop {
		return
	}
	t.enqueue(p, outItem{env: &raftpb.Envelope{Group: uint64(g), Body: &raftpb.Envelope_Ack{Ack: AckToProto(a)}}, size: msgOverhead}, v)
}

// enqueue queues it (and the copies v asks for) for p, now or after v's
// delay. It reports whether everything due now was queued.
func (t *Transport) enqueue(p *peer, it outItem, v Verdict) bool {
	n := 1 + v.Duplicates
	t.stats.duplicated.Add(uint64(v.Duplicates))
	if v.Delay > 0 {
		for range n {
			t.later(v.Delay, func() { p.offer(it) })
		}
		return true
	}
	ok := true
	for range n {
		ok = p.offer(it) && ok
	}
	return ok
}

// sendChunk encodes a snapshot chunk and queues it for its peer's
// snapshot stream, waiting for room until ctx ends.
func (t *Transport) sendChunk(ctx context.Context, g GroupID, c *snapxfer.Chunk) error {
	p := t.peer(c.To)
	if p == nil {
		return fmt.Errorf("%w: no address for node %d", ErrUnreachable, c.To)
	}
	if p.isDown() {
		return fmt.Errorf("%w: connection to node %d is down", ErrUnreachable, c.To)
	}
	v := t.applyFilter(&Packet{Dir: Outbound, Group: g, From: c.From, To: c.To, Chunk: c})
	if v.Drop {
		return nil // lost on the way
	}
	f := &raftpb.SnapshotFrame{Group: uint64(g), Chunk: ChunkToProto(c)}
	t.stats.duplicated.Add(uint64(v.Duplicates))
	if v.Delay > 0 {
		for range 1 + v.Duplicates {
			t.later(v.Delay, func() { p.offerChunk(f) })
		}
		return nil
	}
	for range v.Duplicates {
		p.offerChunk(f)
	}
	select {
	case p.chunks <- f:
		return nil
	default:
	}
	// Wait for room, but not forever: a hung peer must not keep the
	// sender from its own timers (it resends what was lost, and gives up
	// after its stall timeout).
	timer := time.NewTimer(t.cfg.Snapshots.RetransmitTimeout)
	defer timer.Stop()
	select {
	case p.chunks <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return fmt.Errorf("%w: connection to node %d closed", ErrUnreachable, c.To)
	case <-timer.C:
		t.stats.chunksLost.Add(1)
		return fmt.Errorf("%w: snapshot stream to node %d stuck for %v", ErrUnreachable, c.To, t.cfg.Snapshots.RetransmitTimeout)
	}
}

package snapxfer

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/raft"
)

// This file is the receiving side: HandleChunk routes each chunk to its
// transfer's queue (on the carrier's goroutine, without blocking), and one
// goroutine per inbound transfer runs the Handler, whose reads take the
// chunks off the queue in order.

// inKey names an inbound transfer: IDs are unique per sender only.
type inKey struct {
	from raft.NodeID
	id   TransferID
}

// inbound is one transfer this endpoint receives.
type inbound struct {
	e      *Endpoint
	key    inKey
	msg    raft.Message
	queue  chan *Chunk
	ctx    context.Context // cancelled with ErrAborted, ErrSuperseded or ErrClosed
	cancel context.CancelCauseFunc
	logger *slog.Logger

	// accepted is how many leading bytes of the stream the reader has
	// accepted; complete is set once that includes the last chunk. The
	// reader writes them; HandleChunk reads them to answer duplicates
	// without queueing them.
	accepted atomic.Uint64
	complete atomic.Bool
}

// HandleChunk takes a chunk a carrier received; the endpoint owns c from
// now on (and calls c.Release when done with it). It never blocks: the
// chunk is queued for its transfer, or answered at once, or dropped (a
// corrupt chunk, a full queue), which the sender recovers from as from a
// loss.
func (e *Endpoint) HandleChunk(c *Chunk) {
	if c.To != e.id || len(c.Data) > e.opts.MaxChunkSize || !c.Verify() {
		e.stats.corrupt.Add(1)
		e.logger.Warn("dropped a corrupt chunk", "from", uint64(c.From), "transfer", uint64(c.ID), "offset", c.Offset, "len", len(c.Data))
		c.release()
		return
	}
	reply, send, queued := e.routeChunk(c)
	if !queued {
		c.release()
	}
	if send {
		e.link.SendAck(reply)
	}
}

// routeChunk queues c for its transfer, starting the transfer on its
// first chunk. It returns the ack to send at once, if send is set, and
// whether c was queued.
func (e *Endpoint) routeChunk(c *Chunk) (Ack, bool, bool) {
	key := inKey{c.From, c.ID}
	reply := Ack{From: e.id, To: c.From, ID: c.ID}
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.mu.in[key]
	if in == nil {
		if final, ok := e.mu.finished.get(key); ok {
			return final, !c.Abort, false // the sender missed how it ended
		}
		switch {
		case c.Abort:
			return reply, false, false
		case e.mu.closed:
			reply.Kind, reply.Reason = AckFailed, ReasonClosed
			return reply, true, false
		case c.Offset != 0 || c.Msg == nil:
			reply.Kind, reply.Gen = AckUnknown, c.Gen
			return reply, true, false
		}
		if m := c.Msg; m.Type != raft.MsgSnap || m.Snapshot == nil || m.From != c.From || m.To != e.id {
			e.stats.rejected.Add(1)
			e.logger.Warn("refused a transfer with an invalid message", "from", uint64(c.From), "transfer", uint64(c.ID), "msg", raft.DescribeMessage(*m))
			reply.Kind, reply.Reason = AckFailed, ReasonRefused
			return reply, true, false
		}
		if old := e.mu.byPeer[c.From]; old != nil {
			e.forgetLocked(old, Ack{From: e.id, To: c.From, ID: old.key.id, Kind: AckFailed, Reason: ReasonSuperseded})
			old.cancel(ErrSuperseded)
		}
		if len(e.mu.in) >= e.opts.MaxInbound {
			e.stats.rejected.Add(1)
			e.logger.Info("refused a transfer: too many inbound", "from", uint64(c.From), "transfer", uint64(c.ID), "limit", e.opts.MaxInbound)
			reply.Kind, reply.Reason = AckFailed, ReasonBusy
			return reply, true, false
		}
		in = e.newInbound(key, *c.Msg)
		if !e.startLocked(in.run) {
			in.cancel(ErrClosed)
			reply.Kind, reply.Reason = AckFailed, ReasonClosed
			return reply, true, false
		}
		e.mu.in[key] = in
		e.mu.byPeer[key.from] = in
	}
	if c.Abort {
		in.cancel(ErrAborted)
		return reply, false, false
	}
	if acc := in.accepted.Load(); c.Offset < acc || in.complete.Load() {
		e.stats.dup.Add(1)
		reply.Kind, reply.Offset = AckProgress, acc
		return reply, true, false
	}
	select {
	case in.queue <- c:
		return reply, false, true
	default:
		e.stats.overflow.Add(1)
		return reply, false, false
	}
}

func (e *Endpoint) newInbound(key inKey, m raft.Message) *inbound {
	in := &inbound{e: e, key: key, msg: m, queue: make(chan *Chunk, e.opts.InboundQueue)}
	in.ctx, in.cancel = context.WithCancelCause(e.ctx)
	in.logger = e.logger.With(slog.Uint64("from", uint64(key.from)), slog.Uint64("transfer", uint64(key.id)),
		slog.Uint64("index", uint64(m.Snapshot.Index)), slog.Uint64("term", uint64(m.Term)))
	return in
}

// forgetLocked removes in from the live transfers (if it is still there)
// and remembers how it ended.
func (e *Endpoint) forgetLocked(in *inbound, final Ack) {
	if e.mu.in[in.key] == in {
		delete(e.mu.in, in.key)
	}
	if e.mu.byPeer[in.key.from] == in {
		delete(e.mu.byPeer, in.key.from)
	}
	e.mu.finished.put(in.key, final)
}

// run is the transfer's goroutine: it hands the stream to the Handler and
// reports the outcome to the sender.
func (in *inbound) run() {
	e := in.e
	r := &chunkReader{in: in}
	err := e.handler.StepSnapshot(in.ctx, in.msg, r)
	r.stop()
	if err == nil && !r.eof {
		err = ErrNotConsumed
	}
	final := Ack{From: e.id, To: in.key.from, ID: in.key.id, Offset: in.accepted.Load()}
	if err == nil {
		final.Kind = AckDone
	} else {
		// The reader's failure, or the cancellation, is the root cause;
		// the handler's error may only say that its read failed.
		cause := err
		if r.err != nil {
			cause = r.err
		} else if in.ctx.Err() != nil {
			cause = context.Cause(in.ctx)
		}
		final.Kind, final.Reason = AckFailed, reasonOf(cause)
	}
	e.mu.Lock()
	e.forgetLocked(in, final)
	e.mu.Unlock()
	in.cancel(nil)
	// Nothing is queued for in any more: HandleChunk no longer finds it.
	for len(in.queue) > 0 {
		(<-in.queue).release()
	}
	if err != nil {
		e.stats.recvFailed.Add(1)
		in.logger.Warn("snapshot transfer failed", "received", final.Offset, "reason", final.Reason.String(), "err", err)
	} else {
		e.stats.recvOK.Add(1)
		in.logger.Info("snapshot received", "bytes", final.Offset)
	}
	if final.Reason != ReasonAborted {
		e.link.SendAck(final)
	}
}

func (in *inbound) ack(kind AckKind, off uint64, gen uint32) {
	in.e.link.SendAck(Ack{From: in.e.id, To: in.key.from, ID: in.key.id, Kind: kind, Offset: off, Gen: gen})
}

// chunkReader is the stream a Handler reads: the data of the transfer's
// chunks, accepted strictly in order. It holds one chunk at a time.
type chunkReader struct {
	in     *inbound
	chunk  *Chunk // the current chunk, until its data is all read
	cur    []byte // the unread part of the current chunk
	last   bool   // cur belongs to the last chunk
	offset uint64 // bytes accepted
	crc    uint32 // CRC32C of the bytes accepted
	// resumeGen is the generation of the last resume asked for, if any.
	resumed   bool
	resumeGen uint32
	timer     *time.Timer
	eof       bool  // io.EOF was returned: the stream is complete and intact
	err       error // sticky failure
}

// Read implements io.Reader.
func (r *chunkReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.cur) == 0 {
		if r.chunk != nil {
			r.chunk.release() // an empty last chunk
			r.chunk = nil
		}
		if r.last {
			r.eof = true
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	if len(r.cur) == 0 {
		r.chunk.release() // its data is copied out
		r.chunk = nil
	}
	return n, nil
}

// next waits for the chunk at the accepted offset, answering the others:
// a duplicate with the offset accepted, a chunk beyond it with a request
// to resume there (once per generation). It gives up after StallTimeout
// without that chunk.
func (r *chunkReader) next() error {
	in := r.in
	e := in.e
	if r.timer == nil {
		r.timer = time.NewTimer(e.opts.StallTimeout)
	} else {
		r.timer.Reset(e.opts.StallTimeout)
	}
	for {
		select {
		case <-in.ctx.Done():
			return context.Cause(in.ctx)
		case <-r.timer.C:
			return fmt.Errorf("%w: no chunk from node %d at offset %d for %v", ErrStalled, in.key.from, r.offset, e.opts.StallTimeout)
		case c := <-in.queue:
			switch {
			case c.Offset < r.offset:
				c.release()
				e.stats.dup.Add(1)
				in.ack(AckProgress, r.offset, 0)
				continue
			case c.Offset > r.offset:
				c.release()
				e.stats.gap.Add(1)
				if !r.resumed || c.Gen > r.resumeGen {
					r.resumed, r.resumeGen = true, c.Gen
					in.ack(AckResume, r.offset, c.Gen)
				}
				continue
			case len(c.Data) == 0 && !c.Last:
				c.release()
				continue // carries nothing
			}
			r.crc = crc32.Update(r.crc, crcTable, c.Data)
			if c.Last && c.StreamCRC != r.crc {
				c.release()
				return fmt.Errorf("%w: node %d computed %08x, %d bytes received hash to %08x",
					ErrChecksum, in.key.from, c.StreamCRC, r.offset+uint64(len(c.Data)), r.crc)
			}
			r.offset += uint64(len(c.Data))
			in.accepted.Store(r.offset)
			if c.Last {
				in.complete.Store(true)
			}
			e.stats.accepted.Add(1)
			in.ack(AckProgress, r.offset, 0)
			r.chunk, r.cur, r.last = c, c.Data, c.Last
			return nil
		}
	}
}

// stop releases what the reader holds, once the handler is done with it.
func (r *chunkReader) stop() {
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.chunk != nil {
		r.chunk.release()
		r.chunk, r.cur = nil, nil
	}
}

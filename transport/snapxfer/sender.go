package snapxfer

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"time"

	"github.com/cairnkv/cairn/raft"
)

// This file is the sending side: one goroutine per outbound transfer reads
// the snapshot into a window of chunks, sends them, and slides the window
// as acknowledgements arrive.

// outbound is one transfer this endpoint sends. Its goroutine owns every
// field below acks; HandleAck reaches it only through acks.
type outbound struct {
	e      *Endpoint
	id     TransferID
	to     raft.NodeID
	msg    raft.Message
	data   io.ReadCloser
	done   func(error)
	acks   chan Ack
	logger *slog.Logger

	// win holds the chunks read and not yet acknowledged, oldest first:
	// the only copy of the stream the sender keeps, at most Window chunks.
	// The last chunk stays until AckDone, so that it can be resent if that
	// ack is lost.
	//
	// Invariant: win[0].off == acked (unless win is empty), and the slots
	// are contiguous.
	win  []slot
	free [][]byte // buffers of acknowledged chunks, reused
	// next is the index in win of the next chunk to send; a rewind sets
	// it back to 0.
	next      int
	acked     uint64 // the receiver has accepted every byte before it
	read      uint64 // bytes read from data
	eof       bool   // the last chunk has been read
	gen       uint32 // resend generation, carried by every chunk
	streamCRC uint32 // CRC32C of the bytes read
	sentAny   bool   // some chunk reached the link
}

// slot is one chunk of the window.
type slot struct {
	off  uint64
	data []byte
	last bool
	sent bool // sent at least once
}

func (s *slot) end() uint64 { return s.off + uint64(len(s.data)) }

// Send sends a MsgSnap and the snapshot's data to m.To, reading data in
// chunks and then closing it. It never blocks: the transfer runs on a
// goroutine of its own. done is called exactly once, from that goroutine,
// with nil once the receiver has staged the snapshot and queued m, or with
// why the transfer failed: ErrStalled (no progress within StallTimeout), a
// *RejectedError (the receiver said no), ErrClosed, or an error reading
// data. done must not block.
func (e *Endpoint) Send(m raft.Message, data io.ReadCloser, done func(error)) {
	if m.Type != raft.MsgSnap || m.Snapshot == nil {
		data.Close()
		done(fmt.Errorf("%w: got %v", ErrInvalidMessage, m.Type))
		return
	}
	o := &outbound{
		e:    e,
		id:   TransferID(e.nextID.Add(1)),
		to:   m.To,
		msg:  CloneMessage(&m),
		data: data,
		done: done,
		// Room for every ack a window of chunks and its duplicates can
		// prompt; a full mailbox drops acks, which is harmless (they are
		// cumulative) but wasteful.
		acks: make(chan Ack, 2*e.opts.Window+8),
	}
	o.logger = e.logger.With(slog.Uint64("to", uint64(o.to)), slog.Uint64("transfer", uint64(o.id)),
		slog.Uint64("index", uint64(m.Snapshot.Index)), slog.Uint64("term", uint64(m.Term)))
	e.mu.Lock()
	started := e.startLocked(o.run)
	if started {
		e.mu.out[o.id] = o
	}
	e.mu.Unlock()
	if !started {
		data.Close()
		done(ErrClosed)
	}
}

// HandleAck takes an acknowledgement a carrier received. It never blocks.
func (e *Endpoint) HandleAck(a Ack) {
	if a.To != e.id {
		return
	}
	e.mu.Lock()
	o := e.mu.out[a.ID]
	e.mu.Unlock()
	if o == nil || a.From != o.to {
		return // a transfer that has ended, or a stray
	}
	select {
	case o.acks <- a:
	default:
	}
}

func (o *outbound) run() {
	err := o.transfer()
	o.e.mu.Lock()
	delete(o.e.mu.out, o.id)
	o.e.mu.Unlock()
	if cerr := o.data.Close(); cerr != nil {
		o.logger.Debug("closing snapshot data", "err", cerr)
	}
	if err != nil {
		o.e.stats.sentFailed.Add(1)
		o.logger.Warn("snapshot transfer failed", "acked", o.acked, "err", err)
	} else {
		o.e.stats.sentOK.Add(1)
		o.logger.Info("snapshot sent", "bytes", o.read)
	}
	o.done(err)
}

// transfer runs the transfer to its end.
func (o *outbound) transfer() error {
	opts := &o.e.opts
	ctx := o.e.ctx
	// stall measures time without progress (the acknowledged offset
	// moving); rto time without progress or a rewind.
	stall := time.NewTimer(opts.StallTimeout)
	defer stall.Stop()
	rto := time.NewTimer(opts.RetransmitTimeout)
	defer rto.Stop()
	for {
		if err := o.fill(ctx); err != nil {
			o.abort()
			return err
		}
		select {
		case <-ctx.Done():
			o.abort()
			return context.Cause(ctx)
		case <-stall.C:
			o.abort()
			return fmt.Errorf("%w: node %d acknowledged nothing beyond offset %d for %v", ErrStalled, o.to, o.acked, opts.StallTimeout)
		case <-rto.C:
			o.rewind()
			rto.Reset(opts.RetransmitTimeout)
		case a := <-o.acks:
			res, err := o.onAck(a)
			if err != nil {
				if !errors.Is(err, ErrRejected) {
					o.abort()
				}
				return err
			}
			switch res {
			case ackDone:
				return nil
			case ackProgress:
				stall.Reset(opts.StallTimeout)
				rto.Reset(opts.RetransmitTimeout)
			case ackRewound:
				rto.Reset(opts.RetransmitTimeout)
			}
		}
	}
}

// fill sends what the window allows: the chunks in win not sent since the
// last rewind, then new chunks read from data while the window has room.
func (o *outbound) fill(ctx context.Context) error {
	for {
		if o.next == len(o.win) {
			if o.eof || len(o.win) >= o.e.opts.Window {
				return nil
			}
			if err := o.readChunk(); err != nil {
				return err
			}
		}
		s := &o.win[o.next]
		o.next++
		if err := o.send(ctx, s); err != nil {
			return err
		}
	}
}

// readChunk reads the next chunk of data into the window.
func (o *outbound) readChunk() error {
	size := o.e.opts.ChunkSize
	var buf []byte
	if n := len(o.free); n > 0 {
		buf, o.free = o.free[n-1], o.free[:n-1]
	} else {
		buf = make([]byte, size)
	}
	n, err := io.ReadFull(o.data, buf[:size])
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		o.eof = true
	default:
		o.free = append(o.free, buf)
		return fmt.Errorf("snapxfer: read snapshot at offset %d: %w", o.read+uint64(n), err)
	}
	buf = buf[:n]
	o.streamCRC = crc32.Update(o.streamCRC, crcTable, buf)
	o.win = append(o.win, slot{off: o.read, data: buf, last: o.eof})
	o.read += uint64(n)
	return nil
}

// send hands one chunk to the link. A chunk the link cannot send counts as
// lost (retransmission recovers it), except the very first: a peer that
// cannot be reached at all fails the transfer at once.
func (o *outbound) send(ctx context.Context, s *slot) error {
	c := &Chunk{From: o.e.id, To: o.to, ID: o.id, Gen: o.gen, Offset: s.off, Data: s.data, Last: s.last}
	if s.off == 0 {
		c.Msg = &o.msg
	}
	if s.last {
		c.StreamCRC = o.streamCRC
	}
	c.Seal()
	o.e.stats.chunksSent.Add(1)
	if s.sent {
		o.e.stats.chunksResent.Add(1)
	}
	s.sent = true
	if err := o.e.link.SendChunk(ctx, c); err != nil {
		if !o.sentAny {
			return fmt.Errorf("snapxfer: send snapshot to node %d: %w", o.to, err)
		}
		o.logger.Debug("chunk not sent; it will be resent", "offset", s.off, "err", err)
		return nil
	}
	o.sentAny = true
	return nil
}

// rewind goes back to the acknowledged offset: every chunk in the window
// is sent again, in a new generation.
func (o *outbound) rewind() {
	if len(o.win) == 0 {
		return
	}
	o.gen++
	o.next = 0
	o.e.stats.rewinds.Add(1)
}

type ackResult uint8

const (
	ackNothing  ackResult = iota // stale or duplicate
	ackProgress                  // the acknowledged offset moved
	ackRewound                   // nothing acknowledged, but a resend began
	ackDone                      // the transfer succeeded
)

// onAck applies an acknowledgement.
func (o *outbound) onAck(a Ack) (ackResult, error) {
	switch a.Kind {
	case AckFailed:
		return ackNothing, &RejectedError{Reason: a.Reason}
	case AckDone:
		if !o.eof || a.Offset != o.read {
			return ackNothing, fmt.Errorf("%w: node %d reports done at offset %d, but %d bytes were sent (end read: %t)",
				ErrProtocol, o.to, a.Offset, o.read, o.eof)
		}
		o.acked = a.Offset
		return ackDone, nil
	case AckUnknown:
		if a.Gen != o.gen {
			return ackNothing, nil // answered a generation already resent
		}
		if len(o.win) == 0 || o.win[0].off != 0 {
			// The receiver forgot a transfer whose beginning we no longer
			// hold: the leader must start over with a new one.
			return ackNothing, &RejectedError{Reason: ReasonUnknownTransfer}
		}
		o.rewind()
		return ackRewound, nil
	case AckProgress, AckResume:
	default:
		return ackNothing, nil // a kind from a newer protocol version
	}
	res := ackNothing
	if a.Offset > o.acked {
		if err := o.release(a.Offset); err != nil {
			return ackNothing, err
		}
		res = ackProgress
	}
	if a.Kind == AckResume && a.Gen == o.gen {
		o.rewind()
		if res == ackNothing {
			res = ackRewound
		}
	}
	return res, nil
}

// release drops the chunks the receiver has accepted, up to offset off,
// which must be the end of a chunk sent. The last chunk is kept until
// AckDone.
func (o *outbound) release(off uint64) error {
	k := 0
	for k < len(o.win) && o.win[k].end() <= off {
		k++
	}
	if k == 0 || o.win[k-1].end() != off || !o.win[k-1].sent {
		return fmt.Errorf("%w: node %d acknowledged offset %d, which is not the end of a chunk sent (acknowledged %d, read %d)",
			ErrProtocol, o.to, off, o.acked, o.read)
	}
	o.acked = off
	if o.win[k-1].last {
		k-- // kept until AckDone
	}
	for i := range k {
		o.free = append(o.free, o.win[i].data[:cap(o.win[i].data)])
	}
	o.win = append(o.win[:0], o.win[k:]...)
	o.next = max(0, o.next-k)
	return nil
}

// abort tells the receiver, best effort, that the transfer is abandoned,
// so that it frees its slot now rather than after its own stall timeout.
func (o *outbound) abort() {
	if !o.sentAny {
		return
	}
	c := &Chunk{From: o.e.id, To: o.to, ID: o.id, Gen: o.gen, Offset: o.acked, Abort: true}
	c.Seal()
	// The endpoint's context may be what ended the transfer; the abort
	// still deserves a bounded try.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(o.e.ctx), o.e.opts.RetransmitTimeout)
	defer cancel()
	if err := o.e.link.SendChunk(ctx, c); err != nil {
		o.logger.Debug("abort not sent", "err", err)
	}
}

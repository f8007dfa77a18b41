package snapxfer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/cairnkv/cairn/raft"
)

// TransferID names one transfer. The sender picks it; it is unique among
// the sender's transfers (a sender starts numbering at a random value, so
// a restarted sender does not reuse the IDs of its previous life).
type TransferID uint64

// Chunk is one piece of a snapshot stream, sent by the sender.
//
// Invariant: Msg is set on the chunk at Offset 0 and on no other; Last and
// StreamCRC are set on the final chunk only; an Abort chunk carries no data.
type Chunk struct {
	// From is the sender's node, To the receiver's. Carriers route by To;
	// the receiver trusts From as the carrier reports it.
	From, To raft.NodeID
	// ID names the transfer.
	ID TransferID
	// Gen is the sender's resend generation: it grows each time the
	// sender rewinds to its acknowledged offset. A receiver asks for a
	// resume once per generation (see AckResume).
	Gen uint32
	// Offset is the position of Data in the stream.
	Offset uint64
	// Msg is the MsgSnap (with its SnapshotMeta) the stream belongs to, on
	// the first chunk only.
	Msg *raft.Message
	// Data is the chunk's part of the stream: at most the sender's
	// ChunkSize bytes. Only the last chunk may be shorter (or empty).
	Data []byte
	// Last marks the final chunk; StreamCRC is then the CRC32C of the
	// whole stream.
	Last      bool
	StreamCRC uint32
	// Abort says that the sender gave up on the transfer; the receiver
	// discards it.
	Abort bool
	// CRC is the chunk's checksum (see Checksum). A chunk whose CRC does
	// not match is dropped, as if it had been lost.
	CRC uint32

	// Release, if set, is called once by the receiving Endpoint when it
	// no longer needs Data, so that a carrier can recycle the memory of
	// the chunks it decodes. It is not part of the wire format.
	Release func()
}

// release calls c.Release, if any, once.
func (c *Chunk) release() {
	if f := c.Release; f != nil {
		c.Release = nil
		f()
	}
}

// AckKind says what an Ack reports.
type AckKind uint8

const (
	// AckProgress reports that the receiver has accepted the first Offset
	// bytes of the stream, in order and intact, and needs none of them
	// again. It answers every chunk accepted and every duplicate.
	AckProgress AckKind = iota + 1
	// AckResume asks the sender to resend from Offset (which it also
	// acknowledges, as AckProgress does): a chunk of generation Gen arrived
	// beyond Offset, so something before it was lost or reordered. The
	// receiver asks once per generation; the sender rewinds only for a
	// request of its current generation.
	AckResume
	// AckUnknown says that the receiver holds no state for the transfer: it
	// never got the first chunk, or has forgotten the transfer. The sender
	// starts over from offset 0 if it still holds that chunk, and fails the
	// transfer otherwise (the leader then sends a new snapshot: a restart).
	// Gen is the generation of the chunk that prompted it.
	AckUnknown
	// AckDone says that the whole stream arrived with a matching checksum
	// and was handed to the receiving replica, which staged it and queued
	// the MsgSnap. The transfer has succeeded.
	AckDone
	// AckFailed says that the receiver gave up; Reason says why.
	AckFailed
)

func (k AckKind) String() string {
	switch k {
	case AckProgress:
		return "Progress"
	case AckResume:
		return "Resume"
	case AckUnknown:
		return "Unknown"
	case AckDone:
		return "Done"
	case AckFailed:
		return "Failed"
	}
	return fmt.Sprintf("AckKind(%d)", uint8(k))
}

// Reason is why a receiver failed a transfer: the protocol's small error
// enum, so that a sender can tell "the receiver said no" (a *RejectedError)
// from "we never heard back" (ErrStalled).
type Reason uint8

const (
	ReasonNone Reason = iota
	// ReasonBusy: the receiver already runs its limit of inbound transfers.
	ReasonBusy
	// ReasonStalled: no chunk arrived in order within the receiver's stall
	// timeout.
	ReasonStalled
	// ReasonChecksum: the whole stream's checksum did not match.
	ReasonChecksum
	// ReasonRefused: the receiving replica refused the snapshot or could
	// not stage it (a full disk, a stopped replica, an invalid message).
	ReasonRefused
	// ReasonSuperseded: a newer transfer from the same sender replaced it.
	ReasonSuperseded
	// ReasonClosed: the receiver is shutting down.
	ReasonClosed
	// ReasonAborted: the sender aborted it (never sent back; for logs).
	ReasonAborted
	// ReasonUnknownTransfer: the receiver forgot the transfer and the
	// sender can no longer start over (reported locally, from AckUnknown).
	ReasonUnknownTransfer
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "None"
	case ReasonBusy:
		return "Busy"
	case ReasonStalled:
		return "Stalled"
	case ReasonChecksum:
		return "Checksum"
	case ReasonRefused:
		return "Refused"
	case ReasonSuperseded:
		return "Superseded"
	case ReasonClosed:
		return "Closed"
	case ReasonAborted:
		return "Aborted"
	case ReasonUnknownTransfer:
		return "UnknownTransfer"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Ack is the receiver's answer to chunks.
type Ack struct {
	// From is the receiver, To the sender.
	From, To raft.NodeID
	ID       TransferID
	Kind     AckKind
	// Offset is cumulative: the receiver has accepted every byte before
	// it (AckProgress, AckResume, AckDone).
	Offset uint64
	// Gen is, for AckResume and AckUnknown, the generation of the chunk
	// that prompted it.
	Gen uint32
	// Reason is set on AckFailed.
	Reason Reason
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Chunk checksum input. Do not change: both ends of every carrier compute
// it.
//
//	+--------+--------+--------+-------+-----------+==============+=======+
//	| id     | gen    | offset | flags | streamCRC | msg (if set) | data  |
//	| u64    | u32    | u64    | u8    | u32       |              |       |
//	+--------+--------+--------+-------+-----------+==============+=======+
//	flags: 1 last, 2 abort, 4 msg present. Little-endian.
//	msg  = term u64 | snapshot index u64 | snapshot term u64 |
//	       raft.ConfState.Marshal()
//	CRC  = CRC32C (Castagnoli) of all of it.
const (
	flagLast  = 1
	flagAbort = 2
	flagMsg   = 4
)

// Checksum computes the chunk's checksum over its header fields, the
// snapshot metadata of its message (if any) and its data.
func (c *Chunk) Checksum() uint32 {
	var hdr [64]byte
	b := hdr[:0]
	b = binary.LittleEndian.AppendUint64(b, uint64(c.ID))
	b = binary.LittleEndian.AppendUint32(b, c.Gen)
	b = binary.LittleEndian.AppendUint64(b, c.Offset)
	var flags byte
	if c.Last {
		flags |= flagLast
	}
	if c.Abort {
		flags |= flagAbort
	}
	if c.Msg != nil {
		flags |= flagMsg
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint32(b, c.StreamCRC)
	crc := crc32.Checksum(b, crcTable)
	if m := c.Msg; m != nil {
		b = binary.LittleEndian.AppendUint64(b[:0], uint64(m.Term))
		if s := m.Snapshot; s != nil {
			b = binary.LittleEndian.AppendUint64(b, uint64(s.Index))
			b = binary.LittleEndian.AppendUint64(b, uint64(s.Term))
			crc = crc32.Update(crc, crcTable, b)
			crc = crc32.Update(crc, crcTable, s.ConfState.Marshal())
		} else {
			crc = crc32.Update(crc, crcTable, b)
		}
	}
	return crc32.Update(crc, crcTable, c.Data)
}

// Seal sets the chunk's CRC. A sender seals every chunk it sends.
func (c *Chunk) Seal() { c.CRC = c.Checksum() }

// Verify reports whether the chunk's CRC matches its contents.
func (c *Chunk) Verify() bool { return c.CRC == c.Checksum() }

// Clone returns a deep copy of c, as decoding it from a wire would: the
// copy shares no memory with c, and has no Release.
func (c *Chunk) Clone() *Chunk {
	d := *c
	d.Release = nil
	if c.Data != nil {
		d.Data = append(make([]byte, 0, len(c.Data)), c.Data...)
	}
	if c.Msg != nil {
		m := CloneMessage(c.Msg)
		d.Msg = &m
	}
	return &d
}

// CloneMessage copies m deeply, as encoding it for a wire would.
func CloneMessage(m *raft.Message) raft.Message {
	c := *m
	if m.Entries != nil {
		c.Entries = make([]raft.Entry, len(m.Entries))
		for i, ent := range m.Entries {
			ent.Data = append([]byte(nil), ent.Data...)
			c.Entries[i] = ent
		}
	}
	if m.Snapshot != nil {
		s := *m.Snapshot
		s.ConfState.Voters = append([]raft.NodeID(nil), s.ConfState.Voters...)
		c.Snapshot = &s
	}
	return c
}

// String describes the chunk deterministically, for logs and golden tests.
func (c *Chunk) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chunk %d->%d id=%x gen=%d off=%d len=%d", c.From, c.To, uint64(c.ID), c.Gen, c.Offset, len(c.Data))
	if c.Msg != nil {
		fmt.Fprintf(&b, " msg=[%s]", raft.DescribeMessage(*c.Msg))
	}
	if c.Last {
		fmt.Fprintf(&b, " last stream=%08x", c.StreamCRC)
	}
	if c.Abort {
		b.WriteString(" abort")
	}
	return b.String()
}

// String describes the ack deterministically, for logs and golden tests.
func (a Ack) String() string {
	s := fmt.Sprintf("ack %d->%d id=%x %s off=%d", a.From, a.To, uint64(a.ID), a.Kind, a.Offset)
	switch a.Kind {
	case AckResume, AckUnknown:
		s += fmt.Sprintf(" gen=%d", a.Gen)
	case AckFailed:
		s += " reason=" + a.Reason.String()
	}
	return s
}

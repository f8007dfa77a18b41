package grpcnet

import (
	"fmt"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// This file converts between the raft and snapxfer types and their wire
// form (package api/raftpb). Encoding copies every byte it keeps, so the
// caller may reuse its memory at once. Decoding validates everything a
// receiver relies on and returns an error wrapping ErrMalformed for
// anything else: a frame from the network never makes it panic (the fuzz
// targets in fuzz_test.go check that).

// ProtocolVersion is the peer protocol version this package speaks
// (Hello.version).
const ProtocolVersion = 1

// maxVoters bounds a decoded configuration, as raft.UnmarshalConfState
// does.
const maxVoters = 1 << 16

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// MessageToProto encodes m, copying its entries' data.
func MessageToProto(m *raft.Message) *raftpb.Message {
	pb := &raftpb.Message{
		Type:       raftpb.MessageType(m.Type),
		From:       uint64(m.From),
		To:         uint64(m.To),
		Term:       uint64(m.Term),
		LogTerm:    uint64(m.LogTerm),
		Index:      uint64(m.Index),
		Commit:     uint64(m.Commit),
		Reject:     m.Reject,
		RejectHint: uint64(m.RejectHint),
		Context:    m.Context,
		Transfer:   m.Transfer,
	}
	if len(m.Entries) > 0 {
		// One allocation holds every entry's data, and one the entries.
		n := 0
		for i := range m.Entries {
			n += len(m.Entries[i].Data)
		}
		buf := make([]byte, 0, n)
		ents := make([]raftpb.Entry, len(m.Entries))
		pb.Entries = make([]*raftpb.Entry, len(m.Entries))
		for i := range m.Entries {
			e := &m.Entries[i]
			pe := &ents[i]
			pe.Term, pe.Index, pe.Type = uint64(e.Term), uint64(e.Index), raftpb.EntryType(e.Type)
			if len(e.Data) > 0 {
				start := len(buf)
				buf = append(buf, e.Data...)
				pe.Data = buf[start:len(buf):len(buf)]
			}
			pb.Entries[i] = pe
		}
	}
	if s := m.Snapshot; s != nil {
		pb.Snapshot = &raftpb.SnapshotMeta{
			Index:     uint64(s.Index),
			Term:      uint64(s.Term),
			ConfState: &raftpb.ConfState{Voters: nodeIDsToProto(s.ConfState.Voters)},
		}
	}
	return pb
}

func nodeIDsToProto(ids []raft.NodeID) []uint64 {
	if len(ids) == 0 {
		return nil
	}
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out
}

// MessageFromProto decodes and validates a message: a known type, both
// node IDs set, known entry types, and snapshot metadata (with a valid
// configuration) on MsgSnap and on no other type. What the message says
// is the Raft core's to judge; the core refuses what contradicts its log.
// The decoded message shares no memory with pb's caller-visible slices
// except entry data, which protobuf decoding already owns.
func MessageFromProto(pb *raftpb.Message) (raft.Message, error) {
	if pb == nil {
		return raft.Message{}, malformed("missing message")
	}
	t := pb.GetType()
	if t < raftpb.MessageType_MSG_APP || t > raftpb.MessageType_MSG_READ_INDEX_RESP {
		return raft.Message{}, malformed("unknown message type %d", int32(t))
	}
	m := raft.Message{
		Type:       raft.MessageType(t),
		From:       raft.NodeID(pb.GetFrom()),
		To:         raft.NodeID(pb.GetTo()),
		Term:       raft.Term(pb.GetTerm()),
		LogTerm:    raft.Term(pb.GetLogTerm()),
		Index:      raft.Index(pb.GetIndex()),
		Commit:     raft.Index(pb.GetCommit()),
		Reject:     pb.GetReject(),
		RejectHint: raft.Index(pb.GetRejectHint()),
		Context:    pb.GetContext(),
		Transfer:   pb.GetTransfer(),
	}
	if m.From == raft.None || m.To == raft.None {
		return raft.Message{}, malformed("%v from node %d to node %d: node IDs must not be zero", m.Type, m.From, m.To)
	}
	if n := len(pb.GetEntries()); n > 0 {
		m.Entries = make([]raft.Entry, n)
		for i, pe := range pb.GetEntries() {
			if pe == nil {
				return raft.Message{}, malformed("%v entry %d missing", m.Type, i)
			}
			et := pe.GetType()
			if et < raftpb.EntryType_ENTRY_NORMAL || et > raftpb.EntryType_ENTRY_CONF_CHANGE {
				return raft.Message{}, malformed("%v entry %d: unknown entry type %d", m.Type, i, int32(et))
			}
			m.Entries[i] = raft.Entry{Term: raft.Term(pe.GetTerm()), Index: raft.Index(pe.GetIndex()), Type: raft.EntryType(et), Data: pe.GetData()}
		}
	}
	ps := pb.GetSnapshot()
	switch {
	case m.Type == raft.MsgSnap && ps == nil:
		return raft.Message{}, malformed("MsgSnap without snapshot metadata")
	case m.Type != raft.MsgSnap && ps != nil:
		return raft.Message{}, malformed("snapshot metadata on a %v", m.Type)
	case ps != nil:
		if ps.GetIndex() == 0 {
			return raft.Message{}, malformed("MsgSnap with an empty snapshot (index 0)")
		}
		voters, err := votersFromProto(ps.GetConfState().GetVoters())
		if err != nil {
			return raft.Message{}, err
		}
		m.Snapshot = &raft.SnapshotMeta{
			Index:     raft.Index(ps.GetIndex()),
			Term:      raft.Term(ps.GetTerm()),
			ConfState: raft.ConfState{Voters: voters},
		}
	}
	return m, nil
}

// votersFromProto checks the raft.ConfState invariant: sorted, no
// duplicates, and no zero ID.
func votersFromProto(vs []uint64) ([]raft.NodeID, error) {
	if len(vs) > maxVoters {
		return nil, malformed("configuration of %d voters", len(vs))
	}
	if len(vs) == 0 {
		return nil, nil
	}
	out := make([]raft.NodeID, len(vs))
	for i, v := range vs {
		if v == 0 {
			return nil, malformed("configuration names node 0")
		}
		if i > 0 && v <= vs[i-1] {
			return nil, malformed("configuration voters not sorted and unique: %d after %d", v, vs[i-1])
		}
		out[i] = raft.NodeID(v)
	}
	return out, nil
}

// ChunkToProto encodes a snapshot chunk, copying its data.
func ChunkToProto(c *snapxfer.Chunk) *raftpb.SnapshotChunk {
	pb := &raftpb.SnapshotChunk{
		From:      uint64(c.From),
		To:        uint64(c.To),
		Id:        uint64(c.ID),
		Gen:       c.Gen,
		Offset:    c.Offset,
		Last:      c.Last,
		StreamCrc: c.StreamCRC,
		Abort:     c.Abort,
		Crc:       c.CRC,
	}
	if len(c.Data) > 0 {
		pb.Data = append(make([]byte, 0, len(c.Data)), c.Data...)
	}
	if c.Msg != nil {
		pb.Msg = MessageToProto(c.Msg)
	}
	return pb
}

// ChunkFromProto decodes and validates a snapshot chunk: both node IDs
// set, a MsgSnap (between the same nodes) on the chunk at offset 0 only,
// and no data on an abort. The chunk's checksum is the receiving
// snapxfer.Endpoint's to verify: a chunk damaged on the way is dropped
// there, as if lost.
func ChunkFromProto(pb *raftpb.SnapshotChunk) (*snapxfer.Chunk, error) {
	if pb == nil {
		return nil, malformed("missing snapshot chunk")
	}
	c := &snapxfer.Chunk{
		From:      raft.NodeID(pb.GetFrom()),
		To:        raft.NodeID(pb.GetTo()),
		ID:        snapxfer.TransferID(pb.GetId()),
		Gen:       pb.GetGen(),
		Offset:    pb.GetOffset(),
		Data:      pb.GetData(),
		Last:      pb.GetLast(),
		StreamCRC: pb.GetStreamCrc(),
		Abort:     pb.GetAbort(),
		CRC:       pb.GetCrc(),
	}
	if c.From == raft.None || c.To == raft.None {
		return nil, malformed("snapshot chunk from node %d to node %d: node IDs must not be zero", c.From, c.To)
	}
	if c.Abort && len(c.Data) > 0 {
		return nil, malformed("snapshot abort chunk with %d bytes of data", len(c.Data))
	}
	if pm := pb.GetMsg(); pm != nil {
		m, err := MessageFromProto(pm)
		if err != nil {
			return nil, fmt.Errorf("snapshot chunk message: %w", err)
		}
		switch {
		case m.Type != raft.MsgSnap:
			return nil, malformed("snapshot chunk carries a %v", m.Type)
		case c.Offset != 0:
			return nil, malformed("snapshot chunk at offset %d carries the MsgSnap", c.Offset)
		case m.From != c.From || m.To != c.To:
			return nil, malformed("snapshot chunk %d->%d carries a MsgSnap %d->%d", c.From, c.To, m.From, m.To)
		}
		c.Msg = &m
	}
	return c, nil
}

// AckToProto encodes a snapshot acknowledgement.
func AckToProto(a snapxfer.Ack) *raftpb.SnapshotAck {
	return &raftpb.SnapshotAck{
		From:   uint64(a.From),
		To:     uint64(a.To),
		Id:     uint64(a.ID),
		Kind:   raftpb.AckKind(a.Kind),
		Offset: a.Offset,
		Gen:    a.Gen,
		Reason: raftpb.Reason(a.Reason),
	}
}

// AckFromProto decodes and validates a snapshot acknowledgement: both
// node IDs set, a known kind and a known reason.
func AckFromProto(pb *raftpb.SnapshotAck) (snapxfer.Ack, error) {
	if pb == nil {
		return snapxfer.Ack{}, malformed("missing snapshot ack")
	}
	k, r := pb.GetKind(), pb.GetReason()
	if k < raftpb.AckKind_ACK_PROGRESS || k > raftpb.AckKind_ACK_FAILED {
		return snapxfer.Ack{}, malformed("unknown snapshot ack kind %d", int32(k))
	}
	if r < raftpb.Reason_REASON_NONE || r > raftpb.Reason_REASON_UNKNOWN_TRANSFER {
		return snapxfer.Ack{}, malformed("unknown snapshot failure reason %d", int32(r))
	}
	a := snapxfer.Ack{
		From:   raft.NodeID(pb.GetFrom()),
		To:     raft.NodeID(pb.GetTo()),
		ID:     snapxfer.TransferID(pb.GetId()),
		Kind:   snapxfer.AckKind(k),
		Offset: pb.GetOffset(),
		Gen:    pb.GetGen(),
		Reason: snapxfer.Reason(r),
	}
	if a.From == raft.None || a.To == raft.None {
		return snapxfer.Ack{}, malformed("snapshot ack from node %d to node %d: node IDs must not be zero", a.From, a.To)
	}
	return a, nil
}

// hello is a decoded Hello.
type hello struct {
	cluster  uint64
	from, to raft.NodeID
}

func (h hello) toProto() *raftpb.Hello {
	return &raftpb.Hello{ClusterId: h.cluster, From: uint64(h.from), To: uint64(h.to), Version: ProtocolVersion}
}

// helloFromProto decodes and validates a Hello. A version other than
// ProtocolVersion wraps ErrVersion.
func helloFromProto(pb *raftpb.Hello) (hello, error) {
	if pb == nil {
		return hello{}, malformed("the stream's first frame must carry a Hello")
	}
	if v := pb.GetVersion(); v != ProtocolVersion {
		return hello{}, fmt.Errorf("%w: peer speaks version %d, this node %d", ErrVersion, v, ProtocolVersion)
	}
	h := hello{cluster: pb.GetClusterId(), from: raft.NodeID(pb.GetFrom()), to: raft.NodeID(pb.GetTo())}
	if h.cluster == 0 || h.from == raft.None || h.to == raft.None {
		return hello{}, malformed("Hello of cluster %d from node %d to node %d: none may be zero", h.cluster, h.from, h.to)
	}
	return h, nil
}

// inbound is one decoded item of a Raft frame: a message or an ack.
type inbound struct {
	group GroupID
	msg   raft.Message
	ack   *snapxfer.Ack // set for an ack; msg is then zero
}

// decodeRaftFrame decodes a batch that arrived on a stream from node from
// to node to, appending its items to dst. The whole frame is refused if
// any item is malformed, is a MsgSnap (which travels in chunks), or claims
// other endpoints than the stream's.
func decodeRaftFrame(f *raftpb.RaftFrame, from, to raft.NodeID, dst []inbound) ([]inbound, error) {
	if f.GetHello() != nil {
		return dst, malformed("Hello in the middle of a stream")
	}
	for i, env := range f.GetEnvelopes() {
		if env == nil {
			return dst, malformed("envelope %d missing", i)
		}
		in := inbound{group: GroupID(env.GetGroup())}
		switch body := env.GetBody().(type) {
		case *raftpb.Envelope_Message:
			m, err := MessageFromProto(body.Message)
			if err != nil {
				return dst, fmt.Errorf("envelope %d (group %d): %w", i, in.group, err)
			}
			if m.Type == raft.MsgSnap {
				return dst, malformed("envelope %d (group %d): a MsgSnap must travel on the snapshot stream", i, in.group)
			}
			if m.From != from || m.To != to {
				return dst, malformed("envelope %d (group %d): %v %d->%d on the stream %d->%d", i, in.group, m.Type, m.From, m.To, from, to)
			}
			in.msg = m
		case *raftpb.Envelope_Ack:
			a, err := AckFromProto(body.Ack)
			if err != nil {
				return dst, fmt.Errorf("envelope %d (group %d): %w", i, in.group, err)
			}
			if a.From != from || a.To != to {
				return dst, malformed("envelope %d (group %d): snapshot ack %d->%d on the stream %d->%d", i, in.group, a.From, a.To, from, to)
			}
			in.ack = &a
		default:
			return dst, malformed("envelope %d (group %d) is empty", i, in.group)
		}
		dst = append(dst, in)
	}
	return dst, nil
}

// decodeSnapshotFrame decodes a chunk that arrived on a stream from node
// from to node to.
func decodeSnapshotFrame(f *raftpb.SnapshotFrame, from, to raft.NodeID) (GroupID, *snapxfer.Chunk, error) {
	if f.GetHello() != nil {
		return 0, nil, malformed("Hello in the middle of a stream")
	}
	g := GroupID(f.GetGroup())
	c, err := ChunkFromProto(f.GetChunk())
	if err != nil {
		return 0, nil, fmt.Errorf("group %d: %w", g, err)
	}
	if c.From != from || c.To != to {
		return 0, nil, malformed("group %d: snapshot chunk %d->%d on the stream %d->%d", g, c.From, c.To, from, to)
	}
	return g, c, nil
}

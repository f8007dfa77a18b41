package grpcnet

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// randomMessage returns a message of a random type with every field the
// type may carry set at random.
func randomMessage(rng *rand.Rand) raft.Message {
	m := raft.Message{
		Type:       raft.MessageType(1 + rng.IntN(int(raft.MsgReadIndexResp))),
		From:       raft.NodeID(1 + rng.Uint64N(1<<40)),
		To:         raft.NodeID(1 + rng.Uint64N(1<<40)),
		Term:       raft.Term(rng.Uint64()),
		LogTerm:    raft.Term(rng.Uint64()),
		Index:      raft.Index(rng.Uint64()),
		Commit:     raft.Index(rng.Uint64()),
		Reject:     rng.IntN(2) == 0,
		RejectHint: raft.Index(rng.Uint64()),
		Context:    rng.Uint64(),
		Transfer:   rng.IntN(2) == 0,
	}
	for range rng.IntN(4) {
		e := raft.Entry{Term: raft.Term(rng.Uint64()), Index: raft.Index(rng.Uint64()), Type: raft.EntryType(rng.IntN(3))}
		if n := rng.IntN(40); n > 0 {
			e.Data = make([]byte, n)
			for i := range e.Data {
				e.Data[i] = byte(rng.Uint32())
			}
		}
		m.Entries = append(m.Entries, e)
	}
	if m.Type == raft.MsgSnap {
		var voters []raft.NodeID
		for range rng.IntN(5) {
			voters = append(voters, raft.NodeID(1+rng.Uint64N(100)))
		}
		m.Snapshot = &raft.SnapshotMeta{Index: raft.Index(1 + rng.Uint64N(1<<50)), Term: raft.Term(rng.Uint64()), ConfState: raft.NewConfState(voters...)}
	}
	return m
}

// normalize makes empty slices nil, as decoding does.
func normalize(m raft.Message) raft.Message {
	if len(m.Entries) == 0 {
		m.Entries = nil
	}
	for i := range m.Entries {
		if len(m.Entries[i].Data) == 0 {
			m.Entries[i].Data = nil
		}
	}
	if m.Snapshot != nil && len(m.Snapshot.ConfState.Voters) == 0 {
		s := *m.Snapshot
		s.ConfState.Voters = nil
		m.Snapshot = &s
	}
	return m
}

// wire marshals and unmarshals pb, as the network does.
func wire[T proto.Message](t testing.TB, pb T, into T) T {
	t.Helper()
	b, err := proto.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	return into
}

func TestMessageRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randomMessage(rng)
		pb := MessageToProto(&m)
		got, err := MessageFromProto(wire(t, pb, &raftpb.Message{}))
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, raft.DescribeMessage(m), err)
		}
		if want := normalize(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: round trip changed the message\n got %#v\nwant %#v", i, got, want)
		}
	}
}

// Encoding copies: the core may reuse a message's memory once Send
// returns.
func TestMessageToProtoCopies(t *testing.T) {
	m := raft.Message{Type: raft.MsgApp, From: 1, To: 2, Entries: []raft.Entry{{Term: 1, Index: 1, Data: []byte("abc")}, {Term: 1, Index: 2, Data: []byte("de")}},
		Snapshot: nil}
	pb := MessageToProto(&m)
	m.Entries[0].Data[0] = 'X'
	m.Entries[1].Data[0] = 'Y'
	if string(pb.Entries[0].Data) != "abc" || string(pb.Entries[1].Data) != "de" {
		t.Fatalf("encoded entries share memory with the message: %q %q", pb.Entries[0].Data, pb.Entries[1].Data)
	}
	// Appending to one entry's data must not overwrite the next.
	pb.Entries[0].Data = append(pb.Entries[0].Data, 'Z')
	if string(pb.Entries[1].Data) != "de" {
		t.Fatalf("entry data overlap: %q", pb.Entries[1].Data)
	}

	c := &snapxfer.Chunk{From: 1, To: 2, ID: 3, Data: []byte("chunk")}
	cpb := ChunkToProto(c)
	c.Data[0] = 'X'
	if string(cpb.Data) != "chunk" {
		t.Fatalf("encoded chunk shares memory: %q", cpb.Data)
	}
}

func TestChunkAndAckRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		c := &snapxfer.Chunk{
			From: raft.NodeID(1 + rng.Uint64N(9)), To: raft.NodeID(1 + rng.Uint64N(9)),
			ID: snapxfer.TransferID(rng.Uint64()), Gen: rng.Uint32(), Offset: rng.Uint64N(1 << 40),
			Last: rng.IntN(2) == 0, StreamCRC: rng.Uint32(),
		}
		switch rng.IntN(3) {
		case 0:
			c.Offset = 0
			m := randomMessage(rng)
			for m.Type != raft.MsgSnap {
				m = randomMessage(rng)
			}
			m.From, m.To = c.From, c.To
			m = normalize(m)
			c.Msg = &m
		case 1:
			c.Abort = true
		}
		if !c.Abort {
			c.Data = make([]byte, rng.IntN(100)+1)
			for j := range c.Data {
				c.Data[j] = byte(rng.Uint32())
			}
		}
		c.Seal()
		got, err := ChunkFromProto(wire(t, ChunkToProto(c), &raftpb.SnapshotChunk{}))
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, c, err)
		}
		if !got.Verify() {
			t.Fatalf("case %d: decoded chunk fails its checksum: %s", i, got)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("case %d: round trip changed the chunk\n got %#v\nwant %#v", i, got, c)
		}

		a := snapxfer.Ack{From: c.To, To: c.From, ID: c.ID, Kind: snapxfer.AckKind(1 + rng.IntN(5)),
			Offset: rng.Uint64(), Gen: rng.Uint32(), Reason: snapxfer.Reason(rng.IntN(9))}
		ga, err := AckFromProto(wire(t, AckToProto(a), &raftpb.SnapshotAck{}))
		if err != nil || ga != a {
			t.Fatalf("case %d: ack round trip: %v, %v; want %v", i, ga, err, a)
		}
	}
}

// Every way a frame can be wrong is refused with ErrMalformed.
func TestDecodeRefusesMalformed(t *testing.T) {
	okMsg := func() *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MessageType_MSG_HEARTBEAT, From: 2, To: 1, Term: 3}
	}
	okSnap := func() *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MessageType_MSG_SNAP, From: 2, To: 1, Term: 3,
			Snapshot: &raftpb.SnapshotMeta{Index: 10, Term: 2, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	}
	env := func(m *raftpb.Message) *raftpb.RaftFrame {
		return &raftpb.RaftFrame{Envelopes: []*raftpb.Envelope{{Group: 7, Body: &raftpb.Envelope_Message{Message: m}}}}
	}
	with := func(f func(*raftpb.Message)) *raftpb.Message { m := okMsg(); f(m); return m }

	frames := map[string]*raftpb.RaftFrame{
		"unknown type":          env(with(func(m *raftpb.Message) { m.Type = 99 })),
		"negative type":         env(with(func(m *raftpb.Message) { m.Type = -1 })),
		"type 256 (uint8 wrap)": env(with(func(m *raftpb.Message) { m.Type = 256 + 8 })),
		"unspecified type":      env(with(func(m *raftpb.Message) { m.Type = 0 })),
		"zero from":             env(with(func(m *raftpb.Message) { m.From = 0 })),
		"zero to":               env(with(func(m *raftpb.Message) { m.To = 0 })),
		"from another node":     env(with(func(m *raftpb.Message) { m.From = 3 })),
		"to another node":       env(with(func(m *raftpb.Message) { m.To = 3 })),
		"unknown entry type": env(with(func(m *raftpb.Message) {
			m.Type = raftpb.MessageType_MSG_APP
			m.Entries = []*raftpb.Entry{{Term: 1, Index: 1, Type: 7}}
		})),
		"snapshot on heartbeat":  env(with(func(m *raftpb.Message) { m.Snapshot = okSnap().Snapshot })),
		"MsgSnap on Raft stream": env(okSnap()),
		"nil message":            env(nil),
		"empty envelope":         {Envelopes: []*raftpb.Envelope{{Group: 7}}},
		"nil envelope":           {Envelopes: []*raftpb.Envelope{nil}},
		"hello mid-stream":       {Hello: &raftpb.Hello{ClusterId: 1, From: 2, To: 1, Version: 1}},
		"bad ack kind":           {Envelopes: []*raftpb.Envelope{{Group: 7, Body: &raftpb.Envelope_Ack{Ack: &raftpb.SnapshotAck{From: 2, To: 1, Kind: 9}}}}},
		"bad ack reason": {Envelopes: []*raftpb.Envelope{{Group: 7, Body: &raftpb.Envelope_Ack{
			Ack: &raftpb.SnapshotAck{From: 2, To: 1, Kind: raftpb.AckKind_ACK_FAILED, Reason: 300}}}}},
		"ack from another node": {Envelopes: []*raftpb.Envelope{{Group: 7, Body: &raftpb.Envelope_Ack{
			Ack: &raftpb.SnapshotAck{From: 3, To: 1, Kind: raftpb.AckKind_ACK_DONE}}}}},
		"one bad among good": {Envelopes: []*raftpb.Envelope{
			{Group: 7, Body: &raftpb.Envelope_Message{Message: okMsg()}},
			{Group: 8, Body: &raftpb.Envelope_Message{Message: with(func(m *raftpb.Message) { m.Type = 40 })}},
		}},
	}
	for name, f := range frames {
		t.Run("raft/"+name, func(t *testing.T) {
			items, err := decodeRaftFrame(wire(t, f, &raftpb.RaftFrame{}), 2, 1, nil)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, %v; want ErrMalformed", items, err)
			}
		})
	}

	chunk := func(f func(*raftpb.SnapshotChunk)) *raftpb.SnapshotFrame {
		c := &raftpb.SnapshotChunk{From: 2, To: 1, Id: 5, Msg: okSnap(), Data: []byte("x")}
		f(c)
		return &raftpb.SnapshotFrame{Group: 7, Chunk: c}
	}
	snapFrames := map[string]*raftpb.SnapshotFrame{
		"no chunk":              {Group: 7},
		"zero from":             chunk(func(c *raftpb.SnapshotChunk) { c.From = 0 }),
		"from another node":     chunk(func(c *raftpb.SnapshotChunk) { c.From = 3; c.Msg.From = 3 }),
		"msg at offset 1":       chunk(func(c *raftpb.SnapshotChunk) { c.Offset = 1 }),
		"msg not MsgSnap":       chunk(func(c *raftpb.SnapshotChunk) { c.Msg = okMsg() }),
		"msg between others":    chunk(func(c *raftpb.SnapshotChunk) { c.Msg.From = 3 }),
		"abort with data":       chunk(func(c *raftpb.SnapshotChunk) { c.Abort = true; c.Msg = nil }),
		"empty snapshot":        chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Snapshot.Index = 0 }),
		"MsgSnap without meta":  chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Snapshot = nil }),
		"voters unsorted":       chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Snapshot.ConfState.Voters = []uint64{2, 1} }),
		"voters duplicated":     chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Snapshot.ConfState.Voters = []uint64{1, 1} }),
		"voter zero":            chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Snapshot.ConfState.Voters = []uint64{0, 1} }),
		"hello mid-stream":      {Hello: &raftpb.Hello{ClusterId: 1, From: 2, To: 1, Version: 1}},
		"snap with bad entries": chunk(func(c *raftpb.SnapshotChunk) { c.Msg.Entries = []*raftpb.Entry{{Type: -3}} }),
	}
	for name, f := range snapFrames {
		t.Run("snapshot/"+name, func(t *testing.T) {
			g, c, err := decodeSnapshotFrame(wire(t, f, &raftpb.SnapshotFrame{}), 2, 1)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %d, %v, %v; want ErrMalformed", g, c, err)
			}
		})
	}

	// Valid frames decode.
	if items, err := decodeRaftFrame(env(okMsg()), 2, 1, nil); err != nil || len(items) != 1 || items[0].group != 7 {
		t.Fatalf("a valid frame: %v, %v", items, err)
	}
	if g, c, err := decodeSnapshotFrame(chunk(func(*raftpb.SnapshotChunk) {}), 2, 1); err != nil || g != 7 || c.Msg == nil {
		t.Fatalf("a valid chunk: %d, %v, %v", g, c, err)
	}

	// Hellos.
	for name, h := range map[string]*raftpb.Hello{
		"nil":          nil,
		"zero cluster": {From: 2, To: 1, Version: 1},
		"zero from":    {ClusterId: 1, To: 1, Version: 1},
		"zero to":      {ClusterId: 1, From: 2, Version: 1},
	} {
		if _, err := helloFromProto(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("hello %s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := helloFromProto(&raftpb.Hello{ClusterId: 1, From: 2, To: 1, Version: 2}); !errors.Is(err, ErrVersion) {
		t.Errorf("hello of version 2: %v, want ErrVersion", err)
	}
}

package grpcnet

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// The fuzz targets feed arbitrary bytes to the decoders a frame from the
// network meets: they must never panic, and whatever they accept must
// survive encoding and decoding again unchanged (so that what a node
// forwards is what it understood). The seed corpus is valid frames of
// every kind, plus the files under testdata/fuzz.
//
//	go test ./transport/grpcnet -run '^$' -fuzz FuzzDecodeRaftFrame -fuzztime 1m

func seedRaftFrames(f *testing.F) {
	var frame raftpb.RaftFrame
	for typ := raft.MsgApp; typ <= raft.MsgReadIndexResp; typ++ {
		if typ == raft.MsgSnap {
			continue
		}
		m := raft.Message{Type: typ, From: 2, To: 1, Term: 5, LogTerm: 4, Index: 10, Commit: 9, RejectHint: 3, Context: 7, Reject: true, Transfer: true}
		if typ == raft.MsgApp {
			m.Entries = []raft.Entry{{Term: 4, Index: 11, Data: []byte("k=v")}, {Term: 5, Index: 12, Type: raft.EntryNoop},
				{Term: 5, Index: 13, Type: raft.EntryConfChange, Data: raft.NewConfState(1, 2, 3).Marshal()}}
		}
		frame.Envelopes = append(frame.Envelopes, &raftpb.Envelope{Group: uint64(typ), Body: &raftpb.Envelope_Message{Message: MessageToProto(&m)}})
	}
	frame.Envelopes = append(frame.Envelopes, &raftpb.Envelope{Group: 3, Body: &raftpb.Envelope_Ack{Ack: AckToProto(snapxfer.Ack{From: 2, To: 1, ID: 9, Kind: snapxfer.AckFailed, Reason: snapxfer.ReasonBusy})}})
	b, err := proto.Marshal(&frame)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, e := range frame.Envelopes {
		b, _ := proto.Marshal(&raftpb.RaftFrame{Envelopes: []*raftpb.Envelope{e}})
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x02, 0x08, 0x07})
}

func FuzzDecodeRaftFrame(f *testing.F) {
	seedRaftFrames(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var frame raftpb.RaftFrame
		if err := proto.Unmarshal(data, &frame); err != nil {
			return
		}
		items, err := decodeRaftFrame(&frame, 2, 1, nil)
		if err != nil {
			return
		}
		// Re-encode what was accepted; it must decode to the same.
		var again raftpb.RaftFrame
		for _, in := range items {
			env := &raftpb.Envelope{Group: uint64(in.group)}
			if in.ack != nil {
				env.Body = &raftpb.Envelope_Ack{Ack: AckToProto(*in.ack)}
			} else {
				env.Body = &raftpb.Envelope_Message{Message: MessageToProto(&in.msg)}
			}
			again.Envelopes = append(again.Envelopes, env)
		}
		b, err := proto.Marshal(&again)
		if err != nil {
			t.Fatal(err)
		}
		var back raftpb.RaftFrame
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		items2, err := decodeRaftFrame(&back, 2, 1, nil)
		if err != nil {
			t.Fatalf("re-encoded frame refused: %v", err)
		}
		for i := range items {
			items[i].msg = normalize(items[i].msg)
		}
		if !reflect.DeepEqual(items, items2) {
			t.Fatalf("round trip changed the frame\n got %#v\nwant %#v", items2, items)
		}
	})
}

func FuzzDecodeSnapshotFrame(f *testing.F) {
	m := raft.Message{Type: raft.MsgSnap, From: 2, To: 1, Term: 5, Snapshot: &raft.SnapshotMeta{Index: 40, Term: 5, ConfState: raft.NewConfState(1, 2, 3)}}
	for _, c := range []*snapxfer.Chunk{
		{From: 2, To: 1, ID: 7, Msg: &m, Data: []byte("first chunk")},
		{From: 2, To: 1, ID: 7, Gen: 1, Offset: 11, Data: []byte("last"), Last: true, StreamCRC: 0xdeadbeef},
		{From: 2, To: 1, ID: 7, Gen: 2, Offset: 15, Abort: true},
	} {
		c.Seal()
		b, err := proto.Marshal(&raftpb.SnapshotFrame{Group: 4, Chunk: ChunkToProto(c)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var frame raftpb.SnapshotFrame
		if err := proto.Unmarshal(data, &frame); err != nil {
			return
		}
		g, c, err := decodeSnapshotFrame(&frame, 2, 1)
		if err != nil {
			return
		}
		c.Verify() // must not panic either
		b, err := proto.Marshal(&raftpb.SnapshotFrame{Group: uint64(g), Chunk: ChunkToProto(c)})
		if err != nil {
			t.Fatal(err)
		}
		var back raftpb.SnapshotFrame
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		g2, c2, err := decodeSnapshotFrame(&back, 2, 1)
		if err != nil {
			t.Fatalf("re-encoded chunk refused: %v", err)
		}
		if c.Msg != nil {
			n := normalize(*c.Msg)
			c.Msg = &n
		}
		if len(c.Data) == 0 {
			c.Data = nil
		}
		if g2 != g || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the chunk\n got %d %#v\nwant %d %#v", g2, c2, g, c)
		}
	})
}

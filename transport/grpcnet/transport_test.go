package grpcnet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/raftpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/grpcnet"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// testMessage is a message from -> to for group g, numbered seq, with
// entries whose data says all that.
func testMessage(from, to raft.NodeID, g grpcnet.GroupID, seq int) raft.Message {
	m := raft.Message{Type: raft.MsgApp, From: from, To: to, Term: raft.Term(g), Index: raft.Index(seq), LogTerm: 1, Commit: 3, Context: uint64(seq)}
	for i := range seq % 3 {
		m.Entries = append(m.Entries, raft.Entry{Term: 1, Index: raft.Index(seq + i + 1), Data: fmt.Appendf(nil, "g%d %d->%d #%d.%d", g, from, to, seq, i)})
	}
	if seq%4 == 0 {
		m.Type = raft.MsgHeartbeat
		m.Entries = nil
	}
	return m
}

// Three transports exchange messages for three groups, every node to
// every other: each replica gets exactly its own group's messages, intact
// and in order per sender.
func TestMessagesForSeveralGroups(t *testing.T) {
	trs, _ := newTransports(t, 3, nil)
	groups := []grpcnet.GroupID{1, 7, 1 << 40}
	type key struct {
		node raft.NodeID
		g    grpcnet.GroupID
	}
	eps := map[key]*grpcnet.Group{}
	recs := map[key]*recorder{}
	for i, tr := range trs {
		for _, g := range groups {
			k := key{raft.NodeID(i + 1), g}
			eps[k], recs[k] = register(t, tr, g)
		}
	}
	const perPair = 50
	for seq := range perPair {
		for from := raft.NodeID(1); from <= 3; from++ {
			for _, g := range groups {
				var batch []raft.Message
				for to := raft.NodeID(1); to <= 3; to++ {
					if to != from {
						batch = append(batch, testMessage(from, to, g, seq))
					}
				}
				eps[key{from, g}].Send(batch)
				// The transport copied the batch: scribbling on it now
				// changes nothing on the wire.
				for i := range batch {
					for j := range batch[i].Entries {
						copy(batch[i].Entries[j].Data, "XXXX")
					}
				}
			}
		}
	}
	for k, rec := range recs {
		next := map[raft.NodeID]int{}
		for range 2 * perPair {
			m := recv(t, rec.msgs)
			want := testMessage(m.From, k.node, k.g, next[m.From])
			if len(want.Entries) == 0 {
				want.Entries = nil
			}
			if !reflect.DeepEqual(m, want) {
				t.Fatalf("node %d group %d: got %s %+v, want %+v", k.node, k.g, raft.DescribeMessage(m), m, want)
			}
			next[m.From]++
		}
	}
	for i, tr := range trs {
		st := tr.Stats()
		if st.MessagesReceived != uint64(2*perPair*len(groups)) || st.DroppedUnknownGroup != 0 || st.MalformedFrames != 0 {
			t.Errorf("node %d: stats %+v", i+1, st)
		}
		if st.FramesSent == 0 || st.FramesSent > st.MessagesSent {
			t.Errorf("node %d: %d frames for %d messages", i+1, st.FramesSent, st.MessagesSent)
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

type closer struct {
	*bytes.Reader
	closed atomic.Bool
}

func (c *closer) Close() error { c.closed.Store(true); return nil }

// A snapshot travels in chunks over the snapshot stream, for the right
// group, and the sender hears it succeeded.
func TestSnapshotInChunks(t *testing.T) {
	trs, _ := newTransports(t, 2, func(c *grpcnet.Config) {
		c.Snapshots.ChunkSize = 16 << 10
	})
	g1, _ := register(t, trs[0], 5)
	_, r2 := register(t, trs[1], 5)
	_, other := register(t, trs[1], 6)

	data := randomBytes(300<<10+123, 1)
	m := raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Term: 4,
		Snapshot: &raft.SnapshotMeta{Index: 99, Term: 3, ConfState: raft.NewConfState(1, 2, 3)}}
	src := &closer{Reader: bytes.NewReader(data)}
	done := make(chan error, 1)
	g1.SendSnapshot(m, src, func(err error) { done <- err })

	got := recv(t, r2.snaps)
	if !reflect.DeepEqual(got.msg, m) {
		t.Fatalf("got %s, want %s", raft.DescribeMessage(got.msg), raft.DescribeMessage(m))
	}
	if !bytes.Equal(got.data, data) {
		t.Fatalf("snapshot data differs: %d bytes, want %d", len(got.data), len(data))
	}
	if err := recv(t, done); err != nil {
		t.Fatalf("done: %v", err)
	}
	if !src.closed.Load() {
		t.Fatal("the snapshot's reader was not closed")
	}
	if st := trs[1].Stats(); st.ChunksReceived < uint64(len(data)/(16<<10)) {
		t.Fatalf("receiver stats %+v: want at least %d chunks", st, len(data)/(16<<10))
	}
	select {
	case s := <-other.snaps:
		t.Fatalf("group 6 got group 5's snapshot %s", raft.DescribeMessage(s.msg))
	default:
	}
}

// What arrives for a group the node does not host is dropped and counted,
// and a snapshot for one is refused at once.
func TestUnknownGroup(t *testing.T) {
	trs, _ := newTransports(t, 2, nil)
	g1, _ := register(t, trs[0], 1)
	g9, _ := register(t, trs[0], 9) // not on node 2
	_, r2 := register(t, trs[1], 1)

	g9.Send([]raft.Message{testMessage(1, 2, 9, 1)})
	g1.Send([]raft.Message{testMessage(1, 2, 1, 1)})
	// The stream is ordered: once group 1's message arrived, group 9's
	// was handled.
	if m := recv(t, r2.msgs); m.Term != 1 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
	if st := trs[1].Stats(); st.DroppedUnknownGroup != 1 {
		t.Fatalf("DroppedUnknownGroup = %d, want 1", st.DroppedUnknownGroup)
	}

	done := make(chan error, 1)
	m := raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Term: 1, Snapshot: &raft.SnapshotMeta{Index: 5, Term: 1, ConfState: raft.NewConfState(1, 2)}}
	g9.SendSnapshot(m, &closer{Reader: bytes.NewReader([]byte("data"))}, func(err error) { done <- err })
	var rej *snapxfer.RejectedError
	if err := recv(t, done); !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonRefused {
		t.Fatalf("snapshot for a group the receiver does not host: %v, want a refusal", err)
	}
}

// A node of another cluster is refused, with a log line that says so; the
// sender's replica hears the peer is unreachable.
func TestOtherClusterRefused(t *testing.T) {
	trs, logs := newTransports(t, 1, nil)
	_, r1 := register(t, trs[0], 1)

	logger, otherLogs := newLogger(t)
	cfg := fastConfig(2, logger)
	cfg.ClusterID = testCluster + 1
	cfg.Peers = map[raft.NodeID]string{1: trs[0].Addr().String()}
	stranger, err := grpcnet.New(cfg, listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	g, rs := register(t, stranger, 1)
	g.Send([]raft.Message{testMessage(2, 1, 1, 1)})
	if id := recv(t, rs.unreachable); id != 1 {
		t.Fatalf("unreachable %d, want 1", id)
	}
	if st := trs[0].Stats(); st.RejectedStreams == 0 || st.MessagesReceived != 0 {
		t.Fatalf("receiver stats %+v: want a rejected stream and no message", st)
	}
	if !strings.Contains(logs.String(), "another cluster") || !strings.Contains(logs.String(), fmt.Sprintf("peer_cluster=%d", testCluster+1)) {
		t.Fatalf("the receiver's log does not say why it refused:\n%s", logs)
	}
	if !strings.Contains(otherLogs.String(), "cluster") {
		t.Fatalf("the sender's log does not say why it was refused:\n%s", otherLogs)
	}
	select {
	case m := <-r1.msgs:
		t.Fatalf("a message from another cluster was delivered: %s", raft.DescribeMessage(m))
	default:
	}
}

// silentPeer accepts TCP connections and never answers: a hung process.
func silentPeer(t *testing.T) string {
	lis := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// Send never blocks: with the peer hung and its queue full, it drops and
// reports the peer unreachable. Close still returns at once.
func TestSendNeverBlocksWhenQueueFull(t *testing.T) {
	logger, _ := newLogger(t)
	cfg := fastConfig(1, logger)
	cfg.QueueSize = 4
	cfg.Peers = map[raft.NodeID]string{2: silentPeer(t)}
	tr, err := grpcnet.New(cfg, listen(t))
	if err != nil {
		t.Fatal(err)
	}
	g, r := register(t, tr, 1)
	var msgs []raft.Message
	for i := range 10 {
		msgs = append(msgs, testMessage(1, 2, 1, i))
	}
	g.Send(msgs) // returns: that is the test
	if id := recv(t, r.unreachable); id != 2 {
		t.Fatalf("unreachable %d, want 2", id)
	}
	if st := tr.Stats(); st.DroppedQueueFull != 6 {
		t.Fatalf("DroppedQueueFull = %d, want 6", st.DroppedQueueFull)
	}
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	recv(t, closed)
	g.Send(msgs) // after Close: nothing, no panic
}

// Messages to a node without an address are reported unreachable, and so
// are snapshots.
func TestUnknownPeer(t *testing.T) {
	trs, _ := newTransports(t, 1, nil)
	g, r := register(t, trs[0], 1)
	g.Send([]raft.Message{testMessage(1, 5, 1, 1)})
	if id := recv(t, r.unreachable); id != 5 {
		t.Fatalf("unreachable %d, want 5", id)
	}
	// A message that does not come from this node, and a MsgSnap handed to
	// Send, never leave it.
	g.Send([]raft.Message{testMessage(3, 5, 1, 1), {Type: raft.MsgSnap, From: 1, To: 5, Snapshot: &raft.SnapshotMeta{Index: 1}}})
	if st := trs[0].Stats(); st.DroppedInvalid != 2 {
		t.Fatalf("stats %+v: want 2 invalid messages dropped", st)
	}
	done := make(chan error, 1)
	m := raft.Message{Type: raft.MsgSnap, From: 1, To: 5, Term: 1, Snapshot: &raft.SnapshotMeta{Index: 5, Term: 1}}
	g.SendSnapshot(m, &closer{Reader: bytes.NewReader(nil)}, func(err error) { done <- err })
	if err := recv(t, done); !errors.Is(err, grpcnet.ErrUnreachable) {
		t.Fatalf("snapshot to a node without an address: %v", err)
	}
}

// The filter drops, duplicates and delays, outbound and inbound, per peer
// and direction.
func TestFilter(t *testing.T) {
	trs, _ := newTransports(t, 3, nil)
	g1, r1 := register(t, trs[0], 1)
	g2, r2 := register(t, trs[1], 1)
	_, r3 := register(t, trs[2], 1)
	faults := grpcnet.NewFaults(1)
	trs[0].SetFilter(faults.Filter)

	// A one-way cut: 1 -> 2 is lost, 2 -> 1 and 1 -> 3 flow.
	faults.Cut(2, grpcnet.Outbound)
	g1.Send([]raft.Message{testMessage(1, 2, 1, 1), testMessage(1, 3, 1, 1)})
	g2.Send([]raft.Message{testMessage(2, 1, 1, 2)})
	if m := recv(t, r3.msgs); m.Index != 1 {
		t.Fatalf("node 3 got %s", raft.DescribeMessage(m))
	}
	if m := recv(t, r1.msgs); m.From != 2 {
		t.Fatalf("node 1 got %s", raft.DescribeMessage(m))
	}
	faults.Heal()
	g1.Send([]raft.Message{testMessage(1, 2, 1, 3)})
	if m := recv(t, r2.msgs); m.Index != 3 {
		t.Fatalf("node 2 got %s: the cut message got through", raft.DescribeMessage(m))
	}

	// Inbound, node 1 drops message 5 from node 3 but not message 6,
	// which follows it on the same stream: once 6 is in, 5 was dropped.
	trs[0].SetFilter(func(p *grpcnet.Packet) grpcnet.Verdict {
		if p.Dir == grpcnet.Inbound && p.From == 3 && p.Msg != nil && p.Msg.Index == 5 {
			return grpcnet.Verdict{Drop: true}
		}
		return faults.Filter(p)
	})
	g3, _ := trs[2].Register(1, r3)
	g3.Send([]raft.Message{testMessage(3, 1, 1, 5)})
	g3.Send([]raft.Message{testMessage(3, 1, 1, 6)})
	if m := recv(t, r1.msgs); m.Index != 6 {
		t.Fatalf("node 1 got %s through an inbound cut", raft.DescribeMessage(m))
	}

	// Duplicates, outbound then inbound.
	faults.Set(2, grpcnet.Outbound, grpcnet.Rule{Duplicate: 1})
	g1.Send([]raft.Message{testMessage(1, 2, 1, 7)})
	for range 2 {
		if m := recv(t, r2.msgs); m.Index != 7 {
			t.Fatalf("node 2 got %s", raft.DescribeMessage(m))
		}
	}
	faults.Heal()
	faults.Set(2, grpcnet.Inbound, grpcnet.Rule{Duplicate: 1})
	g2.Send([]raft.Message{testMessage(2, 1, 1, 9)})
	for range 2 {
		if m := recv(t, r1.msgs); m.Index != 9 {
			t.Fatalf("node 1 got %s", raft.DescribeMessage(m))
		}
	}
	faults.Heal()

	// A delay holds a message back at least that long.
	const delay = 50 * time.Millisecond
	faults.Set(grpcnet.AnyPeer, grpcnet.Outbound, grpcnet.Rule{Delay: delay})
	start := time.Now()
	g1.Send([]raft.Message{testMessage(1, 2, 1, 11)})
	if m := recv(t, r2.msgs); m.Index != 11 {
		t.Fatalf("node 2 got %s", raft.DescribeMessage(m))
	}
	if el := time.Since(start); el < delay {
		t.Fatalf("delayed message arrived after %v, want at least %v", el, delay)
	}
	faults.Heal()

	st := trs[0].Stats()
	if st.Filtered != 2 || st.Duplicated != 2 || st.Delayed != 1 {
		t.Fatalf("node 1 stats %+v: want 2 filtered, 2 duplicated, 1 delayed", st)
	}
}

// rawStream opens a Raft stream to addr by hand, as a broken or hostile
// peer would.
func rawStream(t *testing.T, addr string) (raftpb.Peer_RaftClient, raftpb.Peer_SnapshotClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(func() { cancel(); conn.Close() })
	c := raftpb.NewPeerClient(conn)
	rs, err := c.Raft(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rs, ss
}

// wantCode waits for the stream's end and checks its status.
func wantCode(t *testing.T, recv func() (*raftpb.Hello, error), want codes.Code) {
	t.Helper()
	for {
		_, err := recv()
		if err == nil {
			continue // the server's Hello
		}
		if got := status.Code(err); got != want {
			t.Fatalf("stream ended with %v, want %v", err, want)
		}
		return
	}
}

// A malformed frame ends the stream with INVALID_ARGUMENT and a refused
// Hello with FAILED_PRECONDITION; the node keeps serving everyone else.
func TestMalformedFramesRejected(t *testing.T) {
	trs, logs := newTransports(t, 2, nil)
	_, r1 := register(t, trs[0], 1)
	g2, _ := register(t, trs[1], 1)
	addr := trs[0].Addr().String()
	good := &raftpb.Hello{ClusterId: testCluster, From: 2, To: 1, Version: grpcnet.ProtocolVersion}
	heartbeat := func(typ raftpb.MessageType) *raftpb.RaftFrame {
		return &raftpb.RaftFrame{Envelopes: []*raftpb.Envelope{{Group: 1, Body: &raftpb.Envelope_Message{
			Message: &raftpb.Message{Type: typ, From: 2, To: 1, Term: 1}}}}}
	}

	cases := []struct {
		name   string
		frames []*raftpb.RaftFrame
		want   codes.Code
	}{
		{"no Hello", []*raftpb.RaftFrame{heartbeat(raftpb.MessageType_MSG_HEARTBEAT)}, codes.InvalidArgument},
		{"Hello with a batch", []*raftpb.RaftFrame{{Hello: good, Envelopes: heartbeat(raftpb.MessageType_MSG_HEARTBEAT).Envelopes}}, codes.InvalidArgument},
		{"another cluster", []*raftpb.RaftFrame{{Hello: &raftpb.Hello{ClusterId: testCluster + 1, From: 2, To: 1, Version: 1}}}, codes.FailedPrecondition},
		{"another node", []*raftpb.RaftFrame{{Hello: &raftpb.Hello{ClusterId: testCluster, From: 2, To: 3, Version: 1}}}, codes.FailedPrecondition},
		{"this node's ID", []*raftpb.RaftFrame{{Hello: &raftpb.Hello{ClusterId: testCluster, From: 1, To: 1, Version: 1}}}, codes.FailedPrecondition},
		{"version 2", []*raftpb.RaftFrame{{Hello: &raftpb.Hello{ClusterId: testCluster, From: 2, To: 1, Version: 2}}}, codes.FailedPrecondition},
		{"zero cluster", []*raftpb.RaftFrame{{Hello: &raftpb.Hello{From: 2, To: 1, Version: 1}}}, codes.InvalidArgument},
		{"unknown type", []*raftpb.RaftFrame{{Hello: good}, heartbeat(77)}, codes.InvalidArgument},
		{"MsgSnap", []*raftpb.RaftFrame{{Hello: good}, heartbeat(raftpb.MessageType_MSG_SNAP)}, codes.InvalidArgument},
		{"second Hello", []*raftpb.RaftFrame{{Hello: good}, {Hello: good}}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, _ := rawStream(t, addr)
			for _, f := range tc.frames {
				if err := rs.Send(f); err != nil {
					break // the server ended the stream already
				}
			}
			wantCode(t, rs.Recv, tc.want)
		})
	}

	snapCases := []struct {
		name   string
		frames []*raftpb.SnapshotFrame
		want   codes.Code
	}{
		{"no Hello", []*raftpb.SnapshotFrame{{Group: 1, Chunk: &raftpb.SnapshotChunk{From: 2, To: 1}}}, codes.InvalidArgument},
		{"chunk from another node", []*raftpb.SnapshotFrame{{Hello: good}, {Group: 1, Chunk: &raftpb.SnapshotChunk{From: 3, To: 1}}}, codes.InvalidArgument},
		{"no chunk", []*raftpb.SnapshotFrame{{Hello: good}, {Group: 1}}, codes.InvalidArgument},
		{"bad MsgSnap", []*raftpb.SnapshotFrame{{Hello: good}, {Group: 1, Chunk: &raftpb.SnapshotChunk{From: 2, To: 1,
			Msg: &raftpb.Message{Type: raftpb.MessageType_MSG_SNAP, From: 2, To: 1}}}}, codes.InvalidArgument},
	}
	for _, tc := range snapCases {
		t.Run("snapshot/"+tc.name, func(t *testing.T) {
			_, ss := rawStream(t, addr)
			for _, f := range tc.frames {
				if err := ss.Send(f); err != nil {
					break
				}
			}
			wantCode(t, ss.Recv, tc.want)
		})
	}

	if st := trs[0].Stats(); st.MalformedFrames < 8 || st.RejectedStreams < 4 || st.MessagesReceived != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "malformed") {
		t.Fatalf("no log line about malformed frames:\n%s", logs)
	}
	// The real peer is unaffected.
	g2.Send([]raft.Message{testMessage(2, 1, 1, 1)})
	if m := recv(t, r1.msgs); m.From != 2 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
}

func TestConfigValidate(t *testing.T) {
	var c grpcnet.Config
	err := c.Validate()
	if !errors.Is(err, grpcnet.ErrInvalidConfig) || !strings.Contains(err.Error(), "NodeID") || !strings.Contains(err.Error(), "ClusterID") {
		t.Fatalf("empty config: %v", err)
	}
	c = grpcnet.Config{NodeID: 1, ClusterID: 1, MinBackoff: time.Second, MaxBackoff: time.Millisecond, QueueSize: -1}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "MaxBackoff") || !strings.Contains(err.Error(), "QueueSize") {
		t.Fatalf("bad config: %v", err)
	}
	c = grpcnet.Config{NodeID: 1, ClusterID: 1}
	if err := c.Validate(); err != nil || c.QueueSize != grpcnet.DefaultQueueSize || c.MaxFrameBytes < c.Snapshots.MaxChunkSize {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	if _, err := grpcnet.New(grpcnet.Config{NodeID: 1, ClusterID: 1}, nil); !errors.Is(err, grpcnet.ErrInvalidConfig) {
		t.Fatalf("New without a listener: %v", err)
	}
}

func TestFaultsRules(t *testing.T) {
	f := grpcnet.NewFaults(7)
	out := func(to raft.NodeID) *grpcnet.Packet {
		return &grpcnet.Packet{Dir: grpcnet.Outbound, From: 1, To: to, Msg: &raft.Message{}}
	}
	in := func(from raft.NodeID) *grpcnet.Packet {
		return &grpcnet.Packet{Dir: grpcnet.Inbound, From: from, To: 1, Msg: &raft.Message{}}
	}
	if v := f.Filter(out(2)); v != (grpcnet.Verdict{}) {
		t.Fatalf("no rules: %+v", v)
	}
	f.Cut(2, grpcnet.Inbound)
	if !f.Filter(in(2)).Drop || f.Filter(out(2)).Drop || f.Filter(in(3)).Drop {
		t.Fatal("an inbound cut from 2 must drop exactly what comes from 2")
	}
	f.Set(grpcnet.AnyPeer, grpcnet.Inbound, grpcnet.Rule{Delay: time.Second})
	if v := f.Filter(in(3)); v.Delay != time.Second || v.Drop {
		t.Fatalf("AnyPeer rule: %+v", v)
	}
	if !f.Filter(in(2)).Drop {
		t.Fatal("a peer's own rule takes precedence over AnyPeer's")
	}
	f.Clear(2)
	if v := f.Filter(in(2)); v.Delay != time.Second {
		t.Fatalf("after Clear(2), AnyPeer applies: %+v", v)
	}
	f.Heal()
	f.Set(4, grpcnet.Outbound, grpcnet.Rule{Loss: 0.5, Duplicate: 0.5, Jitter: time.Millisecond})
	var drops, dups int
	for range 1000 {
		v := f.Filter(out(4))
		if v.Drop {
			drops++
		}
		if v.Duplicates > 0 {
			dups++
		}
		if v.Delay >= time.Millisecond {
			t.Fatalf("delay %v beyond jitter", v.Delay)
		}
	}
	if drops < 400 || drops > 600 || dups < 150 || dups > 350 {
		t.Fatalf("%d drops, %d duplicates of 1000 at 50%%", drops, dups)
	}
}

// stuck is a Handler whose Step blocks until its context ends: a replica
// whose inbound queue stays full.
type stuck struct {
	recorder
	entered chan struct{}
}

func (s *stuck) Step(ctx context.Context, _ raft.Message) error {
	s.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// A replica that does not take its messages holds up its peer's stream
// for at most StepTimeout; its group is then skipped for a while, and the
// other groups' messages flow.
func TestStuckReplicaDoesNotWedgeOtherGroups(t *testing.T) {
	trs, _ := newTransports(t, 2, func(c *grpcnet.Config) { c.StepTimeout = 50 * time.Millisecond })
	ga, _ := register(t, trs[0], 1)
	gb, _ := register(t, trs[0], 2)
	s := &stuck{recorder: *newRecorder(), entered: make(chan struct{}, 10)}
	if _, err := trs[1].Register(1, s); err != nil {
		t.Fatal(err)
	}
	_, rb := register(t, trs[1], 2)

	ga.Send([]raft.Message{testMessage(1, 2, 1, 1)})
	recv(t, s.entered)
	ga.Send([]raft.Message{testMessage(1, 2, 1, 2), testMessage(1, 2, 1, 3)})
	gb.Send([]raft.Message{testMessage(1, 2, 2, 4)})
	if m := recv(t, rb.msgs); m.Index != 4 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
	// Group 1's later messages were dropped without waiting.
	if st := trs[1].Stats(); st.DroppedSlow != 3 || len(s.entered) != 0 {
		t.Fatalf("stats %+v, stuck replica entered %d more times: want 3 slow drops and no second wait", st, len(s.entered))
	}
}

// Unregister removes a group: what arrives for it is dropped, its
// endpoint sends nothing, and Register makes a new one.
func TestUnregister(t *testing.T) {
	trs, _ := newTransports(t, 2, nil)
	g1, _ := register(t, trs[0], 1)
	g3, _ := register(t, trs[0], 3)
	_, r2 := register(t, trs[1], 1)
	_, r23 := register(t, trs[1], 3)

	trs[1].Unregister(1)
	g1.Send([]raft.Message{testMessage(1, 2, 1, 1)})
	g3.Send([]raft.Message{testMessage(1, 2, 3, 2)})
	if m := recv(t, r23.msgs); m.Index != 2 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
	if st := trs[1].Stats(); st.DroppedUnknownGroup != 1 {
		t.Fatalf("stats %+v: want the unregistered group's message dropped", st)
	}
	select {
	case m := <-r2.msgs:
		t.Fatalf("an unregistered group got %s", raft.DescribeMessage(m))
	default:
	}

	trs[0].Unregister(3)
	g3.Send([]raft.Message{testMessage(1, 2, 3, 3)}) // a stale endpoint: nothing
	_, again := register(t, trs[1], 1)
	g1.Send([]raft.Message{testMessage(1, 2, 1, 4)})
	if m := recv(t, again.msgs); m.Index != 4 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
	// Had the stale endpoint sent message 3, it would have arrived before
	// message 4, on the same stream.
	select {
	case m := <-r23.msgs:
		t.Fatalf("the unregistered group's endpoint sent %s", raft.DescribeMessage(m))
	default:
	}
	done := make(chan error, 1)
	g3.SendSnapshot(raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Snapshot: &raft.SnapshotMeta{Index: 1}},
		&closer{Reader: bytes.NewReader(nil)}, func(err error) { done <- err })
	if err := recv(t, done); !errors.Is(err, snapxfer.ErrClosed) {
		t.Fatalf("snapshot from an unregistered group: %v", err)
	}
}

// The address book changes at run time.
func TestSetPeerAndRemovePeer(t *testing.T) {
	trs, _ := newTransports(t, 2, func(c *grpcnet.Config) { c.Peers = nil })
	g1, r1 := register(t, trs[0], 1)
	_, r2 := register(t, trs[1], 1)

	g1.Send([]raft.Message{testMessage(1, 2, 1, 1)})
	if id := recv(t, r1.unreachable); id != 2 {
		t.Fatalf("unreachable %d, want 2", id)
	}
	if err := trs[0].SetPeer(2, trs[1].Addr().String()); err != nil {
		t.Fatal(err)
	}
	g1.Send([]raft.Message{testMessage(1, 2, 1, 2)})
	if m := recv(t, r2.msgs); m.Index != 2 {
		t.Fatalf("got %s", raft.DescribeMessage(m))
	}
	// The same address again changes nothing; a bad one is refused.
	if err := trs[0].SetPeer(2, trs[1].Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := trs[0].SetPeer(1, "127.0.0.1:1"); !errors.Is(err, grpcnet.ErrInvalidConfig) {
		t.Fatalf("SetPeer for this node: %v", err)
	}
	trs[0].RemovePeer(2)
	g1.Send([]raft.Message{testMessage(1, 2, 1, 3)})
	if id := recv(t, r1.unreachable); id != 2 {
		t.Fatalf("unreachable %d, want 2", id)
	}
	trs[0].Close()
	if err := trs[0].SetPeer(2, trs[1].Addr().String()); !errors.Is(err, grpcnet.ErrClosed) {
		t.Fatalf("SetPeer after Close: %v", err)
	}
	if _, err := trs[0].Register(4, nil); !errors.Is(err, grpcnet.ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
}

// A snapshot gets through a network that loses, duplicates and delays its
// chunks and acks: snapxfer resends over the gRPC streams.
func TestSnapshotThroughLossyNetwork(t *testing.T) {
	trs, _ := newTransports(t, 2, func(c *grpcnet.Config) {
		c.Snapshots.ChunkSize = 8 << 10
		c.Snapshots.RetransmitTimeout = 50 * time.Millisecond
		c.Snapshots.StallTimeout = 10 * time.Second
	})
	g1, _ := register(t, trs[0], 1)
	_, r2 := register(t, trs[1], 1)
	var mu sync.Mutex
	var chunks, acks int
	trs[0].SetFilter(func(p *grpcnet.Packet) grpcnet.Verdict {
		mu.Lock()
		defer mu.Unlock()
		if p.Chunk != nil && p.Dir == grpcnet.Outbound {
			chunks++
			switch chunks % 7 {
			case 3:
				return grpcnet.Verdict{Drop: true}
			case 5:
				return grpcnet.Verdict{Duplicates: 1}
			case 6:
				return grpcnet.Verdict{Delay: 5 * time.Millisecond}
			}
		}
		if p.Ack != nil && p.Dir == grpcnet.Inbound {
			acks++
			if acks%4 == 0 {
				return grpcnet.Verdict{Drop: true}
			}
		}
		return grpcnet.Verdict{}
	})
	data := randomBytes(200<<10, 2)
	m := raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &raft.SnapshotMeta{Index: 50, Term: 2, ConfState: raft.NewConfState(1, 2)}}
	done := make(chan error, 1)
	g1.SendSnapshot(m, &closer{Reader: bytes.NewReader(data)}, func(err error) { done <- err })
	got := recv(t, r2.snaps)
	if !bytes.Equal(got.data, data) {
		t.Fatalf("snapshot data differs: %d bytes, want %d", len(got.data), len(data))
	}
	if err := recv(t, done); err != nil {
		t.Fatalf("done: %v", err)
	}
	if xs := g1.SnapshotStats(); xs.ChunksResent == 0 {
		t.Fatalf("sender stats %+v: nothing was resent", xs)
	}
}

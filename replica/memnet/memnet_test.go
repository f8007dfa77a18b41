package memnet_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica/memnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that records what it is given.
type recorder struct {
	msgs        chan raft.Message
	snaps       chan []byte
	unreachable chan raft.NodeID
}

func newRecorder() *recorder {
	return &recorder{
		msgs:        make(chan raft.Message, 16),
		snaps:       make(chan []byte, 16),
		unreachable: make(chan raft.NodeID, 16),
	}
}

func (r *recorder) Step(_ context.Context, m raft.Message) error {
	r.msgs <- m
	return nil
}

func (r *recorder) StepSnapshot(_ context.Context, m raft.Message, data io.Reader) error {
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	r.snaps <- b
	r.msgs <- m
	return nil
}

func (r *recorder) ReportUnreachable(id raft.NodeID) { r.unreachable <- id }

func recv[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
		panic("unreachable")
	}
}

func setup(t *testing.T, ids ...raft.NodeID) (*memnet.Network, map[raft.NodeID]*recorder) {
	n := memnet.New()
	t.Cleanup(n.Close)
	rs := map[raft.NodeID]*recorder{}
	for _, id := range ids {
		rs[id] = newRecorder()
		n.Endpoint(id).Attach(rs[id])
	}
	return n, rs
}

func TestSendCopiesMessages(t *testing.T) {
	n, rs := setup(t, 1, 2)
	msgs := []raft.Message{{Type: raft.MsgApp, From: 1, To: 2, Entries: []raft.Entry{{Index: 1, Data: []byte("abc")}}}}
	n.Endpoint(1).Send(msgs)
	msgs[0].Entries[0].Data[0] = 'X' // the sender reuses its memory
	got := recv(t, rs[2].msgs)
	if string(got.Entries[0].Data) != "abc" {
		t.Fatalf("receiver saw the sender's later change: %q", got.Entries[0].Data)
	}
}

func TestCutIsOneWay(t *testing.T) {
	n, rs := setup(t, 1, 2)
	n.Cut(1, 2)
	n.Endpoint(1).Send([]raft.Message{{Type: raft.MsgHeartbeat, From: 1, To: 2, Commit: 1}})
	if id := recv(t, rs[1].unreachable); id != 2 {
		t.Fatalf("unreachable %d, want 2", id)
	}
	n.Endpoint(2).Send([]raft.Message{{Type: raft.MsgHeartbeatResp, From: 2, To: 1}})
	if m := recv(t, rs[1].msgs); m.Type != raft.MsgHeartbeatResp {
		t.Fatalf("got %v", m.Type)
	}
	n.Connect(2)
	n.Endpoint(1).Send([]raft.Message{{Type: raft.MsgHeartbeat, From: 1, To: 2, Commit: 2}})
	// The message sent while cut was dropped: the first to arrive is the
	// one sent after the link was restored.
	if m := recv(t, rs[2].msgs); m.Commit != 2 {
		t.Fatalf("got commit %d, want 2", m.Commit)
	}
}

func TestPartitionDisconnectHeal(t *testing.T) {
	n, rs := setup(t, 1, 2, 3)
	n.Partition([]raft.NodeID{1}, []raft.NodeID{2, 3})
	n.Endpoint(1).Send([]raft.Message{{Type: raft.MsgApp, From: 1, To: 2}, {Type: raft.MsgApp, From: 1, To: 3}})
	for range 2 {
		recv(t, rs[1].unreachable)
	}
	n.Endpoint(2).Send([]raft.Message{{Type: raft.MsgApp, From: 2, To: 3, Index: 7}})
	if m := recv(t, rs[3].msgs); m.Index != 7 {
		t.Fatalf("within a side: got %+v", m)
	}
	n.Heal()
	n.Disconnect(3)
	n.Endpoint(1).Send([]raft.Message{{Type: raft.MsgApp, From: 1, To: 3}, {Type: raft.MsgApp, From: 1, To: 2, Index: 8}})
	if id := recv(t, rs[1].unreachable); id != 3 {
		t.Fatalf("unreachable %d, want 3", id)
	}
	if m := recv(t, rs[2].msgs); m.Index != 8 {
		t.Fatalf("after heal: got %+v", m)
	}
}

func TestSnapshotTravelsWithItsData(t *testing.T) {
	n, rs := setup(t, 1, 2)
	meta := &raft.SnapshotMeta{Index: 10, Term: 2, ConfState: raft.NewConfState(1, 2)}
	done := make(chan error, 1)
	n.Endpoint(1).SendSnapshot(raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Snapshot: meta},
		io.NopCloser(bytes.NewReader([]byte("state"))), func(err error) { done <- err })
	if b := recv(t, rs[2].snaps); string(b) != "state" {
		t.Fatalf("data %q", b)
	}
	if m := recv(t, rs[2].msgs); m.Snapshot == nil || m.Snapshot.Index != 10 || m.Snapshot == meta {
		t.Fatalf("message %+v", m)
	}
	if err := recv(t, done); err != nil {
		t.Fatal(err)
	}

	n.Disconnect(2)
	n.Endpoint(1).SendSnapshot(raft.Message{Type: raft.MsgSnap, From: 1, To: 2, Snapshot: meta},
		io.NopCloser(bytes.NewReader(nil)), func(err error) { done <- err })
	if err := recv(t, done); !errors.Is(err, memnet.ErrUnreachable) {
		t.Fatalf("to a disconnected node: %v", err)
	}
}

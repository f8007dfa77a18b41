package memnet_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica/memnet"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// Small chunks, so that a modest snapshot is many of them.
const smallChunk = 4 << 10

func chunkedNet(t *testing.T, stall time.Duration, ids ...raft.NodeID) (*memnet.Network, map[raft.NodeID]*recorder) {
	t.Helper()
	n, err := memnet.NewWithConfig(memnet.Config{Snapshots: snapxfer.Options{
		ChunkSize:         smallChunk,
		RetransmitTimeout: 50 * time.Millisecond,
		StallTimeout:      stall,
		Logger:            slog.New(slog.DiscardHandler),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	rs := map[raft.NodeID]*recorder{}
	for _, id := range ids {
		rs[id] = newRecorder()
		n.Endpoint(id).Attach(rs[id])
	}
	return n, rs
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func sendSnap(n *memnet.Network, from, to raft.NodeID, index raft.Index, data []byte) <-chan error {
	done := make(chan error, 1)
	m := raft.Message{Type: raft.MsgSnap, From: from, To: to, Term: 2,
		Snapshot: &raft.SnapshotMeta{Index: index, Term: 2, ConfState: raft.NewConfState(1, 2)}}
	n.Endpoint(from).SendSnapshot(m, io.NopCloser(bytes.NewReader(data)), func(err error) { done <- err })
	return done
}

// The network's filter sees snapshot chunks like any other packet: a test
// can lose one, and the transfer resumes from where the receiver is.
func TestSnapshotChunkLossResumes(t *testing.T) {
	n, rs := chunkedNet(t, 5*time.Second, 1, 2)
	var dropped atomic.Int32
	n.SetFilter(func(p memnet.Packet) bool {
		if p.Chunk != nil && p.Chunk.Offset == 7*smallChunk && dropped.Add(1) == 1 {
			return false
		}
		return true
	})
	data := randomBytes(40*smallChunk+11, 1)
	if err := recv(t, sendSnap(n, 1, 2, 10, data)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, rs[2].snaps); !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(data))
	}
	if m := recv(t, rs[2].msgs); m.Type != raft.MsgSnap || m.Snapshot.Index != 10 {
		t.Fatalf("message %+v", m)
	}
	st := n.Endpoint(1).SnapshotStats()
	if dropped.Load() < 1 || st.Rewinds < 1 || st.ChunksResent > 2*snapxfer.DefaultWindow {
		t.Fatalf("dropped %d; sender stats %+v: want a resume, not a restart", dropped.Load(), st)
	}
}

// A chunk damaged on the wire fails its checksum and is dropped; the
// damaged bytes never reach the handler.
func TestSnapshotCorruptChunkRejected(t *testing.T) {
	n, rs := chunkedNet(t, 5*time.Second, 1, 2)
	var flipped atomic.Bool
	n.SetFilter(func(p memnet.Packet) bool {
		if c := p.Chunk; c != nil && c.Offset == 3*smallChunk && flipped.CompareAndSwap(false, true) {
			c.Data[17] ^= 0x40
		}
		return true
	})
	data := randomBytes(10*smallChunk, 2)
	if err := recv(t, sendSnap(n, 1, 2, 10, data)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, rs[2].snaps); !bytes.Equal(got, data) {
		t.Fatal("received data differs from what was sent")
	}
	if st := n.Endpoint(2).SnapshotStats(); st.ChunksCorrupt != 1 {
		t.Fatalf("receiver stats %+v: want one corrupt chunk", st)
	}
}

// staller is a Handler that reads a snapshot until it fails, and reports
// the error.
type staller struct{ errs chan error }

func (s staller) Step(_ context.Context, _ raft.Message) error { return nil }
func (s staller) StepSnapshot(_ context.Context, _ raft.Message, data io.Reader) error {
	_, err := io.Copy(io.Discard, data)
	if err == nil {
		err = errors.New("stream ended")
	}
	s.errs <- err
	return err
}
func (s staller) ReportUnreachable(raft.NodeID) {}

// A partition in the middle of a transfer stalls it: after the stall
// timeout the sender reports ErrStalled (so the leader will retry) and
// the receiver abandons its side. Once healed, a new transfer goes
// through.
func TestSnapshotPartitionStallsThenRetry(t *testing.T) {
	const stall = time.Second
	n, _ := chunkedNet(t, stall, 1)
	st := staller{errs: make(chan error, 1)}
	n.Endpoint(2).Attach(st)
	var chunks atomic.Int32
	n.SetFilter(func(p memnet.Packet) bool {
		if p.Chunk != nil && chunks.Add(1) == 5 {
			n.Partition([]raft.NodeID{1}, []raft.NodeID{2}) // mid-transfer
		}
		return true
	})
	data := randomBytes(50*smallChunk, 3)
	start := time.Now()
	if err := recv(t, sendSnap(n, 1, 2, 10, data)); !errors.Is(err, snapxfer.ErrStalled) {
		t.Fatalf("sender: %v, want ErrStalled", err)
	}
	if d := time.Since(start); d < stall {
		t.Fatalf("sender gave up after %v, before the stall timeout", d)
	}
	if err := recv(t, st.errs); !errors.Is(err, snapxfer.ErrStalled) {
		t.Fatalf("receiver: %v, want ErrStalled", err)
	}

	n.SetFilter(nil)
	n.Heal()
	rec := newRecorder()
	n.Endpoint(2).Attach(rec)
	if err := recv(t, sendSnap(n, 1, 2, 11, data)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := recv(t, rec.snaps); !bytes.Equal(got, data) {
		t.Fatal("retry: data differs")
	}
}

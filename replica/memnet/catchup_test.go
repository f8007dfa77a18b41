package memnet_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/replica/memnet"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// bigState is a state machine with a large snapshot: a 16-byte header
// (commands applied, a hash of them) followed by size bytes generated
// deterministically from the header. Snapshot streams them out and
// Restore checks every one without either ever holding more than a small
// buffer, so the state can be of any size.
type bigState struct {
	size int64

	mu         sync.Mutex
	count, sum uint64
	restores   int
}

func (s *bigState) Apply(ents []raft.Entry) ([]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(ents))
	for i, e := range ents {
		h := fnv.New64a()
		h.Write(e.Data)
		s.count++
		s.sum = (s.sum ^ h.Sum64()) * 0x100000001b3
		out[i] = s.count
	}
	return out, nil
}

func (s *bigState) state() (count, sum uint64, restores int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.sum, s.restores
}

// filler generates the snapshot's bulk from its header.
func filler(count, sum uint64) *rand.ChaCha8 {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], count)
	binary.LittleEndian.PutUint64(seed[8:], sum)
	return rand.NewChaCha8(seed)
}

const fillBlock = 64 << 10

func (s *bigState) Snapshot(w io.Writer) error {
	count, sum, _ := s.state()
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[:], count)
	binary.LittleEndian.PutUint64(hdr[8:], sum)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	g, buf := filler(count, sum), make([]byte, fillBlock)
	for left := s.size; left > 0; {
		b := buf[:min(left, fillBlock)]
		g.Read(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		left -= int64(len(b))
	}
	return nil
}

func (s *bigState) Restore(r io.Reader) error {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	count, sum := binary.LittleEndian.Uint64(hdr[:]), binary.LittleEndian.Uint64(hdr[8:])
	g, want, got := filler(count, sum), make([]byte, fillBlock), make([]byte, fillBlock)
	for off := int64(0); off < s.size; {
		n := min(s.size-off, fillBlock)
		if _, err := io.ReadFull(r, got[:n]); err != nil {
			return fmt.Errorf("snapshot ends at %d of %d bytes: %w", off, s.size, err)
		}
		g.Read(want[:n])
		if !bytes.Equal(got[:n], want[:n]) {
			return fmt.Errorf("snapshot differs from its state within bytes [%d, %d)", off, off+n)
		}
		off += n
	}
	if n, err := r.Read(got[:1]); n != 0 || err != io.EOF {
		return fmt.Errorf("snapshot is longer than %d bytes (%d, %v)", s.size, n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count, s.sum = count, sum
	s.restores++
	return nil
}

// diskCluster is a group of three replicas over memnet, each with its
// snapshots in a snap.Store on the real disk (a temporary directory).
type diskCluster struct {
	t      *testing.T
	net    *memnet.Network
	ids    []raft.NodeID
	rs     map[raft.NodeID]*replica.Replica
	sms    map[raft.NodeID]*bigState
	stores map[raft.NodeID]*snap.Store
}

func newDiskCluster(t *testing.T, snapSize int64, xfer snapxfer.Options) *diskCluster {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	xfer.Logger = quiet
	net, err := memnet.NewWithConfig(memnet.Config{Snapshots: xfer})
	if err != nil {
		t.Fatal(err)
	}
	// Elections take 0.5-1s: long enough that a leader writing a large
	// snapshot on its run goroutine is rarely deposed (and if it is, the
	// test copes).
	ticker := replica.NewTicker(5 * time.Millisecond)
	c := &diskCluster{t: t, net: net, ids: []raft.NodeID{1, 2, 3},
		rs: map[raft.NodeID]*replica.Replica{}, sms: map[raft.NodeID]*bigState{}, stores: map[raft.NodeID]*snap.Store{}}
	t.Cleanup(func() {
		for _, r := range c.rs {
			if err := r.Stop(); err != nil {
				t.Errorf("replica %d: %v", r.ID(), err)
			}
		}
		net.Close()
		ticker.Stop()
	})
	dir := t.TempDir()
	for _, id := range c.ids {
		ms := raft.NewMemoryStorage()
		if err := raft.Bootstrap(ms, c.ids...); err != nil {
			t.Fatal(err)
		}
		store, err := snap.Open(filepath.Join(dir, fmt.Sprint(id)), snap.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		sm := &bigState{size: snapSize}
		r, err := replica.New(replica.Config{
			ID:               id,
			Raft:             raft.Config{ElectionTick: 100, HeartbeatTick: 5},
			Log:              replica.NewMemoryLogStore(ms),
			Snapshots:        replica.NewFileSnapshotStore(store),
			StateMachine:     sm,
			Transport:        net.Endpoint(id),
			Ticks:            ticker,
			SnapshotEvery:    20,
			CompactionMargin: 2,
			Logger:           quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		net.Endpoint(id).Attach(r)
		c.rs[id], c.sms[id], c.stores[id] = r, sm, store
	}
	return c
}

// leader waits until some replica leads and every replica in among
// follows it, without polling: it waits on the replicas' change channels.
func (c *diskCluster) leader(ctx context.Context, among ...raft.NodeID) raft.NodeID {
	c.t.Helper()
	for {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		var lead raft.NodeID
		agreed := true
		var term raft.Term
		for i, id := range among {
			st, changed := c.rs[id].Leader()
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(changed)})
			if i == 0 {
				lead, term = st.Lead, st.Term
			}
			agreed = agreed && st.Lead != raft.None && st.Lead == lead && st.Term == term
			if id == lead && st.Role != raft.Leader {
				agreed = false
			}
		}
		if agreed {
			return lead
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			c.t.Fatalf("no agreed leader among %v", among)
		}
	}
}

// propose proposes cmd until it is applied, following leadership among
// the replicas in among. It returns the entry's index.
func (c *diskCluster) propose(ctx context.Context, cmd string, among ...raft.NodeID) raft.Index {
	c.t.Helper()
	for {
		p := c.rs[c.leader(ctx, among...)].ProposeAsync(ctx, []byte(cmd))
		_, err := p.Wait(ctx)
		if errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrNotCommitted) {
			continue
		}
		if err != nil {
			c.t.Fatalf("propose %q: %v", cmd, err)
		}
		idx, _ := p.Index()
		return idx
	}
}

// lagBehindSnapshot cuts a follower off, commits enough commands that the
// others snapshot their state and compact their logs past it, and returns
// the follower and the index of the last command.
func (c *diskCluster) lagBehindSnapshot(ctx context.Context) (raft.NodeID, raft.Index) {
	c.t.Helper()
	lead := c.leader(ctx, c.ids...)
	lag := c.ids[0]
	if lag == lead {
		lag = c.ids[1]
	}
	c.net.Disconnect(lag)
	var others []raft.NodeID
	for _, id := range c.ids {
		if id != lag {
			others = append(others, id)
		}
	}
	var last raft.Index
	for i := range 25 {
		last = c.propose(ctx, fmt.Sprintf("cmd-%d", i), others...)
	}
	// The leader snapshotted on its run goroutine before it applied more,
	// and compacted its log: the follower can only catch up by snapshot.
	lead = c.leader(ctx, others...)
	if l, err := c.stores[lead].Latest(); err != nil || l.Index < 20 {
		c.t.Fatalf("leader %d holds snapshot %v, %v; want one past index 20", lead, l, err)
	}
	return lag, last
}

// checkCaughtUp checks that lag applied last by way of a snapshot, and
// that its state is every other replica's.
func (c *diskCluster) checkCaughtUp(ctx context.Context, lag raft.NodeID, last raft.Index) {
	c.t.Helper()
	for _, id := range c.ids {
		if err := c.rs[id].WaitApplied(ctx, last); err != nil {
			c.t.Fatalf("replica %d: %v", id, err)
		}
	}
	count, sum, restores := c.sms[lag].state()
	if restores != 1 {
		c.t.Fatalf("lagging replica restored %d snapshots, want 1", restores)
	}
	for _, id := range c.ids {
		if cnt, s, _ := c.sms[id].state(); cnt != count || s != sum {
			c.t.Fatalf("replica %d has state (%d, %x), lagging replica %d has (%d, %x)", id, cnt, s, lag, count, sum)
		}
	}
	if count != 25 {
		c.t.Fatalf("state reflects %d commands, want 25", count)
	}
}

// heapSampler records two peaks, read from runtime/metrics (which does
// not stop the world): the heap in use (live objects, dead ones not yet
// swept, and the free space of spans in use: MemStats.HeapInuse), which is
// what the process holds, and the live heap as the last garbage collection
// measured it, which is what the code retains. The first is about twice
// the second (GOGC=100 lets garbage accumulate that long).
type heapSampler struct {
	stop       chan struct{}
	done       chan struct{}
	peak, live uint64
	allocated  uint64
}

func heapMetrics() []metrics.Sample {
	return []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
}

// readHeap returns the heap in use, the live heap and the bytes allocated
// so far.
func readHeap(s []metrics.Sample) (inuse, live, allocs uint64) {
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		s := heapMetrics()
		_, _, start := readHeap(s)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			inuse, live, allocs := readHeap(s)
			h.peak, h.live, h.allocated = max(h.peak, inuse), max(h.live, live), allocs-start
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return h
}

// Stop stops sampling.
func (h *heapSampler) Stop() {
	close(h.stop)
	<-h.done
}

// A follower that fell behind the leader's compacted log catches up
// through a 100 MiB snapshot, streamed in 1 MiB chunks from the leader's
// snapshot file on disk into a staged file on the follower's disk, and
// restored from there. The process's heap (both sides of the transfer
// live in it) grows by a small multiple of the transfer window, a fraction
// of the snapshot's size.
func TestLaggingFollowerCatchesUpThroughLargeSnapshot(t *testing.T) {
	const (
		size = 100 << 20
		// What both sides of the transfer retain is bounded by design:
		// the sender's window (4 chunks of 1 MiB), the chunks in flight
		// and queued at the receiver (at most a window more) and the one
		// being written, a few small buffers: about 10 MiB, whatever the
		// snapshot's size. The heap in use may be twice that (garbage
		// waits for the next collection).
		maxLive = 16 << 20
		maxHeap = 32 << 20
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newDiskCluster(t, size, snapxfer.Options{}) // default chunks and window
	lag, last := c.lagBehindSnapshot(ctx)

	runtime.GC() // twice: pooled memory survives one collection
	runtime.GC()
	base, baseLive, _ := readHeap(heapMetrics())
	h := sampleHeap(time.Millisecond)
	start := time.Now()
	c.net.Connect(lag)
	err := c.rs[lag].WaitApplied(ctx, last)
	elapsed := time.Since(start)
	h.Stop()
	if err != nil {
		t.Fatal(err)
	}
	c.checkCaughtUp(ctx, lag, last)

	// The follower holds the leader's snapshot as a file of its own.
	meta, err := c.stores[lag].Latest()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := c.stores[lag].Open(meta)
	if err != nil {
		t.Fatal(err)
	}
	staged := rd.Size()
	rd.Close()
	st := c.net.Endpoint(lag).SnapshotStats()
	var resent uint64
	for _, id := range c.ids {
		resent += c.net.Endpoint(id).SnapshotStats().ChunksResent
	}
	growth, liveGrowth := int64(h.peak)-int64(base), int64(h.live)-int64(baseLive)
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("snapshot %.1f MiB in %d chunks (%d resent), caught up in %v, %.1f MiB allocated meanwhile", mib(staged), st.ChunksAccepted, resent, elapsed.Round(time.Millisecond), mib(int64(h.allocated)))
	t.Logf("heap in use: base %.1f MiB, peak %.1f MiB, growth %.1f MiB (limit %d MiB); live heap: base %.1f MiB, peak %.1f MiB, growth %.1f MiB (limit %d MiB)",
		mib(int64(base)), mib(int64(h.peak)), mib(growth), maxHeap>>20, mib(int64(baseLive)), mib(int64(h.live)), mib(liveGrowth), maxLive>>20)
	if staged < size {
		t.Fatalf("staged snapshot holds %d bytes, want at least %d", staged, size)
	}
	if st.ChunksAccepted < size/snapxfer.DefaultChunkSize || st.ReceivedOK < 1 {
		t.Fatalf("receiver stats %+v: the snapshot did not arrive in chunks", st)
	}
	if growth > maxHeap || liveGrowth > maxLive {
		t.Fatalf("heap in use grew by %.1f MiB and the live heap by %.1f MiB while a %d MiB snapshot was transferred; limits %d and %d MiB",
			mib(growth), mib(liveGrowth), size>>20, maxHeap>>20, maxLive>>20)
	}
}

// A transfer whose chunks stop getting through is abandoned by the leader
// after the stall timeout (so the follower's progress is not pinned in the
// snapshot state forever); the leader then sends the snapshot again, in a
// new transfer, which completes.
func TestStalledSnapshotTransferIsRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const stall = time.Second
	c := newDiskCluster(t, 1<<20, snapxfer.Options{ChunkSize: 32 << 10, StallTimeout: stall, RetransmitTimeout: 100 * time.Millisecond})
	lag, last := c.lagBehindSnapshot(ctx)

	// The first transfer to the follower dies after a few chunks: every
	// later chunk of it (its resends and its abort included) is lost.
	var mu sync.Mutex
	var ids []snapxfer.TransferID
	var chunksOfFirst int
	c.net.SetFilter(func(p memnet.Packet) bool {
		if p.Chunk == nil || p.To != lag {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if len(ids) == 0 || ids[len(ids)-1] != p.Chunk.ID {
			ids = append(ids, p.Chunk.ID)
		}
		if p.Chunk.ID != ids[0] {
			return true
		}
		chunksOfFirst++
		return chunksOfFirst <= 3
	})
	var sentFailed atomic.Uint64
	c.net.Connect(lag)
	if err := c.rs[lag].WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	c.checkCaughtUp(ctx, lag, last)
	mu.Lock()
	transfers := len(ids)
	mu.Unlock()
	for _, id := range c.ids {
		sentFailed.Add(c.net.Endpoint(id).SnapshotStats().SentFailed)
	}
	if transfers < 2 || sentFailed.Load() < 1 {
		t.Fatalf("%d transfers, %d failed: want the first to fail and a later one to succeed", transfers, sentFailed.Load())
	}
}

// What the transports and the replica promise each other, checked by the
// compiler.
var (
	_ replica.Transport = (*memnet.Endpoint)(nil)
	_ memnet.Handler    = (*replica.Replica)(nil)
	_ snapxfer.Handler  = (*replica.Replica)(nil)
)

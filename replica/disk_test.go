package replica_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/storage/vfs"
	"github.com/cairnkv/cairn/storage/wal"
)

// ackLog records the writes whose proposers were told they committed.
type ackLog struct {
	mu   sync.Mutex
	keys map[string]string
}

func newAckLog() *ackLog { return &ackLog{keys: map[string]string{}} }

func (a *ackLog) add(k, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys[k] = v
}

func (a *ackLog) all() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.keys)
}

// checkAcknowledged makes a last write through the group, waits until
// every running node has applied it, and checks that every node holds
// every acknowledged write and that all nodes hold the same state.
func checkAcknowledged(ctx context.Context, t *testing.T, c *cluster, acked *ackLog) {
	t.Helper()
	_, last := c.propose(ctx, "final=1")
	c.waitApplied(ctx, last)
	want := acked.all()
	var first map[string]string
	for _, id := range c.ids {
		if c.r(id) == nil {
			continue
		}
		got := c.nodes[id].sm.copy()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("node %d lost acknowledged write %s=%s (has %q)", id, k, v, got[k])
			}
		}
		if first == nil {
			first = got
		} else if !maps.Equal(first, got) {
			t.Errorf("node %d's state differs from another node's", id)
		}
	}
	if len(want) == 0 {
		t.Fatal("no write was acknowledged: the test tested nothing")
	}
}

// writer proposes unique keys to whichever node leads until stop is
// closed, recording the acknowledged ones. It never fails the test: nodes
// come and go under it.
func writer(ctx context.Context, c *cluster, prefix string, stop <-chan struct{}, acked *ackLog) {
	target := c.ids[0]
	for i := 0; ; {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		r := c.r(target)
		if r == nil {
			target = c.ids[(slices.Index(c.ids, target)+1)%len(c.ids)]
			if c.r(target) == nil {
				waitTick(ctx, c.ticker, stop)
			}
			continue
		}
		key := fmt.Sprintf("%s-%d", prefix, i)
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := r.Propose(pctx, []byte(key+"=v"))
		cancel()
		var nl *replica.NotLeaderError
		switch {
		case err == nil:
			acked.add(key, "v")
			i++
		case errors.As(err, &nl) && nl.Leader != raft.None:
			target = nl.Leader
		case errors.As(err, &nl):
			_, changed := r.Leader()
			select {
			case <-changed:
			case <-stop:
			case <-ctx.Done():
			}
		default:
			// Stopped, timed out, not committed, no space: try the next
			// node, and a new key (the old one's outcome may be unknown).
			target = c.ids[(slices.Index(c.ids, target)+1)%len(c.ids)]
			i++
			waitTick(ctx, c.ticker, stop)
		}
	}
}

// proposeAnywhere proposes cmd to whichever node leads, following
// leadership as it moves, until it is committed or ctx ends. Unlike
// cluster.propose it may be called from any goroutine. A proposal that
// may have committed is not retried: the error is returned.
func proposeAnywhere(ctx context.Context, c *cluster, cmd string) (applied, error) {
	target := c.ids[0]
	for {
		r := c.r(target)
		if r == nil {
			target = c.ids[(slices.Index(c.ids, target)+1)%len(c.ids)]
			continue
		}
		res, err := r.Propose(ctx, []byte(cmd))
		var nl *replica.NotLeaderError
		switch {
		case err == nil:
			return res.(applied), nil
		case errors.As(err, &nl) && nl.Leader != raft.None:
			target = nl.Leader
		case errors.Is(err, replica.ErrNotCommitted):
			// No effect, and the leadership already moved: try again.
		case errors.As(err, &nl):
			// No effect, and no leader known: wait for one.
			st, changed := r.Leader()
			if st.Lead != raft.None && st.Lead != target {
				target = st.Lead
				continue
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return applied{}, ctx.Err()
			}
		default:
			return applied{}, err
		}
	}
}

// waitTick waits for one tick of src (a pause between retries that
// waits on the clock the replicas run on, not on time.Sleep).
func waitTick(ctx context.Context, src replica.TickSource, stop <-chan struct{}) {
	ticks, cancel := src.Subscribe()
	defer cancel()
	select {
	case <-ticks:
	case <-stop:
	case <-ctx.Done():
	}
}

// A 3-node group with its state on disk (WAL and snapshot files on each
// node's MemFS) restarts from its disks, one node and then all at once,
// and loses nothing.
func TestDiskClusterRestart(t *testing.T) {
	ctx := testContext(t)
	c := newDiskCluster(t, 3, 8<<10, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 16
		cfg.CompactionMargin = 4
	})
	acked := newAckLog()
	lead := c.waitLeader(ctx)
	for i := range 40 {
		k := fmt.Sprintf("a%d", i)
		c.propose(ctx, k+"=x")
		acked.add(k, "x")
	}
	f := c.others(lead)[0]
	c.stop(f)
	for i := range 40 {
		k := fmt.Sprintf("b%d", i)
		c.propose(ctx, k+"=y")
		acked.add(k, "y")
	}
	c.start(f)
	checkAcknowledged(ctx, t, c, acked)

	for _, id := range c.ids {
		c.stop(id)
	}
	for _, id := range c.ids {
		c.start(id)
		if snaps := c.nodes[id].disk.Snapshots.Store().List(); len(snaps) == 0 {
			t.Errorf("node %d has no snapshot file", id)
		}
	}
	checkAcknowledged(ctx, t, c, acked)
}

// Machines lose power while proposals are in flight: one at a time, and
// all at once. Each restarts from what its disk kept (MemFS.Crash keeps
// only what was synced for sure, and tears unsynced writes at random), and
// every write that was acknowledged is still there.
func TestDiskClusterCrashKeepsAcknowledgedWrites(t *testing.T) {
	ctx := testContext(t)
	c := newDiskCluster(t, 3, 8<<10, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 20
		cfg.CompactionMargin = 5
	})
	acked := newAckLog()
	rng := rand.New(rand.NewPCG(3, 3))
	for round := range 8 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() { writer(ctx, c, fmt.Sprintf("r%d-g%d", round, g), stop, acked) })
		}
		for i := range 10 {
			k := fmt.Sprintf("r%d-main-%d", round, i)
			c.propose(ctx, k+"=v")
			acked.add(k, "v")
		}
		victims := []raft.NodeID{c.ids[rng.IntN(len(c.ids))]}
		if round%3 == 2 {
			victims = c.ids // a power cut of the whole group
		}
		for _, id := range victims {
			c.crash(id)
		}
		close(stop)
		wg.Wait()
		for _, id := range victims {
			c.start(id)
		}
	}
	checkAcknowledged(ctx, t, c, acked)
}

// flipFirstRecordBit flips a bit inside the first record of node id's
// oldest WAL segment, which must not be the newest: a checksum failure
// before the log's tail. It returns the segment's path.
func flipFirstRecordBit(t *testing.T, fs *vfs.MemFS) string {
	t.Helper()
	names, err := fs.List(replica.WALDir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".wal") {
			segs = append(segs, filepath.Join(replica.WALDir(dataDir), n))
		}
	}
	if len(segs) < 2 {
		t.Fatalf("want a sealed segment to damage, have %v", segs)
	}
	// Offset 60 is inside the checkpoint record that follows the 40-byte
	// segment header.
	if err := fs.FlipBit(segs[0], 60, 3); err != nil {
		t.Fatal(err)
	}
	return segs[0]
}

// The documented repair path, end to end: a replica whose WAL is damaged
// before its tail refuses to start with an error naming the file and the
// offset; its data directory is wiped; it restarts under the same ID
// without bootstrapping, catches up from its peers by snapshot, and
// (caught up) votes again, so that the group survives losing another
// node.
func TestDamagedReplicaRefusesToStartAndWipingRepairsIt(t *testing.T) {
	ctx := testContext(t)
	c := newDiskCluster(t, 3, 4<<10, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 30
		cfg.CompactionMargin = 10 // 10 entries are more than a segment
	})
	acked := newAckLog()
	val := strings.Repeat("v", 500) // a few entries per 4 KiB segment
	lead := c.waitLeader(ctx)
	for i := range 40 {
		k := fmt.Sprintf("a%d", i)
		c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	f := c.others(lead)[0]
	c.stop(f)
	seg := flipFirstRecordBit(t, c.nodes[f].fs)

	_, err := replica.OpenDisk(dataDir, replica.DiskOptions{FS: c.nodes[f].fs, SegmentSize: 4 << 10})
	var ce *wal.CorruptError
	if !errors.Is(err, replica.ErrDataCorrupt) || !errors.Is(err, wal.ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("OpenDisk on a damaged log: %v; want ErrDataCorrupt wrapping a *wal.CorruptError", err)
	}
	if ce.File != seg || ce.Offset != 40 || !strings.Contains(err.Error(), seg) {
		t.Fatalf("the error names %s at offset %d (%v); the damage is in %s at offset 40", ce.File, ce.Offset, err, seg)
	}

	// More writes while it is down, so that it must catch up by snapshot.
	for i := range 30 {
		k := fmt.Sprintf("b%d", i)
		c.propose(ctx, k+"="+val)
		acked.add(k, val)
	}
	if first, _ := c.nodes[lead].disk.Log.FirstIndex(); first <= 2 {
		t.Fatalf("the leader's log still starts at %d: no snapshot needed", first)
	}
	c.wipe(f)
	c.start(f)
	if d := c.nodes[f].disk; !d.Fresh || d.Bootstrapped {
		t.Fatalf("wiped node's disk: fresh %v, bootstrapped %v; want fresh, not bootstrapped", d.Fresh, d.Bootstrapped)
	}
	checkAcknowledged(ctx, t, c, acked)
	if s, _ := c.nodes[f].disk.Log.Snapshot(); s.IsEmpty() {
		t.Fatal("the wiped node caught up without installing a snapshot")
	}

	// Caught up, it votes: without the leader, it and the third node elect
	// a new one.
	c.stop(lead)
	newLead := c.waitLeader(ctx, c.others(lead)...)
	if _, err := c.r(newLead).Propose(ctx, []byte("after=repair")); err != nil {
		t.Fatal(err)
	}
	c.start(lead)
	checkAcknowledged(ctx, t, c, acked)
}

// OpenDisk refuses a snapshot that is damaged or missing, but opens a log
// whose tail a crash tore.
func TestOpenDiskRecoveryRules(t *testing.T) {
	opts := func(fs vfs.FS) replica.DiskOptions {
		return replica.DiskOptions{FS: fs, SegmentSize: wal.MinSegmentSize, Logger: slog.New(slog.DiscardHandler)}
	}
	// build writes a log with a recorded snapshot, and entries after it.
	build := func(t *testing.T, seed uint64) *vfs.MemFS {
		fs := vfs.NewMem(seed)
		o := opts(fs)
		o.Bootstrap = []raft.NodeID{1}
		d, err := replica.OpenDisk(dataDir, o)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Fresh || !d.Bootstrapped {
			t.Fatalf("new directory: fresh %v, bootstrapped %v", d.Fresh, d.Bootstrapped)
		}
		ents := []raft.Entry{{Term: 1, Index: 2, Data: []byte("a")}, {Term: 1, Index: 3, Data: []byte("b")}}
		if err := d.Log.Save(raft.HardState{Term: 1, Commit: 3}, ents, nil, true); err != nil {
			t.Fatal(err)
		}
		meta := raft.SnapshotMeta{Index: 3, Term: 1, ConfState: raft.NewConfState(1)}
		w, err := d.Snapshots.Create(meta)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "state at 3")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.Log.Compact(meta, 3); err != nil {
			t.Fatal(err)
		}
		if err := d.Log.Save(raft.HardState{Term: 1, Commit: 4}, []raft.Entry{{Term: 1, Index: 4, Data: []byte("c")}}, nil, true); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	snapFile := func(t *testing.T, fs *vfs.MemFS) string {
		names, _ := fs.List(replica.SnapDir(dataDir))
		if len(names) != 1 {
			t.Fatalf("snapshot files: %v", names)
		}
		return filepath.Join(replica.SnapDir(dataDir), names[0])
	}

	t.Run("intact", func(t *testing.T) {
		fs := build(t, 1)
		d, err := replica.OpenDisk(dataDir, opts(fs))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if last, _ := d.Log.LastIndex(); d.Fresh || last != 4 {
			t.Fatalf("reopened: fresh %v, last index %d", d.Fresh, last)
		}
	})
	t.Run("damaged snapshot header", func(t *testing.T) {
		fs := build(t, 2)
		path := snapFile(t, fs)
		fs.FlipBit(path, 2, 0)
		_, err := replica.OpenDisk(dataDir, opts(fs))
		var ce *snap.CorruptError
		if !errors.Is(err, replica.ErrDataCorrupt) || !errors.As(err, &ce) || ce.File != path {
			t.Fatalf("OpenDisk with a damaged snapshot: %v", err)
		}
	})
	t.Run("missing snapshot", func(t *testing.T) {
		fs := build(t, 3)
		if err := fs.Remove(snapFile(t, fs)); err != nil {
			t.Fatal(err)
		}
		_, err := replica.OpenDisk(dataDir, opts(fs))
		if !errors.Is(err, replica.ErrDataCorrupt) || !errors.Is(err, snap.ErrNotFound) {
			t.Fatalf("OpenDisk with the log's snapshot missing: %v", err)
		}
	})
	t.Run("damaged snapshot data", func(t *testing.T) {
		// Only reading the data finds it: the replica refuses to start
		// when it restores the snapshot, naming the file.
		fs := build(t, 4)
		path := snapFile(t, fs)
		st, _ := fs.Stat(path)
		fs.FlipBit(path, st.Size()-20-1, 1) // the last data byte, before the 20-byte trailer
		d, err := replica.OpenDisk(dataDir, opts(fs))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = replica.New(replica.Config{
			ID: 1, Log: d.Log, Snapshots: d.Snapshots, StateMachine: &rawState{},
			Transport: dropAll{}, Ticks: manualTicks{}, Logger: slog.New(slog.DiscardHandler),
		})
		var ce *snap.CorruptError
		if !errors.As(err, &ce) || ce.File != path {
			t.Fatalf("replica.New on a snapshot with damaged data: %v", err)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		torn := 0
		for seed := range uint64(40) {
			fs := build(t, 100+seed)
			d, err := replica.OpenDisk(dataDir, opts(fs))
			if err != nil {
				t.Fatal(err)
			}
			// An unsynced write, then a power cut: its bytes may be
			// kept, lost or torn.
			e := raft.Entry{Term: 1, Index: 5, Data: []byte(strings.Repeat("x", 300))}
			if err := d.Log.Save(raft.HardState{}, []raft.Entry{e}, nil, false); err != nil {
				t.Fatal(err)
			}
			fs = fs.Crash()
			d, err = replica.OpenDisk(dataDir, opts(fs))
			if err != nil {
				t.Fatalf("seed %d: OpenDisk after a torn write: %v", seed, err)
			}
			last, _ := d.Log.LastIndex()
			if last != 4 && last != 5 {
				t.Fatalf("seed %d: last index %d after the crash", seed, last)
			}
			if d.Log.Recovery().TornBytes > 0 {
				torn++
			}
			d.Close()
		}
		if torn == 0 {
			t.Fatal("no crash tore the tail: the test tested nothing")
		}
	})
}

// rawState is a state machine that keeps the bytes it was restored from.
type rawState struct{ data []byte }

func (s *rawState) Apply(ents []raft.Entry) ([]any, error) { return make([]any, len(ents)), nil }
func (s *rawState) Snapshot(w io.Writer) error {
	_, err := w.Write(s.data)
	return err
}

// Restore reads only a prefix, as a decoder may: the replica must still
// verify the whole snapshot.
func (s *rawState) Restore(r io.Reader) error {
	buf := make([]byte, 4)
	n, err := io.ReadFull(r, buf)
	s.data = buf[:n]
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return err
}

// dropAll is a transport that loses everything.
type dropAll struct{}

func (dropAll) Send([]raft.Message) {}
func (dropAll) SendSnapshot(_ raft.Message, data io.ReadCloser, done func(error)) {
	data.Close()
	done(errors.New("dropped"))
}

// captureTransport records what a replica sends.
type captureTransport struct {
	mu   sync.Mutex
	msgs []raft.Message
}

func (c *captureTransport) Send(msgs []raft.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		m.Entries = slices.Clone(m.Entries)
		c.msgs = append(c.msgs, m)
	}
}

func (c *captureTransport) SendSnapshot(_ raft.Message, data io.ReadCloser, done func(error)) {
	data.Close()
	done(errors.New("dropped"))
}

func (c *captureTransport) sent() []raft.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// manualTicks is a clock that never ticks unless the test sends on c.
type manualTicks struct{ c chan struct{} }

func (m manualTicks) Subscribe() (<-chan struct{}, func()) { return m.c, func() {} }

// A replica that starts from an empty log (a wiped one rejoining) neither
// votes nor campaigns until it has caught up: it may have voted in the
// terms it is asked about, and its empty log could let a candidate that
// lacks committed entries win. A replica started from the bootstrap state
// votes as usual.
func TestCatchingUpReplicaDoesNotVote(t *testing.T) {
	for _, bootstrapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("bootstrapped=%v", bootstrapped), func(t *testing.T) {
			ctx := testContext(t)
			ms := raft.NewMemoryStorage()
			if bootstrapped {
				if err := raft.Bootstrap(ms, 1, 2, 3); err != nil {
					t.Fatal(err)
				}
			}
			tr := &captureTransport{}
			ticks := manualTicks{c: make(chan struct{})}
			r, err := replica.New(replica.Config{
				ID: 3, Log: replica.NewMemoryLogStore(ms), Snapshots: replica.NewMemorySnapshotStore(),
				StateMachine: newKV(), Transport: tr, Ticks: ticks,
				Raft:   raft.Config{ElectionTick: 5},
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			for _, m := range []raft.Message{
				{Type: raft.MsgPreVote, From: 1, To: 3, Term: 6, Index: 1, LogTerm: 1},
				{Type: raft.MsgVote, From: 1, To: 3, Term: 5, Index: 1, LogTerm: 1},
				{Type: raft.MsgHeartbeat, From: 2, To: 3, Term: 5},
			} {
				if err := r.Step(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			// The heartbeat, stepped last, makes node 2 the leader.
			for {
				st, changed := r.Leader()
				if st.Lead == 2 {
					break
				}
				select {
				case <-changed:
				case <-ctx.Done():
					t.Fatal("the heartbeat was never stepped")
				}
			}
			granted := 0
			for _, m := range tr.sent() {
				if (m.Type == raft.MsgVoteResp || m.Type == raft.MsgPreVoteResp) && !m.Reject {
					granted++
				}
			}
			st, err := r.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if bootstrapped && (granted != 2 || st.Vote != 1) {
				t.Fatalf("bootstrapped replica: %d votes granted, vote for %d; want both granted, vote for 1", granted, st.Vote)
			}
			if !bootstrapped && (granted != 0 || st.Vote != raft.None) {
				t.Fatalf("empty replica: %d votes granted, vote for %d; want none", granted, st.Vote)
			}
		})
	}
}

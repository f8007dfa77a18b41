package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

// lazySM is a state machine that persists lazily, as kv's engine does:
// Apply changes only its current state, Sync makes the current state
// durable, and a crash keeps only what was synced. A command whose key
// starts with "flush" makes it durable too (as an engine flushes on its
// own now and then). It records every command it applies, in order, and
// refuses an entry at or below its applied index, so that an entry lost or
// applied twice shows.
type lazySM struct {
	mu           sync.Mutex
	cur, durable lazyState
	restores     int
	syncs        int
	failSync     bool
}

var (
	_ replica.AppliedIndexer = (*lazySM)(nil)
	_ replica.Syncer         = (*lazySM)(nil)
)

type lazyState struct {
	Applied raft.Index
	Log     []applied
}

func (s lazyState) clone() lazyState {
	return lazyState{Applied: s.Applied, Log: slices.Clone(s.Log)}
}

var errSyncFailed = errors.New("lazySM: sync failed")

func (s *lazySM) Apply(ents []raft.Entry) ([]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(ents))
	flush := false
	for i, e := range ents {
		if e.Index <= s.cur.Applied {
			return nil, fmt.Errorf("lazySM: entry %d applied again (applied %d)", e.Index, s.cur.Applied)
		}
		a := applied{Index: e.Index, Cmd: string(e.Data)}
		s.cur.Log = append(s.cur.Log, a)
		s.cur.Applied = e.Index
		out[i] = a
		flush = flush || strings.HasPrefix(a.Cmd, "flush")
	}
	if flush {
		s.durable = s.cur.clone()
	}
	return out, nil
}

func (s *lazySM) Snapshot(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.NewEncoder(w).Encode(s.cur)
}

// Restore replaces the current state only: even a restore is durable
// only once synced.
func (s *lazySM) Restore(r io.Reader) error {
	var st lazyState
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = st
	s.restores++
	return nil
}

func (s *lazySM) AppliedIndex() raft.Index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Applied
}

func (s *lazySM) Sync() (raft.Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSync {
		return 0, errSyncFailed
	}
	s.durable = s.cur.clone()
	s.syncs++
	return s.cur.Applied, nil
}

// crash returns the state machine a restart finds: what was synced.
func (s *lazySM) crash() *lazySM {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &lazySM{cur: s.durable.clone(), durable: s.durable.clone(), failSync: s.failSync}
}

func (s *lazySM) state() (cur, durable lazyState, restores, syncs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.clone(), s.durable.clone(), s.restores, s.syncs
}

// lazyCluster is a cluster whose replicas run lazySMs (the kv state
// machines the harness makes are unused).
type lazyCluster struct {
	*cluster
	mu  sync.Mutex
	sms map[raft.NodeID]*lazySM
}

func newLazyCluster(t *testing.T, n int, failSync bool) *lazyCluster {
	lc := &lazyCluster{sms: map[raft.NodeID]*lazySM{}}
	for i := 1; i <= n; i++ {
		lc.sms[raft.NodeID(i)] = &lazySM{failSync: failSync}
	}
	lc.cluster = newCluster(t, n, func(cfg *replica.Config) {
		cfg.SnapshotEvery = 10
		cfg.CompactionMargin = 3
		cfg.StateMachine = lc.sm(cfg.ID)
	})
	return lc
}

func (lc *lazyCluster) sm(id raft.NodeID) *lazySM {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.sms[id]
}

// crashAll stops every replica, drops what its state machine had not
// synced, and starts them all again.
func (lc *lazyCluster) crashAll() {
	for _, id := range lc.ids {
		lc.stop(id)
		lc.mu.Lock()
		lc.sms[id] = lc.sms[id].crash()
		lc.mu.Unlock()
	}
	for _, id := range lc.ids {
		lc.start(id)
	}
}

// proposeN commits n commands and returns their results in log order.
func (lc *lazyCluster) proposeN(ctx context.Context, prefix string, n int) []applied {
	var out []applied
	for i := range n {
		res, _ := lc.propose(ctx, fmt.Sprintf("%s%d=%d", prefix, i, i))
		out = append(out, res)
	}
	return out
}

// settle waits until every replica has applied index and finished the
// Ready that applied it (including the snapshot it may take afterwards):
// a call on the run goroutine runs only between Readies.
func (lc *lazyCluster) settle(ctx context.Context, index raft.Index) {
	lc.t.Helper()
	lc.waitApplied(ctx, index)
	for _, id := range lc.ids {
		if _, err := lc.r(id).Status(ctx); err != nil {
			lc.t.Fatal(err)
		}
	}
}

// check waits until every replica has applied want's last command and
// checks that each state machine applied exactly want, in order: nothing
// lost, nothing twice.
func (lc *lazyCluster) check(ctx context.Context, want []applied) {
	lc.t.Helper()
	lc.settle(ctx, want[len(want)-1].Index)
	for _, id := range lc.ids {
		cur, _, _, _ := lc.sm(id).state()
		if !slices.Equal(cur.Log, want) {
			lc.t.Fatalf("node %d applied %d commands %v,\nwant %d: %v", id, len(cur.Log), cur.Log, len(want), want)
		}
	}
}

// A replica whose state machine persists its applied index starts there:
// after a crash that drops what the state machine had not synced, it
// re-applies exactly the entries after its durable index, from the log,
// without restoring a snapshot (compaction synced the state machine and
// kept the log from there on). The durable index is past the latest
// snapshot's (the state machine flushed on its own since), so starting at
// the snapshot would apply entries twice, and restoring it would be
// wasted work.
func TestRestartAtStateMachineAppliedIndex(t *testing.T) {
	ctx := testContext(t)
	lc := newLazyCluster(t, 3, false)
	lc.waitLeader(ctx)
	var want []applied
	for round := range 2 {
		want = append(want, lc.proposeN(ctx, fmt.Sprint("a", round, "-"), 25)...)
		// A flush past the latest snapshot, then entries not synced. A
		// snapshot may come in between on some node; then again.
		for i := 0; !lc.flushedPastSnapshot(); i++ {
			if i == 10 {
				t.Fatal("no state between a flush and the next snapshot")
			}
			want = append(want, lc.proposeN(ctx, fmt.Sprint("flush", round, i, "-"), 1)...)
			want = append(want, lc.proposeN(ctx, fmt.Sprint("u", round, i, "-"), 2)...)
			lc.settle(ctx, want[len(want)-1].Index)
		}
		for _, id := range lc.ids {
			_, durable, _, syncs := lc.sm(id).state()
			first, _ := lc.nodes[id].log.FirstIndex()
			if syncs == 0 {
				t.Fatalf("node %d: compaction never synced the state machine", id)
			}
			if first-1 > durable.Applied {
				t.Fatalf("node %d compacted its log to %d, past its state machine's durable index %d", id, first-1, durable.Applied)
			}
		}

		lc.crashAll()
		for _, id := range lc.ids {
			if _, _, restores, _ := lc.sm(id).state(); restores != 0 {
				t.Errorf("node %d restored a snapshot at restart, although its state machine was past it", id)
			}
		}
		lc.waitLeader(ctx)
		want = append(want, lc.proposeN(ctx, fmt.Sprint("b", round, "-"), 3)...)
		lc.check(ctx, want)
	}
}

// flushedPastSnapshot reports whether every state machine has made durable
// more than its log's snapshot holds, and applied more than that.
func (lc *lazyCluster) flushedPastSnapshot() bool {
	for _, id := range lc.ids {
		cur, durable, _, _ := lc.sm(id).state()
		snap, _ := lc.nodes[id].log.Snapshot()
		if durable.Applied <= snap.Index || cur.Applied <= durable.Applied {
			return false
		}
	}
	return true
}

// When the state machine cannot sync, compaction still records snapshots
// but discards nothing past the state machine's durable index; a crash
// then takes the state machine back to nothing, and the replica restores
// the latest snapshot and re-applies the entries after it.
func TestCompactionWaitsForStateMachineSync(t *testing.T) {
	ctx := testContext(t)
	lc := newLazyCluster(t, 3, true)
	lc.waitLeader(ctx)
	want := lc.proposeN(ctx, "a", 25)
	lc.settle(ctx, want[len(want)-1].Index)
	snaps := map[raft.NodeID]raft.Index{}
	for _, id := range lc.ids {
		snap, _ := lc.nodes[id].log.Snapshot()
		first, _ := lc.nodes[id].log.FirstIndex()
		if snap.Index < 10 {
			t.Fatalf("node %d: snapshot at %d, want one past 10", id, snap.Index)
		}
		if first != 1 {
			t.Fatalf("node %d compacted its log to %d although its state machine never synced", id, first-1)
		}
		snaps[id] = snap.Index
	}

	lc.crashAll()
	for _, id := range lc.ids {
		if _, _, restores, _ := lc.sm(id).state(); restores != 1 {
			t.Errorf("node %d: %d restores at restart; want snapshot %d restored", id, restores, snaps[id])
		}
	}
	lc.waitLeader(ctx)
	want = append(want, lc.proposeN(ctx, "b", 3)...)
	lc.check(ctx, want)

	// Once it syncs again, the log is compacted again.
	for _, id := range lc.ids {
		lc.sm(id).mu.Lock()
		lc.sm(id).failSync = false
		lc.sm(id).mu.Unlock()
	}
	want = append(want, lc.proposeN(ctx, "c", 20)...)
	lc.check(ctx, want)
	for _, id := range lc.ids {
		first, _ := lc.nodes[id].log.FirstIndex()
		_, durable, _, _ := lc.sm(id).state()
		if first == 1 || first-1 > durable.Applied {
			t.Errorf("node %d: log compacted to %d, durable index %d", id, first-1, durable.Applied)
		}
	}
}

// A state machine whose data survived while its log did not (an empty
// log, a state machine at index 5) is refused: the replica cannot tell
// which history it belongs to.
func TestStateMachineAheadOfLogIsRefused(t *testing.T) {
	sm := &lazySM{cur: lazyState{Applied: 5}}
	ms := raft.NewMemoryStorage()
	if err := raft.Bootstrap(ms, 1); err != nil {
		t.Fatal(err)
	}
	ticker := replica.NewTicker(tickInterval)
	defer ticker.Stop()
	_, err := replica.New(replica.Config{
		ID:           1,
		Log:          replica.NewMemoryLogStore(ms),
		Snapshots:    replica.NewMemorySnapshotStore(),
		StateMachine: sm,
		Transport:    nopTransport{},
		Ticks:        ticker,
	})
	if !errors.Is(err, replica.ErrDataCorrupt) {
		t.Fatalf("New with a state machine ahead of its log: %v, want ErrDataCorrupt", err)
	}
}

type nopTransport struct{}

func (nopTransport) Send([]raft.Message) {}
func (nopTransport) SendSnapshot(_ raft.Message, data io.ReadCloser, done func(error)) {
	data.Close()
	done(errors.New("nopTransport"))
}

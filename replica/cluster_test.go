package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/replica/memnet"
	"github.com/cairnkv/cairn/storage/vfs"
)

// Every test stops what it starts; goleak fails the package otherwise.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Timing: real ticks, short, with an election timeout wide enough that a
// loaded race-detector run does not see spurious elections. Tests never
// sleep to wait for an event; they wait on futures, Leader's change
// channel or WaitApplied, bounded by testTimeout.
const (
	tickInterval  = 2 * time.Millisecond
	electionTick  = 25 // 50-100ms
	heartbeatTick = 3
	testTimeout   = 20 * time.Second
)

// kv is a tiny state machine: commands are "key=value".
type kv struct {
	mu   sync.Mutex
	data map[string]string
}

// applied is kv's result for one command: where it was applied and what.
type applied struct {
	Index raft.Index
	Cmd   string
}

func newKV() *kv { return &kv{data: map[string]string{}} }

func (s *kv) Apply(ents []raft.Entry) ([]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(ents))
	for i, e := range ents {
		k, v, ok := strings.Cut(string(e.Data), "=")
		if !ok {
			return nil, fmt.Errorf("kv: bad command %q", e.Data)
		}
		s.data[k] = v
		out[i] = applied{Index: e.Index, Cmd: string(e.Data)}
	}
	return out, nil
}

func (s *kv) Snapshot(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.NewEncoder(w).Encode(s.data)
}

func (s *kv) Restore(r io.Reader) error {
	data := map[string]string{}
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = data
	return nil
}

func (s *kv) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[k]
	return v, ok
}

func (s *kv) copy() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data)
}

// gatedClock forwards a shared tick source's ticks to one replica unless
// paused: a test stops one node's clock without touching the others'.
type gatedClock struct {
	src    replica.TickSource
	paused atomic.Bool
}

func (g *gatedClock) Subscribe() (<-chan struct{}, func()) {
	up, cancelUp := g.src.Subscribe()
	out := make(chan struct{}, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-up:
				if g.paused.Load() {
					continue
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			cancelUp()
			close(stop)
			<-done
		})
	}
}

// node is one member of a test cluster: its durable stores survive
// restarts; its state machine and replica do not.
type node struct {
	id    raft.NodeID
	log   *replica.MemoryLogStore
	snaps *replica.MemorySnapshotStore
	clock *gatedClock
	sm    *kv
	r     *replica.Replica // nil while stopped

	// A disk-backed node (newDiskCluster) keeps its durable state in a
	// data directory on fs, its machine's disk, instead of log and snaps.
	// disk is open while the node runs. bootstrap says whether its next
	// start may bootstrap the group (true until its first start).
	fs        *vfs.MemFS
	disk      *replica.Disk
	bootstrap bool
}

type cluster struct {
	// mu guards the nodes' r and sm fields, for tests that start and stop
	// nodes while other goroutines use them, and changed, which is closed
	// and replaced whenever a node starts or stops.
	mu      sync.Mutex
	changed chan struct{}
	t       testing.TB
	net     *memnet.Network
	ticker  *replica.Ticker
	ids     []raft.NodeID
	nodes   map[raft.NodeID]*node
	tweak   func(*replica.Config)
	// segmentSize is the WAL segment size of a disk-backed cluster; zero
	// for an in-memory one.
	segmentSize int64
}

// newCluster starts n replicas of a freshly bootstrapped group. tweak, if
// not nil, adjusts each replica's config. Everything is stopped at the end
// of the test.
func newCluster(t testing.TB, n int, tweak func(*replica.Config)) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		net:    memnet.New(),
		ticker: replica.NewTicker(tickInterval),
		nodes:  map[raft.NodeID]*node{},
		tweak:  tweak,
	}
	t.Cleanup(c.close)
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, raft.NodeID(i))
	}
	for _, id := range c.ids {
		ms := raft.NewMemoryStorage()
		if err := raft.Bootstrap(ms, c.ids...); err != nil {
			t.Fatal(err)
		}
		c.nodes[id] = &node{
			id:    id,
			log:   replica.NewMemoryLogStore(ms),
			snaps: replica.NewMemorySnapshotStore(),
			clock: &gatedClock{src: c.ticker},
		}
		c.start(id)
	}
	return c
}

// start starts (or restarts) node id with a new, empty state machine over
// its durable stores.
func (c *cluster) start(id raft.NodeID) *replica.Replica {
	c.t.Helper()
	nd := c.nodes[id]
	if nd.r != nil {
		c.t.Fatalf("node %d already running", id)
	}
	sm := newKV()
	ep := c.net.Endpoint(id)
	var logStore replica.LogStore = nd.log
	var snaps replica.SnapshotStore = nd.snaps
	if nd.fs != nil {
		d := c.openDisk(nd)
		logStore, snaps = d.Log, d.Snapshots
	}
	cfg := replica.Config{
		ID:           id,
		Group:        7,
		Raft:         raft.Config{ElectionTick: electionTick, HeartbeatTick: heartbeatTick},
		Log:          logStore,
		Snapshots:    snaps,
		StateMachine: sm,
		Transport:    ep,
		Ticks:        nd.clock,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	r, err := replica.New(cfg)
	if err != nil {
		if nd.disk != nil {
			nd.disk.Close()
			nd.disk = nil
		}
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.mu.Lock()
	nd.r, nd.sm = r, sm
	c.changedLocked()
	c.mu.Unlock()
	ep.Attach(r)
	return r
}

// stop stops node id (a crash that keeps its durable stores).
func (c *cluster) stop(id raft.NodeID) {
	c.t.Helper()
	nd := c.nodes[id]
	c.net.Endpoint(id).Attach(nil)
	if err := nd.r.Stop(); err != nil {
		c.t.Errorf("node %d stopped with error: %v", id, err)
	}
	if nd.disk != nil {
		if err := nd.disk.Close(); err != nil {
			c.t.Errorf("node %d: close its log: %v", id, err)
		}
		nd.disk = nil
	}
	c.mu.Lock()
	nd.r = nil
	c.changedLocked()
	c.mu.Unlock()
}

// changedLocked wakes whoever waits for a node to start or stop.
func (c *cluster) changedLocked() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

// running returns the ids of the running nodes, and a channel closed when
// the next node starts or stops.
func (c *cluster) running() ([]raft.NodeID, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	var ids []raft.NodeID
	for _, id := range c.ids {
		if c.nodes[id].r != nil {
			ids = append(ids, id)
		}
	}
	return ids, c.changed
}

func (c *cluster) close() {
	for _, id := range c.ids {
		if c.nodes[id] != nil && c.r(id) != nil {
			c.stop(id)
		}
	}
	for _, id := range c.ids {
		if nd := c.nodes[id]; nd != nil && nd.disk != nil {
			nd.disk.Close() // a node that stopped itself (a fatal error)
		}
	}
	c.net.Close()
	c.ticker.Stop()
}

// r returns node id's running replica, or nil.
func (c *cluster) r(id raft.NodeID) *replica.Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].r
}

// others returns the ids of the cluster other than those given.
func (c *cluster) others(except ...raft.NodeID) []raft.NodeID {
	return slices.DeleteFunc(slices.Clone(c.ids), func(id raft.NodeID) bool { return slices.Contains(except, id) })
}

// waitLeader waits until one of among leads and all of among follow it,
// and returns it. among defaults to every running node.
func (c *cluster) waitLeader(ctx context.Context, among ...raft.NodeID) raft.NodeID {
	c.t.Helper()
	if len(among) == 0 {
		for _, id := range c.ids {
			if c.r(id) != nil {
				among = append(among, id)
			}
		}
	}
	for {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		states := map[raft.NodeID]replica.LeaderState{}
		for _, id := range among {
			st, changed := c.r(id).Leader()
			states[id] = st
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(changed)})
		}
		if lead := agreedLeader(states); lead != raft.None {
			return lead
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			c.t.Fatalf("no agreed leader among %v: %v", among, states)
		}
	}
}

func agreedLeader(states map[raft.NodeID]replica.LeaderState) raft.NodeID {
	var lead raft.NodeID
	for id, st := range states {
		if st.Role == raft.Leader {
			lead = id
		}
	}
	if lead == raft.None {
		return raft.None
	}
	for _, st := range states {
		if st.Lead != lead || st.Term != states[lead].Term {
			return raft.None
		}
	}
	return lead
}

// propose proposes cmd wherever the leader is, retrying while leadership
// moves (a NotLeaderError or ErrNotCommitted means the command had no
// effect). It returns the result and the index of the entry.
func (c *cluster) propose(ctx context.Context, cmd string) (applied, raft.Index) {
	c.t.Helper()
	for {
		lead := c.waitLeader(ctx)
		p := c.r(lead).ProposeAsync(ctx, []byte(cmd))
		res, err := p.Wait(ctx)
		if errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrNotCommitted) {
			continue
		}
		if err != nil {
			c.t.Fatalf("propose %q: %v", cmd, err)
		}
		idx, _ := p.Index()
		return res.(applied), idx
	}
}

// waitApplied waits until every running node has applied index.
func (c *cluster) waitApplied(ctx context.Context, index raft.Index) {
	c.t.Helper()
	for _, id := range c.ids {
		if r := c.r(id); r != nil {
			if err := r.WaitApplied(ctx, index); err != nil {
				c.t.Fatalf("node %d: wait applied %d: %v", id, index, err)
			}
		}
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

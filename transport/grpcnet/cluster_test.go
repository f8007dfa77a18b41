package grpcnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/transport/grpcnet"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// This file runs Raft groups of real replicas over real gRPC on
// 127.0.0.1: three nodes, each a Transport hosting one replica of every
// group.

// Timing: real ticks, with an election timeout wide enough that a loaded
// race-detector run does not see spurious elections.
const (
	tickInterval  = 5 * time.Millisecond
	electionTick  = 20 // 100-200ms
	heartbeatTick = 2
)

// kv is a tiny state machine: commands are "key=value".
type kv struct {
	mu       sync.Mutex
	data     map[string]string
	restores int
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
		out[i] = e.Index
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
	s.restores++
	return nil
}

func (s *kv) state() (map[string]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data), s.restores
}

// member is one replica of one group on one node. Its stores survive a
// restart of the node; its state machine and replica do not.
type member struct {
	log   *replica.MemoryLogStore
	snaps replica.SnapshotStore
	file  *snap.Store // when the snapshots are files
	sm    *kv
	r     *replica.Replica
	ep    *grpcnet.Group
}

type node struct {
	id      raft.NodeID
	addr    string
	tr      *grpcnet.Transport // nil while the node is down
	faults  *grpcnet.Faults
	members map[grpcnet.GroupID]*member
}

type clusterOptions struct {
	groups []grpcnet.GroupID
	// fileSnapshots keeps snapshots in files (replica.FileSnapshotStore
	// on the test's temporary directory) instead of memory.
	fileSnapshots bool
	tweak         func(*replica.Config)
	transport     func(*grpcnet.Config)
}

type cluster struct {
	t      *testing.T
	opts   clusterOptions
	ticker *replica.Ticker
	logger *slog.Logger
	ids    []raft.NodeID
	peers  map[raft.NodeID]string

	mu    sync.Mutex // guards the nodes' tr and members' r and sm
	nodes map[raft.NodeID]*node
}

// newCluster starts nodes 1..n, each with a replica of every group in
// opts.groups (freshly bootstrapped), and stops everything at the end of
// the test.
func newCluster(t *testing.T, n int, opts clusterOptions) *cluster {
	t.Helper()
	if len(opts.groups) == 0 {
		opts.groups = []grpcnet.GroupID{1}
	}
	logger, _ := newLogger(t)
	c := &cluster{t: t, opts: opts, ticker: replica.NewTicker(tickInterval), logger: logger,
		peers: map[raft.NodeID]string{}, nodes: map[raft.NodeID]*node{}}
	t.Cleanup(c.close)
	lis := map[raft.NodeID]net.Listener{}
	for i := 1; i <= n; i++ {
		id := raft.NodeID(i)
		c.ids = append(c.ids, id)
		lis[id] = listen(t)
		c.peers[id] = lis[id].Addr().String()
	}
	dir := t.TempDir()
	for _, id := range c.ids {
		nd := &node{id: id, addr: c.peers[id], faults: grpcnet.NewFaults(uint64(id)), members: map[grpcnet.GroupID]*member{}}
		for _, g := range opts.groups {
			ms := raft.NewMemoryStorage()
			if err := raft.Bootstrap(ms, c.ids...); err != nil {
				t.Fatal(err)
			}
			m := &member{log: replica.NewMemoryLogStore(ms)}
			if opts.fileSnapshots {
				s, err := snap.Open(filepath.Join(dir, fmt.Sprintf("n%d-g%d", id, g)), snap.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				m.file, m.snaps = s, replica.NewFileSnapshotStore(s)
			} else {
				m.snaps = replica.NewMemorySnapshotStore()
			}
			nd.members[g] = m
		}
		c.nodes[id] = nd
		c.start(id, lis[id])
	}
	return c
}

// start starts node id's transport on lis (a new listener on its address
// if nil) and its replicas over their stores.
func (c *cluster) start(id raft.NodeID, lis net.Listener) {
	c.t.Helper()
	nd := c.nodes[id]
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", nd.addr); err != nil {
			c.t.Fatalf("node %d: listen again on %s: %v", id, nd.addr, err)
		}
	}
	cfg := fastConfig(id, c.logger)
	cfg.Peers = c.peers
	cfg.Snapshots.Logger = slog.New(slog.DiscardHandler)
	if c.opts.transport != nil {
		c.opts.transport(&cfg)
	}
	tr, err := grpcnet.New(cfg, lis)
	if err != nil {
		c.t.Fatal(err)
	}
	tr.SetFilter(nd.faults.Filter)
	c.mu.Lock()
	nd.tr = tr
	c.mu.Unlock()
	for _, g := range c.opts.groups {
		m := nd.members[g]
		ep, err := tr.Register(g, nil)
		if err != nil {
			c.t.Fatal(err)
		}
		sm := newKV()
		rc := replica.Config{
			ID:           id,
			Group:        replica.GroupID(g),
			Raft:         raft.Config{ElectionTick: electionTick, HeartbeatTick: heartbeatTick},
			Log:          m.log,
			Snapshots:    m.snaps,
			StateMachine: sm,
			Transport:    ep,
			Ticks:        c.ticker,
			Logger:       slog.New(slog.DiscardHandler),
		}
		if c.opts.tweak != nil {
			c.opts.tweak(&rc)
		}
		r, err := replica.New(rc)
		if err != nil {
			c.t.Fatalf("node %d group %d: %v", id, g, err)
		}
		ep.Attach(r)
		c.mu.Lock()
		m.r, m.sm, m.ep = r, sm, ep
		c.mu.Unlock()
	}
}

// stop stops node id's replicas (a crash that keeps their stores) and
// closes its transport (a process that exits).
func (c *cluster) stop(id raft.NodeID) {
	c.t.Helper()
	nd := c.nodes[id]
	for g, m := range nd.members {
		if err := m.r.Stop(); err != nil {
			c.t.Errorf("node %d group %d stopped with: %v", id, g, err)
		}
		c.mu.Lock()
		m.r = nil
		c.mu.Unlock()
	}
	nd.tr.Close()
	c.mu.Lock()
	nd.tr = nil
	c.mu.Unlock()
}

func (c *cluster) close() {
	for _, id := range c.ids {
		if c.nodes[id] != nil && c.nodes[id].tr != nil {
			c.stop(id)
		}
	}
	c.ticker.Stop()
}

func (c *cluster) r(id raft.NodeID, g grpcnet.GroupID) *replica.Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].members[g].r
}

func (c *cluster) sm(id raft.NodeID, g grpcnet.GroupID) *kv {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].members[g].sm
}

func (c *cluster) others(except ...raft.NodeID) []raft.NodeID {
	return slices.DeleteFunc(slices.Clone(c.ids), func(id raft.NodeID) bool { return slices.Contains(except, id) })
}

// isolate cuts node id off from every peer, both ways, on its own side.
func (c *cluster) isolate(id raft.NodeID) {
	f := c.nodes[id].faults
	f.Cut(grpcnet.AnyPeer, grpcnet.Outbound)
	f.Cut(grpcnet.AnyPeer, grpcnet.Inbound)
}

func (c *cluster) heal() {
	for _, nd := range c.nodes {
		nd.faults.Heal()
	}
}

// waitLeader waits until one of among leads group g and all of among
// follow it in its term, and returns it. among defaults to every node.
// It waits on the replicas' leader-change channels, never polls.
func (c *cluster) waitLeader(ctx context.Context, g grpcnet.GroupID, among ...raft.NodeID) raft.NodeID {
	c.t.Helper()
	return c.waitLeaderOtherThan(ctx, g, raft.None, among...)
}

// waitLeaderOtherThan is waitLeader for a leader other than not.
func (c *cluster) waitLeaderOtherThan(ctx context.Context, g grpcnet.GroupID, not raft.NodeID, among ...raft.NodeID) raft.NodeID {
	c.t.Helper()
	if len(among) == 0 {
		among = c.ids
	}
	for {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		states := map[raft.NodeID]replica.LeaderState{}
		for _, id := range among {
			st, changed := c.r(id, g).Leader()
			states[id] = st
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(changed)})
		}
		if lead := agreedLeader(states); lead != raft.None && lead != not {
			return lead
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			c.t.Fatalf("group %d: no agreed leader among %v: %v", g, among, states)
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

// propose proposes cmd to group g through its leader among the given
// nodes, retrying while leadership moves (a NotLeaderError or
// ErrNotCommitted means the command had no effect), and returns its index.
func (c *cluster) propose(ctx context.Context, g grpcnet.GroupID, cmd string, among ...raft.NodeID) raft.Index {
	c.t.Helper()
	for {
		lead := c.waitLeader(ctx, g, among...)
		p := c.r(lead, g).ProposeAsync(ctx, []byte(cmd))
		_, err := p.Wait(ctx)
		if errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrNotCommitted) {
			continue
		}
		if err != nil {
			c.t.Fatalf("group %d: propose %q: %v", g, cmd, err)
		}
		idx, _ := p.Index()
		return idx
	}
}

// waitApplied waits until the given nodes (default: all) applied index in
// group g.
func (c *cluster) waitApplied(ctx context.Context, g grpcnet.GroupID, index raft.Index, among ...raft.NodeID) {
	c.t.Helper()
	if len(among) == 0 {
		among = c.ids
	}
	for _, id := range among {
		if err := c.r(id, g).WaitApplied(ctx, index); err != nil {
			c.t.Fatalf("node %d group %d: wait applied %d: %v", id, g, index, err)
		}
	}
}

// checkSame checks that every node's state machine of group g holds the
// same data, and returns it.
func (c *cluster) checkSame(g grpcnet.GroupID) map[string]string {
	c.t.Helper()
	want, _ := c.sm(c.ids[0], g).state()
	for _, id := range c.ids[1:] {
		if got, _ := c.sm(id, g).state(); !maps.Equal(got, want) {
			c.t.Fatalf("group %d: node %d holds %d keys, node %d %d: %v vs %v", g, id, len(got), c.ids[0], len(want), got, want)
		}
	}
	return want
}

// Three nodes, each hosting a replica of two groups over one transport,
// elect a leader in each group and commit proposals in both.
func TestRaftGroupsOverGRPC(t *testing.T) {
	ctx := testContext(t)
	groups := []grpcnet.GroupID{1, 2}
	c := newCluster(t, 3, clusterOptions{groups: groups})
	var wg sync.WaitGroup
	last := map[grpcnet.GroupID]raft.Index{}
	var mu sync.Mutex
	for _, g := range groups {
		wg.Go(func() {
			var idx raft.Index
			for i := range 30 {
				idx = c.propose(ctx, g, fmt.Sprintf("g%d-k%d=v%d", g, i%7, i))
			}
			mu.Lock()
			last[g] = idx
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, g := range groups {
		c.waitApplied(ctx, g, last[g])
		if data := c.checkSame(g); len(data) != 7 || data[fmt.Sprintf("g%d-k1", g)] != "v29" {
			t.Fatalf("group %d: state %v", g, data)
		}
	}
	for _, id := range c.ids {
		st := c.nodes[id].tr.Stats()
		if st.MessagesReceived == 0 || st.DroppedUnknownGroup != 0 || st.MalformedFrames != 0 || st.RejectedStreams != 0 {
			t.Errorf("node %d: stats %+v", id, st)
		}
	}
}

// A follower cut off while the others commit enough to snapshot and
// compact their logs catches up by a snapshot streamed in chunks over the
// gRPC snapshot stream, from the leader's snapshot file to its own.
func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, clusterOptions{
		fileSnapshots: true,
		tweak: func(rc *replica.Config) {
			rc.SnapshotEvery = 20
			rc.CompactionMargin = 2
		},
		transport: func(tc *grpcnet.Config) {
			tc.Snapshots.ChunkSize = 4 << 10
			tc.Snapshots.RetransmitTimeout = 200 * time.Millisecond
			tc.Snapshots.StallTimeout = 5 * time.Second
		},
	})
	const g = grpcnet.GroupID(1)
	lead := c.waitLeader(ctx, g)
	lag := c.others(lead)[0]
	c.isolate(lag)
	value := strings.Repeat("x", 2<<10)
	var last raft.Index
	for i := range 25 {
		last = c.propose(ctx, g, fmt.Sprintf("k%02d=%s", i, value), c.others(lag)...)
	}
	lead = c.waitLeader(ctx, g, c.others(lag)...)
	latest, err := c.nodes[lead].members[g].file.Latest()
	if err != nil || latest.Index < 20 {
		t.Fatalf("leader %d holds snapshot %+v, %v; want one past index 20", lead, latest, err)
	}

	c.heal()
	c.waitApplied(ctx, g, last)
	data := c.checkSame(g)
	if len(data) != 25 {
		t.Fatalf("state holds %d keys, want 25", len(data))
	}
	if _, restores := c.sm(lag, g).state(); restores < 1 {
		t.Fatalf("the lagging node restored %d snapshots: it did not catch up by snapshot", restores)
	}
	xs := c.nodes[lag].members[g].ep.SnapshotStats()
	// (ReceivedOK is counted once the replica has queued the snapshot,
	// which may be after it applied it: not a thing to wait for.)
	if xs.ChunksAccepted < 10 {
		t.Fatalf("the lagging node's snapshot transfers %+v: want a snapshot received in at least 10 chunks", xs)
	}
	if st := c.nodes[lag].tr.Stats(); st.ChunksReceived < xs.ChunksAccepted {
		t.Fatalf("transport stats %+v: fewer chunks than accepted (%d)", st, xs.ChunksAccepted)
	}
	if _, err := c.nodes[lag].members[g].file.Latest(); err != nil {
		t.Fatalf("the lagging node holds no snapshot file: %v", err)
	}
}

// A leader that can receive but not send (a one-way partition, injected by
// the filter) is replaced; it learns of its successor through the link
// that still works and follows it; once healed, it catches up.
func TestOneWayPartition(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, clusterOptions{})
	const g = grpcnet.GroupID(1)
	first := c.propose(ctx, g, "a=1")
	c.waitApplied(ctx, g, first)
	old := c.waitLeader(ctx, g)
	oldTerm, _ := c.r(old, g).Leader()

	c.nodes[old].faults.Cut(grpcnet.AnyPeer, grpcnet.Outbound)
	// Everyone, the old leader included, agrees on a new leader: the old
	// one hears it over its inbound links.
	lead := c.waitLeaderOtherThan(ctx, g, old)
	if st, _ := c.r(old, g).Leader(); st.Term <= oldTerm.Term || st.Lead != lead {
		t.Fatalf("old leader's view %+v, want leader %d in a term after %d", st, lead, oldTerm.Term)
	}
	idx := c.propose(ctx, g, "b=2", c.others(old)...)
	c.waitApplied(ctx, g, idx, c.others(old)...)
	if st := c.nodes[old].tr.Stats(); st.Filtered == 0 || st.MessagesReceived == 0 {
		t.Fatalf("old leader's stats %+v: want outbound traffic filtered and inbound delivered", st)
	}

	c.heal()
	idx = c.propose(ctx, g, "c=3")
	c.waitApplied(ctx, g, idx)
	if data := c.checkSame(g); !maps.Equal(data, map[string]string{"a": "1", "b": "2", "c": "3"}) {
		t.Fatalf("state %v", data)
	}
}

// A node whose process exits (transport closed, replicas stopped) and
// comes back on the same address rejoins every group: its peers reconnect
// to it, it catches up, and the groups need it again for a quorum.
func TestPeerRestart(t *testing.T) {
	ctx := testContext(t)
	groups := []grpcnet.GroupID{1, 2}
	c := newCluster(t, 3, clusterOptions{groups: groups})
	for _, g := range groups {
		c.waitApplied(ctx, g, c.propose(ctx, g, "before=1"))
	}
	const down = raft.NodeID(2)
	c.stop(down)
	last := map[grpcnet.GroupID]raft.Index{}
	for _, g := range groups {
		for i := range 10 {
			last[g] = c.propose(ctx, g, fmt.Sprintf("while-down-%d=%d", i, i), c.others(down)...)
		}
	}

	c.start(down, nil)
	for _, g := range groups {
		c.waitApplied(ctx, g, last[g])
	}
	// The leaders kept sending to the stopped node: their streams broke.
	var failures uint64
	for _, id := range c.others(down) {
		failures += c.nodes[id].tr.Stats().ConnectFailures
	}
	if failures == 0 {
		t.Fatal("no connection to the stopped node failed")
	}
	// Now cut node 3 off: every commit needs the restarted node, both
	// ways.
	c.isolate(3)
	for _, g := range groups {
		idx := c.propose(ctx, g, "after=1", 1, down)
		c.waitApplied(ctx, g, idx, 1, down)
	}
	c.heal()
	for _, g := range groups {
		c.waitApplied(ctx, g, c.propose(ctx, g, "healed=1"))
		if data := c.checkSame(g); len(data) != 13 {
			t.Fatalf("group %d: state %v", g, data)
		}
	}
}

// What the transport and the replica promise each other, checked by the
// compiler.
var (
	_ replica.Transport = (*grpcnet.Group)(nil)
	_ grpcnet.Handler   = (*replica.Replica)(nil)
	_ snapxfer.Handler  = (*replica.Replica)(nil)
)

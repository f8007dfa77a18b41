package chaos

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// clusterTestArgs are the server flags of the tests' clusters: short
// ticks, so that elections take a few hundred milliseconds.
var clusterTestArgs = []string{"--tick", "25ms"}

var builtBinary struct {
	once sync.Once
	path string
	err  error
}

// clusterBinary returns the cairn binary for the tests, built once per
// test binary run, with -race under -chaos.race. It goes to a directory
// under os.TempDir kept across runs, one per user, module root and
// flavour, so that nothing piles up and go build only relinks what
// changed. It skips the test under -short.
func clusterBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the cairn binary and runs server processes")
	}
	builtBinary.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		root, err := moduleRoot(ctx)
		if err != nil {
			builtBinary.err = err
			return
		}
		flavour := "norace"
		if *flagRace {
			flavour = "race"
		}
		dir := buildDir(root, flavour)
		start := time.Now()
		builtBinary.path, builtBinary.err = BuildBinary(ctx, dir, *flagRace)
		if builtBinary.err == nil {
			fmt.Fprintf(os.Stderr, "chaos tests: built %s in %v\n", builtBinary.path, time.Since(start).Round(time.Millisecond))
		}
	})
	if builtBinary.err != nil {
		t.Fatalf("building the cairn binary: %v", builtBinary.err)
	}
	return builtBinary.path
}

// buildDir is where the tests keep a flavour of the binary: under
// os.TempDir, one directory per user and module root, kept across runs.
func buildDir(root, flavour string) string {
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(os.TempDir(), fmt.Sprintf("cairn-chaos-%d-%x", os.Getuid(), sum[:6]), flavour)
}

// controlBinary builds the cairn binary with a control's build tag (a
// deliberately broken server; kv/control.go).
func controlBinary(t *testing.T, tag string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the cairn binary and runs server processes")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := BuildBinary(ctx, buildDir(root, tag), false, tag)
	if err != nil {
		t.Fatalf("building the cairn binary with %s: %v", tag, err)
	}
	return bin
}

// ctWriter writes a logger's lines to the test log.
type ctWriter struct{ t *testing.T }

func (w ctWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startTestCluster starts a cluster for a test and closes it at the end
// (checking that no process survives and no goroutine leaks), unless the
// test closes it first.
func startTestCluster(ctx context.Context, t *testing.T, nodes int) *Cluster {
	t.Helper()
	bin := clusterBinary(t)
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs last
	start := time.Now()
	c, err := StartCluster(ctx, ClusterConfig{
		Binary: bin,
		Dir:    t.TempDir(),
		Nodes:  nodes,
		Args:   clusterTestArgs,
		Logger: slog.New(slog.NewTextHandler(ctWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster of %d started in %v", nodes, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, id := range c.IDs() {
				t.Logf("node %d's log ends with:\n%s", id, tailFile(c.LogPath(id), 40))
			}
		}
	})
	return c
}

// ctPoll calls cond every 50ms until it returns nil, and fails the test
// with cond's last error if ctx ends first.
func ctPoll(ctx context.Context, t *testing.T, what string, cond func(context.Context) error) {
	t.Helper()
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ctGroup returns the default group's status in st.
func ctGroup(st *adminpb.StatusResponse) *adminpb.GroupStatus {
	for _, g := range st.GetGroups() {
		if g.GetGroupId() == uint64(server.DefaultGroup) {
			return g
		}
	}
	return nil
}

// ctStatus returns node id's default group status.
func ctStatus(ctx context.Context, c *Cluster, id raft.NodeID) (*adminpb.GroupStatus, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.Status(sctx, id)
	if err != nil {
		return nil, err
	}
	g := ctGroup(st)
	if g == nil {
		return nil, fmt.Errorf("node %d reports no group %d", id, server.DefaultGroup)
	}
	return g, nil
}

// ctLeader waits for a leader other than the excluded nodes, and returns
// it with its term.
func ctLeader(ctx context.Context, t *testing.T, c *Cluster, exclude ...raft.NodeID) (raft.NodeID, uint64) {
	t.Helper()
	var (
		lead raft.NodeID
		term uint64
	)
	ctPoll(ctx, t, "waiting for a leader", func(ctx context.Context) error {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		id, err := c.Leader(lctx)
		if err != nil {
			return err
		}
		if slices.Contains(exclude, id) {
			return fmt.Errorf("the leader is still node %d", id)
		}
		g, err := ctStatus(ctx, c, id)
		if err != nil {
			return err
		}
		lead, term = id, g.GetTerm()
		return nil
	})
	return lead, term
}

// ctCaughtUp waits until node id has applied the leader's commit index
// (the leader's at the time of the call).
func ctCaughtUp(ctx context.Context, t *testing.T, c *Cluster, id raft.NodeID) {
	t.Helper()
	lead, _ := ctLeader(ctx, t, c)
	lg, err := ctStatus(ctx, c, lead)
	if err != nil {
		t.Fatal(err)
	}
	ctPoll(ctx, t, fmt.Sprintf("node %d catching up to index %d", id, lg.GetCommitIndex()), func(ctx context.Context) error {
		g, err := ctStatus(ctx, c, id)
		if err != nil {
			return err
		}
		if g.GetAppliedIndex() < lg.GetCommitIndex() {
			return fmt.Errorf("applied %d", g.GetAppliedIndex())
		}
		return nil
	})
}

func newTestClient(t *testing.T, endpoints []string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: endpoints, AttemptTimeout: time.Second, RequestTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func ctPut(ctx context.Context, t *testing.T, cl *client.Client, key, value string) {
	t.Helper()
	if _, err := cl.Put(ctx, []byte(key), []byte(value)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func ctGet(ctx context.Context, t *testing.T, cl *client.Client, key, want string) {
	t.Helper()
	got, err := cl.Get(ctx, []byte(key))
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if string(got.Value) != want {
		t.Fatalf("get %s = %+v, want %q", key, got, want)
	}
}

func others(c *Cluster, id raft.NodeID) []raft.NodeID {
	return slices.DeleteFunc(c.IDs(), func(o raft.NodeID) bool { return o == id })
}

// TestCluster runs a 3-node cluster through every fault the Cluster
// injects: kill and restart, pause and resume, a node cut off both ways,
// a crash the cluster did not cause; and checks that Close leaves no
// process behind.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := startTestCluster(ctx, t, 3)
	ids := c.IDs()
	if !slices.Equal(ids, []raft.NodeID{1, 2, 3}) || len(c.ClientAddrs()) != 3 || c.ClientAddrs()[1] != c.ClientAddr(2) {
		t.Fatalf("ids %v, client addresses %v", ids, c.ClientAddrs())
	}
	pids := map[int]bool{}
	notePIDs := func() {
		for _, id := range ids {
			if pid := c.PID(id); pid != 0 {
				pids[pid] = true
			}
		}
	}
	notePIDs()
	for _, id := range ids {
		if s := c.State(id); s != Running {
			t.Fatalf("node %d is %v", id, s)
		}
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.GetFaultInjection() || st.GetNodeId() != uint64(id) || st.GetClientAddress() != c.ClientAddr(id) {
			t.Fatalf("node %d's status: %v", id, st)
		}
	}

	lead, term := ctLeader(ctx, t, c)
	t.Logf("leader: node %d, term %d", lead, term)
	cl := newTestClient(t, c.ClientAddrs())
	ctPut(ctx, t, cl, "k1", "v1")
	ctGet(ctx, t, cl, "k1", "v1")

	// Kill the leader: another takes over.
	if err := c.Kill(lead); err != nil {
		t.Fatal(err)
	}
	if s, pid := c.State(lead), c.PID(lead); s != Stopped || pid != 0 {
		t.Fatalf("killed node %d: %v, pid %d", lead, s, pid)
	}
	if err := c.Kill(lead); err != nil {
		t.Fatalf("killing a stopped node: %v", err)
	}
	if err := c.Pause(lead); err == nil {
		t.Fatal("pausing a stopped node succeeded")
	}
	lead2, _ := ctLeader(ctx, t, c, lead)
	t.Logf("node %d killed; leader: node %d", lead, lead2)
	ctPut(ctx, t, cl, "k2", "v2")
	ctGet(ctx, t, cl, "k1", "v1")

	// Start it again: it catches up.
	if err := c.Start(ctx, lead); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, lead); err == nil {
		t.Fatal("starting a running node succeeded")
	}
	notePIDs()
	ctCaughtUp(ctx, t, c, lead)

	// Pause a follower: the others go on; Leader does not wait on it.
	lead3, _ := ctLeader(ctx, t, c)
	paused := others(c, lead3)[0]
	if err := c.Pause(paused); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(paused); err != nil {
		t.Fatalf("pausing a paused node: %v", err)
	}
	if s := c.State(paused); s != Paused {
		t.Fatalf("paused node %d is %v", paused, s)
	}
	start := time.Now()
	if _, err := c.Leader(ctx); err != nil {
		t.Logf("Leader with node %d paused: %v", paused, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Leader took %v with node %d paused", d, paused)
	}
	ctPut(ctx, t, cl, "k3", "v3")
	if err := c.Resume(paused); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(paused); err != nil {
		t.Fatalf("resuming a running node: %v", err)
	}
	if s := c.State(paused); s != Running {
		t.Fatalf("resumed node %d is %v", paused, s)
	}
	ctCaughtUp(ctx, t, c, paused)

	// Cut the leader off, both ways: the other two elect a leader of a
	// newer term and take writes; the cut node is not leader of a term
	// that new, and steps down (check-quorum).
	cut, cutTerm := ctLeader(ctx, t, c)
	for _, o := range others(c, cut) {
		c.SetLink(cut, o, LinkDropped)
		c.SetLink(o, cut, LinkDropped)
	}
	for _, o := range others(c, cut) {
		if c.Link(cut, o) != LinkDropped || c.Link(o, cut) != LinkDropped {
			t.Fatalf("links of %d and %d: %v, %v", cut, o, c.Link(cut, o), c.Link(o, cut))
		}
	}
	if c.Link(cut, cut) != LinkUp {
		t.Fatalf("a node's link to itself is %v", c.Link(cut, cut))
	}
	newLead, newTerm := ctLeader(ctx, t, c, cut)
	if newTerm <= cutTerm {
		t.Fatalf("new leader %d has term %d; the cut leader %d had %d", newLead, newTerm, cut, cutTerm)
	}
	t.Logf("node %d (term %d) cut off; leader: node %d, term %d", cut, cutTerm, newLead, newTerm)
	ctPut(ctx, t, newTestClient(t, []string{c.ClientAddr(others(c, cut)[0]), c.ClientAddr(others(c, cut)[1])}), "k4", "v4")
	ctPoll(ctx, t, fmt.Sprintf("cut node %d stepping down", cut), func(ctx context.Context) error {
		g, err := ctStatus(ctx, c, cut)
		if err != nil {
			return err
		}
		if g.GetRole() == adminpb.Role_LEADER && g.GetTerm() >= newTerm {
			t.Fatalf("cut node %d is leader of term %d (the new leader's is %d)", cut, g.GetTerm(), newTerm)
		}
		if g.GetRole() == adminpb.Role_LEADER {
			return fmt.Errorf("still leader of term %d", g.GetTerm())
		}
		return nil
	})

	// Heal: it catches up.
	c.HealNetwork()
	for _, from := range ids {
		for _, to := range ids {
			if m := c.Link(from, to); m != LinkUp {
				t.Fatalf("after HealNetwork, link %d->%d is %v", from, to, m)
			}
		}
	}
	ctPut(ctx, t, cl, "k5", "v5")
	ctCaughtUp(ctx, t, c, cut)
	ctGet(ctx, t, cl, "k4", "v4")

	if errs := c.Unexpected(); len(errs) > 0 {
		t.Fatalf("unexpected exits: %v", errs)
	}
	if found := c.ScanLogs(); len(found) > 0 {
		t.Fatalf("the logs hold:\n%s", strings.Join(found, "\n"))
	}

	// A crash the cluster did not cause is reported.
	victim := ids[0]
	if err := syscall.Kill(c.PID(victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctPoll(ctx, t, "noticing the crash", func(context.Context) error {
		if s := c.State(victim); s != Stopped {
			return fmt.Errorf("node %d is %v", victim, s)
		}
		return nil
	})
	errs := c.Unexpected()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), fmt.Sprintf("node %d ", victim)) ||
		!strings.Contains(errs[0].Error(), c.LogPath(victim)) || !strings.Contains(errs[0].Error(), "signal: killed") {
		t.Fatalf("after killing node %d behind the cluster's back, Unexpected() = %v", victim, errs)
	}
	t.Logf("reported: %.200s...", errs[0])

	// Close kills everything, a paused node too.
	if err := c.Pause(ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
		t.Logf("client close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d after Close: kill -0 says %v, want ESRCH", pid, err)
		}
	}
	for _, id := range ids {
		if s := c.State(id); s != Stopped {
			t.Errorf("node %d is %v after Close", id, s)
		}
	}
	if len(c.Unexpected()) != 1 {
		t.Fatalf("Close caused unexpected exits: %v", c.Unexpected())
	}
	if err := c.Start(ctx, ids[0]); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestClusterOneWayCut blackholes only the leader's links to its
// followers: they stop hearing it and elect a new leader (pre-vote and
// check-quorum are on), which takes writes, although the old leader still
// hears them.
func TestClusterOneWayCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := startTestCluster(ctx, t, 3)
	old, oldTerm := ctLeader(ctx, t, c)
	cl := newTestClient(t, c.ClientAddrs())
	ctPut(ctx, t, cl, "before", "1")

	for _, f := range others(c, old) {
		c.SetLink(old, f, LinkBlackholed)
	}
	lead, term := ctLeader(ctx, t, c, old)
	if term <= oldTerm {
		t.Fatalf("new leader %d has term %d, the old one (%d) had %d", lead, term, old, oldTerm)
	}
	t.Logf("node %d (term %d) cannot send; leader: node %d, term %d", old, oldTerm, lead, term)
	res, err := cl.Put(ctx, []byte("after"), []byte("2"))
	if err != nil {
		t.Fatalf("put with node %d's sends blackholed: %v", old, err)
	}
	if raft.NodeID(res.Header.Node) == old {
		t.Fatalf("a put was answered by node %d, which cannot reach its peers", old)
	}
	// The old leader hears the new one (that direction is up) and
	// follows it.
	ctPoll(ctx, t, fmt.Sprintf("node %d following", old), func(ctx context.Context) error {
		g, err := ctStatus(ctx, c, old)
		if err != nil {
			return err
		}
		if g.GetRole() == adminpb.Role_LEADER {
			return fmt.Errorf("still leader of term %d", g.GetTerm())
		}
		return nil
	})

	c.HealNetwork()
	ctPut(ctx, t, cl, "healed", "3")
	ctCaughtUp(ctx, t, c, old)
	if errs := c.Unexpected(); len(errs) > 0 {
		t.Fatalf("unexpected exits: %v", errs)
	}
	if found := c.ScanLogs(); len(found) > 0 {
		t.Fatalf("the logs hold:\n%s", strings.Join(found, "\n"))
	}
}

func TestClusterConfigErrors(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx := t.Context()
	if _, err := StartCluster(ctx, ClusterConfig{Dir: t.TempDir()}); err == nil {
		t.Fatal("no binary: no error")
	}
	if _, err := StartCluster(ctx, ClusterConfig{Binary: "cairn"}); err == nil {
		t.Fatal("no dir: no error")
	}
	// A binary that exits at once: the error names the node and quotes
	// its log, and nothing is left running.
	c, err := StartCluster(ctx, ClusterConfig{Binary: "/bin/false", Dir: t.TempDir(), Nodes: 1})
	if err == nil {
		c.Close()
		t.Fatal("a cluster of /bin/false started")
	}
	if !strings.Contains(err.Error(), "node 1") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("error: %v", err)
	}
}

func TestScanLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "time=... level=INFO msg=line%d err=\"x panic: y\"\n", i)
	}
	b.WriteString("panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n")
	for i := range 30 {
		fmt.Fprintf(&b, "after%d\n", i)
	}
	b.WriteString("==================\nWARNING: DATA RACE\nRead at 0x00c by goroutine 7:\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := scanLog(path, "node 1")
	if len(got) != 2 {
		t.Fatalf("findings: %q", got)
	}
	if !strings.Contains(got[0], "log:31: panic: boom") || !strings.Contains(got[0], "line29") || !strings.Contains(got[0], "main.main()") {
		t.Fatalf("first finding: %s", got[0])
	}
	if !strings.Contains(got[1], "WARNING: DATA RACE") || !strings.Contains(got[1], "Read at") {
		t.Fatalf("second finding: %s", got[1])
	}
	if scanLog(filepath.Join(dir, "missing"), "node 2") != nil {
		t.Fatal("a missing log has findings")
	}
}

package clustertest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

var (
	flagSeed     = flag.Uint64("lin.seed", 0, "seed of the runs (default: from the clock)")
	flagDuration = flag.Duration("lin.duration", 0, "how long each fault run drives the cluster (default: each test's own few seconds)")
	flagOut      = flag.String("lin.out", "", "directory to keep every run's history and visualization in (default: a temporary directory, kept only on failure)")
)

// Every test stops what it starts, late client copies included.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkTimeout bounds each porcupine check. Runs are sized so that a
// check takes well under a second; running out of time is a failure.
const checkTimeout = 60 * time.Second

// harness is one run: a cluster, a recorder, a seed, and the test's
// goroutine's random source (the nemesis's; workers have their own).
type harness struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	c    *testcluster.Cluster
	rec  *lincheck.Recorder
	dir  string

	nextClient atomic.Int32
	clientFlt  []*clientFaults // quiesced before the final reads
}

// newHarness starts a cluster with opts and waits for its first leader.
func newHarness(t *testing.T, opts testcluster.Options) *harness {
	t.Helper()
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -run '^%s$' -lin.seed=%d)", seed, t.Name(), seed)
	h := &harness{
		t:    t,
		seed: seed,
		rng:  rand.New(rand.NewPCG(seed, 0)),
		rec:  lincheck.NewRecorder(),
	}
	h.dir = outDir(t, seed)
	h.c = testcluster.Start(t, opts)
	h.c.WaitLeader(h.ctx(30*time.Second), server.DefaultGroup)
	return h
}

// outDir is where the run's files go: under -lin.out, or a temporary
// directory removed at cleanup unless the test failed.
func outDir(t *testing.T, seed uint64) string {
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	if *flagOut != "" {
		dir := filepath.Join(*flagOut, fmt.Sprintf("%s-%d", name, seed))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "cairn-lincheck-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run files kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// ctx is a context for one step of the test, ended at the test's end.
func (h *harness) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(h.t.Context(), d)
	h.t.Cleanup(cancel)
	return ctx
}

// runDuration is how long a fault run lasts: -lin.duration, or def.
func runDuration(def time.Duration) time.Duration {
	if *flagDuration > 0 {
		return *flagDuration
	}
	return def
}

// sleep waits d, or until the test ends.
func (h *harness) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.t.Context().Done():
	}
}

// between draws a duration uniformly from [lo, hi].
func (h *harness) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(h.rng.Int64N(int64(hi-lo)+1))
}

// leader returns the current leader, or raft.None if there is none
// within d.
func (h *harness) leader(d time.Duration) raft.NodeID {
	ctx, cancel := context.WithTimeout(h.t.Context(), d)
	defer cancel()
	id, err := h.c.Leader(ctx, server.DefaultGroup)
	if err != nil {
		return raft.None
	}
	return id
}

// client returns a new client of the whole cluster, tuned for faults:
// attempts give up on a silent node quickly, calls retry for a while.
func (h *harness) client(configure ...func(*client.Config)) *client.Client {
	return h.c.Client(append([]func(*client.Config){func(cfg *client.Config) {
		cfg.AttemptTimeout = time.Second
		cfg.RequestTimeout = 8 * time.Second
		cfg.Retry.MaxBackoff = 200 * time.Millisecond
		cfg.Retry.JitterSeed = h.seed
	}}, configure...)...)
}

// newKV returns a recording worker handle on cl with a fresh client id.
func (h *harness) newKV(cl *client.Client) *lincheck.KV {
	return lincheck.NewKV(h.rec, cl, int(h.nextClient.Add(1)-1))
}

// workload is what the workers do: each worker runs the Workload, on
// Clients client.Clients shared by Workers goroutines each.
type workload struct {
	lincheck.Workload
	// Clients is how many client.Clients (sessions) run; Workers how
	// many goroutines share each.
	Clients, Workers int
	// Configure adjusts each client's config (after the harness's).
	Configure func(*client.Config)
}

func defaultWorkload() workload {
	return workload{Workload: lincheck.DefaultWorkload(), Clients: 3, Workers: 3}
}

// running is a workload in progress.
type running struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

// start starts wl's workers; they run until end is called.
func (h *harness) start(wl workload) *running {
	r := &running{stop: make(chan struct{})}
	var configure []func(*client.Config)
	if wl.Configure != nil {
		configure = append(configure, wl.Configure)
	}
	for range wl.Clients {
		cl := h.client(configure...)
		for range wl.Workers {
			kv := h.newKV(cl)
			rng := rand.New(rand.NewPCG(h.seed, uint64(kv.ID())+1))
			r.wg.Go(func() { wl.Run(r.stop, kv, rng) })
		}
	}
	return r
}

// end stops the workers and waits for their last operations to end.
func (r *running) end() {
	close(r.stop)
	r.wg.Wait()
}

// finish heals the cluster, restarts stopped nodes, reads every key
// (recorded: the final reads pin down which open-ended writes took
// effect), and checks the history: linearizable, appends exactly once and
// in order, every replica converged. It returns the final values.
func (h *harness) finish(wl workload) map[string]string {
	h.t.Helper()
	final, cl := h.settle(wl)
	res, appendsErr := h.verify(final, wl.Logs)
	if err := res.Err(); err != nil {
		h.t.Errorf("seed %d: %v", h.seed, err)
	}
	if appendsErr != nil {
		h.t.Errorf("seed %d: appends:\n%v", h.seed, appendsErr)
	}
	h.checkConverged(h.ctx(60*time.Second), cl, slices.Concat(wl.Registers, wl.Logs), final)
	return final
}

// settle heals the cluster, restarts stopped nodes and reads every key of
// wl (recorded). It returns the values read (absent keys left out) and
// the client that read them.
func (h *harness) settle(wl workload) (map[string]string, *client.Client) {
	h.t.Helper()
	for _, f := range h.clientFlt {
		f.quiesce()
	}
	h.c.Heal()
	for _, id := range h.c.IDs() {
		if h.c.Node(id) == nil {
			h.c.Restart(id)
		}
	}
	ctx := h.ctx(60 * time.Second)
	h.c.WaitLeader(ctx, server.DefaultGroup)
	cl := h.client()
	final, err := lincheck.ReadFinal(ctx, h.newKV(cl), slices.Concat(wl.Registers, wl.Logs), 6)
	if err != nil {
		h.t.Fatalf("after healing: %v (seed %d)", err, h.seed)
	}
	return final, cl
}

// check checks the recorded history and fails the test if it is not
// linearizable (or the check undecided) or an append of logs was lost,
// duplicated or misplaced.
func (h *harness) check(final map[string]string, logs []string) {
	h.t.Helper()
	res, appendsErr := h.verify(final, logs)
	if err := res.Err(); err != nil {
		h.t.Errorf("seed %d: %v", h.seed, err)
	}
	if appendsErr != nil {
		h.t.Errorf("seed %d: appends:\n%v", h.seed, appendsErr)
	}
}

// verify checks the recorded history, logs what it held, and keeps the
// history file if it fails (or -lin.out asks).
func (h *harness) verify(final map[string]string, logs []string) (lincheck.Result, error) {
	h.t.Helper()
	hist := h.rec.History()
	res := lincheck.Check(hist, lincheck.Options{Timeout: checkTimeout, VisualizationDir: h.dir})
	h.t.Logf("history: %s", lincheck.Summary(hist))
	h.t.Logf("check: %v", res)
	finalLogs := map[string]string{}
	for _, k := range logs {
		finalLogs[k] = final[k]
	}
	appendsErr := lincheck.CheckAppends(hist, finalLogs)
	if *flagOut != "" || res.Err() != nil || appendsErr != nil {
		path := filepath.Join(h.dir, "history.jsonl")
		if err := lincheck.WriteHistoryFile(path, hist); err != nil {
			h.t.Errorf("writing the history: %v", err)
		}
		h.t.Logf("history file: %s", path)
	}
	return res, appendsErr
}

// checkConverged waits for every node to apply everything the final
// reads saw, and compares their state machines' keys with the final
// values (a key not in final was absent).
func (h *harness) checkConverged(ctx context.Context, cl *client.Client, keys []string, final map[string]string) {
	h.t.Helper()
	// A write through the log, so that its index covers every final read.
	res, err := cl.Put(ctx, []byte("converged"), []byte("yes"))
	if err != nil {
		h.t.Fatalf("marker write: %v", err)
	}
	for _, id := range h.c.IDs() {
		h.c.WaitApplied(ctx, id, server.DefaultGroup, raft.Index(res.Header.AppliedIndex))
		sm := h.c.Node(id).StateMachine(server.DefaultGroup)
		for _, key := range keys {
			want, present := final[key]
			got, err := sm.Get([]byte(key))
			if err != nil || got.GetFound() != present || string(got.GetKv().GetValue()) != want {
				h.t.Errorf("seed %d: node %d has %q = %v (%v); the cluster read %q (present %v)",
					h.seed, id, key, got.GetKv(), err, want, present)
			}
		}
	}
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// Config configures one chaos run: one cluster, one schedule.
type Config struct {
	// Seed draws the schedule, the workers' choices and the clients'
	// jitter. Required (non-zero).
	Seed uint64
	// Duration is how long the workload runs under the schedule's faults.
	// Required.
	Duration time.Duration
	// Nodes is the cluster's size; 0 draws it from the seed: 5 for one
	// seed in four, else 3.
	Nodes int
	// Faults are the faults the schedule draws from. Default: AllFaults.
	Faults []Fault
	// ServerArgs are extra `cairn server` flags for every node. nil draws
	// them from the seed: for one seed in two, --snapshot-every 300, so
	// that logs are compacted often and nodes that were down or cut off
	// catch up by snapshot under the faults.
	ServerArgs []string
	// Binary is the cairn binary to run (BuildBinary). Required.
	Binary string
	// Dir is where the run keeps its files: the nodes' data and logs, the
	// schedule, the histories. Required.
	Dir string
	// Logger receives progress lines. Default: discard.
	Logger *slog.Logger

	// Workload is what each register/append worker does. Zero:
	// lincheck.DefaultWorkload() on 6 registers and 3 append keys.
	Workload lincheck.Workload
	// Clients client.Clients (sessions) run Workers register/append
	// workers each. Default 3 and 3.
	Clients, Workers int
	// Bank is the bank workload and BankWorkers how many workers run it
	// (on a client of their own). Zero: 5 accounts of 100, 3 workers.
	Bank        Bank
	BankWorkers int
	// CheckTimeout bounds the linearizability check. Default 60s.
	CheckTimeout time.Duration
}

func (cfg Config) withDefaults() Config {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
		if cfg.Seed%4 == 0 {
			cfg.Nodes = 5
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ServerArgs == nil && cfg.Seed%2 == 1 {
		cfg.ServerArgs = []string{"--snapshot-every", "300"}
	}
	if cfg.Workload.Registers == nil {
		// A few hot keys: with nine workers, about one and a half per
		// register, so that operations on a key often overlap.
		cfg.Workload = lincheck.DefaultWorkload()
		cfg.Workload.Registers = lincheck.Keys("r", 6)
		cfg.Workload.Logs = lincheck.Keys("a", 3)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 3
	}
	if cfg.Workers == 0 {
		cfg.Workers = 3
	}
	if cfg.Bank.Accounts == 0 {
		cfg.Bank = Bank{Prefix: "bank/", Accounts: 5, Initial: 100, OpTimeout: 6 * time.Second}
	}
	if cfg.BankWorkers == 0 {
		cfg.BankWorkers = 3
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 60 * time.Second
	}
	return cfg
}

// Report is what a run did and found.
type Report struct {
	Seed       uint64
	Nodes      int
	ServerArgs []string
	Schedule   Schedule
	// Events are what the nemesis did, with their times; Injected counts
	// the faults injected by kind.
	Events   []Event
	Injected map[Fault]int
	// LeaderMisses counts the leader-targeted steps that found no leader
	// (an election outlasting the lookup) and hit a node drawn from the
	// seed instead.
	LeaderMisses int
	// Ops is the number of register and append operations recorded
	// (History counts them by kind and outcome); Bank counts the bank
	// workload's.
	Ops     int
	History string
	Bank    string
	// Check is the linearizability checker's result.
	Check lincheck.Result
	// Violations lists everything the run found wrong; empty when it
	// passed.
	Violations []string
	// Dir holds the run's files: schedule.txt, events.txt,
	// history.jsonl, bank.jsonl, the nodes' logs, and a visualization of
	// any non-linearizable key.
	Dir     string
	Elapsed time.Duration
}

// Failed reports whether the run found a violation.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d nodes, server flags %q, %d faults injected (%s; %d leader lookups missed), %v\n",
		r.Seed, r.Nodes, r.ServerArgs, total(r.Injected), faultCounts(r.Injected), r.LeaderMisses, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  register/append: %s\n  check: %v\n  bank: %s\n", r.History, r.Check, r.Bank)
	if r.Failed() {
		fmt.Fprintf(&b, "  %d violations:\n", len(r.Violations))
		for _, v := range r.Violations {
			lines := strings.Split(v, "\n")
			if len(lines) > maxViolationLines {
				lines = append(lines[:maxViolationLines], fmt.Sprintf("... %d more lines (see the run files)", len(lines)-maxViolationLines))
			}
			fmt.Fprintf(&b, "  - %s\n", strings.Join(lines, "\n    "))
		}
		fmt.Fprintf(&b, "  run files: %s (schedule.txt, events.txt, history.jsonl, bank.jsonl, cluster/n*/log)\n", r.Dir)
		fmt.Fprintf(&b, "  history file: %s\n", filepath.Join(r.Dir, "history.jsonl"))
		if r.Check.Visualization != "" {
			fmt.Fprintf(&b, "  visualization: %s\n", r.Check.Visualization)
		}
	}
	return b.String()
}

// maxViolationLines is how much of one violation a Report prints.
const maxViolationLines = 30

func total(m map[Fault]int) int {
	n := 0
	for _, k := range m {
		n += k
	}
	return n
}

func faultCounts(m map[Fault]int) string {
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%v %d", f, m[f]))
	}
	return strings.Join(parts, ", ")
}

// Bounds of a run's phases after the faults.
const (
	startLimit    = 60 * time.Second // the cluster's start and first leader
	recoveryLimit = 30 * time.Second // a write must succeed this soon after healing
	healLimit     = 90 * time.Second // healing every fault (restarts included)
	finalLimit    = 60 * time.Second // the final reads
	convergeLimit = 60 * time.Second // every node applying and holding the final state
)

// Run starts a cluster of cfg.Binary processes, drives the register,
// append and bank workloads through the public client while the nemesis
// carries out the seed's schedule, heals everything, and checks: the
// history is linearizable (porcupine), every acknowledged append is
// present exactly once and in order, the bank reconciles (Bank.Check),
// the cluster serves writes again within recoveryLimit of healing, every
// node converges on the same values, and no process died on its own or
// logged a panic or a data race. Violations are in the Report; an error
// means the run itself could not be carried out.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 || cfg.Duration <= 0 || cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("chaos: Config needs Seed, Duration, Binary and Dir")
	}
	if cfg.Nodes < 3 {
		return nil, fmt.Errorf("chaos: %d nodes: a run needs at least 3 (a majority that survives a fault)", cfg.Nodes)
	}
	if entries, err := os.ReadDir(cfg.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("chaos: run directory %s is not empty (an earlier run's data and logs would mix with this one's)", cfg.Dir)
	}
	began := time.Now()
	sched := NewSchedule(cfg.Seed, cfg.Nodes, cfg.Duration, cfg.Faults...)
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, ServerArgs: cfg.ServerArgs, Schedule: sched, Dir: cfg.Dir}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "schedule.txt"), []byte(sched.String()), 0o644); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	log := cfg.Logger.With("seed", cfg.Seed)
	logf := func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
	logf("%s", strings.TrimSpace(sched.String()))

	sctx, cancel := context.WithTimeout(ctx, startLimit)
	defer cancel()
	c, err := StartCluster(sctx, ClusterConfig{
		Binary:    cfg.Binary,
		Dir:       filepath.Join(cfg.Dir, "cluster"),
		Nodes:     cfg.Nodes,
		ClusterID: cfg.Seed,
		Args:      cfg.ServerArgs,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: starting the cluster: %w", err)
	}
	defer c.Close()
	if _, err := waitLeader(sctx, c); err != nil {
		return nil, fmt.Errorf("chaos: no first leader: %w", err)
	}

	r := &run{cfg: cfg, c: c, rec: lincheck.NewRecorder(), bankLog: NewBankLog(), logf: logf}
	defer r.closeClients()
	bankClient, err := r.newClient(c.ClientAddrs())
	if err != nil {
		return nil, err
	}
	if err := cfg.Bank.Setup(sctx, bankClient); err != nil {
		return nil, fmt.Errorf("chaos: setting up the bank: %w", err)
	}

	// The workload and the nemesis.
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range cfg.Clients {
		cl, err := r.newClient(c.ClientAddrs())
		if err != nil {
			close(stop)
			workers.Wait()
			return nil, err
		}
		for range cfg.Workers {
			kv := r.newKV(cl)
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(kv.ID())+1))
			workers.Go(func() { cfg.Workload.Run(stop, kv, rng) })
		}
	}
	for w := range cfg.BankWorkers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(1000+w)))
		workers.Go(func() { cfg.Bank.Run(stop, bankClient, rng, r.bankLog) })
	}
	start := time.Now()
	nem := newNemesis(c, sched, start, logf)
	nemErr := nem.run(ctx)
	if nemErr != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the nemesis failed: %v", nemErr))
	}
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), healLimit)
	defer hcancel()
	if err := nem.healAll(hctx); err != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("healing: %v", err))
	}
	// Liveness: with every fault healed, the cluster serves writes again.
	if err := r.probe(ctx); err != nil {
		rep.Violations = append(rep.Violations, err.Error())
	}
	_ = waitUntil(ctx, start.Add(cfg.Duration)) // the fault-free tail
	close(stop)
	workers.Wait()
	rep.Events = nem.Events()
	rep.Injected, rep.LeaderMisses = nem.Injected()
	logf("workload stopped: %d register/append ops, bank %s", r.rec.Len(), r.bankLog.Summary())

	rep.Violations = append(rep.Violations, r.check(ctx, rep)...)
	rep.Violations = append(rep.Violations, errorStrings(c.Unexpected())...)
	for _, f := range c.ScanLogs() {
		rep.Violations = append(rep.Violations, "server log: "+f)
	}
	if err := writeEvents(filepath.Join(cfg.Dir, "events.txt"), rep.Events); err != nil {
		return rep, err
	}
	rep.Elapsed = time.Since(began)
	return rep, ctx.Err()
}

// run is one run's clients and records.
type run struct {
	cfg     Config
	c       *Cluster
	rec     *lincheck.Recorder
	bankLog *BankLog
	logf    func(string, ...any)

	mu         sync.Mutex
	clients    []*client.Client
	nextWorker int
}

// newClient returns a client of endpoints tuned for faults: an attempt
// gives up on a silent node after a second, a call retries for a while.
func (r *run) newClient(endpoints []string) (*client.Client, error) {
	cl, err := client.New(client.Config{
		Endpoints:      endpoints,
		AttemptTimeout: time.Second,
		RequestTimeout: 8 * time.Second,
		Retry:          client.RetryPolicy{MaxBackoff: 200 * time.Millisecond, JitterSeed: r.cfg.Seed},
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: client: %w", err)
	}
	r.mu.Lock()
	r.clients = append(r.clients, cl)
	r.mu.Unlock()
	return cl, nil
}

// newKV returns a recording worker handle on cl with a fresh id.
func (r *run) newKV(cl *client.Client) *lincheck.KV {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextWorker
	r.nextWorker++
	return lincheck.NewKV(r.rec, cl, id)
}

func (r *run) closeClients() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cl := range r.clients {
		cl.Close()
	}
	r.clients = nil
}

// probe writes until a write succeeds, for at most recoveryLimit.
func (r *run) probe(ctx context.Context) error {
	cl, err := r.newClient(r.c.ClientAddrs())
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, recoveryLimit)
	defer cancel()
	healed := time.Now()
	err = poll(pctx, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cl.Put(actx, []byte("chaos/probe"), []byte(healed.String()))
		return err
	})
	if err != nil {
		return fmt.Errorf("no write succeeded within %v of healing every fault: %w", recoveryLimit, err)
	}
	r.logf("a write succeeded %v after healing", time.Since(healed).Round(time.Millisecond))
	return nil
}

// check reads the final state and checks everything the run recorded.
func (r *run) check(ctx context.Context, rep *Report) []string {
	var violations []string
	fail := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalLimit)
	defer cancel()
	wl := r.cfg.Workload
	keys := slices.Concat(wl.Registers, wl.Logs)

	// Final reads, recorded: they pin down which open-ended writes took
	// effect.
	cl, err := r.newClient(r.c.ClientAddrs())
	if err != nil {
		return []string{err.Error()}
	}
	final, err := lincheck.ReadFinal(fctx, r.newKV(cl), keys, 6)
	if err != nil {
		fail("after healing: %v", err)
	}
	if _, err := r.cfg.Bank.Read(fctx, cl, r.bankLog); err != nil {
		fail("final bank read after healing: %v", err)
	}

	hist := r.rec.History()
	rep.Ops = len(hist)
	rep.History = lincheck.Summary(hist)
	rep.Bank = r.bankLog.Summary()
	rep.Check = lincheck.Check(hist, lincheck.Options{Timeout: r.cfg.CheckTimeout, VisualizationDir: r.cfg.Dir})
	if err := rep.Check.Err(); err != nil {
		fail("linearizability: %v", err)
	}
	finalLogs := map[string]string{}
	for _, k := range wl.Logs {
		finalLogs[k] = final[k]
	}
	if err := lincheck.CheckAppends(hist, finalLogs); err != nil {
		fail("appends: %v", err)
	}
	if err := r.cfg.Bank.Check(r.bankLog); err != nil {
		fail("bank: %v", err)
	}
	if err := lincheck.WriteHistoryFile(filepath.Join(r.cfg.Dir, "history.jsonl"), hist); err != nil {
		fail("writing the history: %v", err)
	}
	if err := r.bankLog.WriteFile(filepath.Join(r.cfg.Dir, "bank.jsonl")); err != nil {
		fail("writing the bank history: %v", err)
	}
	violations = append(violations, r.didWork(hist)...)
	// The convergence check gets its own time, started after the
	// porcupine check (which may take a while).
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), convergeLimit)
	defer ccancel()
	for _, v := range r.converged(cctx, cl, keys, final) {
		fail("%s", v)
	}
	return violations
}

// didWork returns a violation for each kind of operation the run never
// completed: a run in which nothing succeeded checks nothing (an empty
// history is linearizable), so it must not pass.
func (r *run) didWork(hist []lincheck.Op) []string {
	ok := map[lincheck.Kind]int{}
	for _, op := range hist {
		if op.Output.Outcome == lincheck.OK {
			ok[op.Input.Kind]++
		}
	}
	var violations []string
	for _, k := range []lincheck.Kind{lincheck.Get, lincheck.Put, lincheck.CompareAndSwap, lincheck.Append} {
		if ok[k] == 0 {
			violations = append(violations, fmt.Sprintf("no %v completed in the whole run: the run checked nothing of it", k))
		}
	}
	transfers, reads := 0, 0
	for _, op := range r.bankLog.Ops() {
		if op.Outcome != lincheck.OK {
			continue
		}
		switch op.Kind {
		case BankTransfer:
			transfers++
		case BankRead:
			reads++
		}
	}
	if transfers == 0 || reads == 0 {
		violations = append(violations, fmt.Sprintf("the bank completed %d transfers and %d reads: the run checked nothing of it", transfers, reads))
	}
	return violations
}

// converged checks that every node holds the final values: after a
// marker write, each node is waited for until it has applied the marker,
// then read (serializable, from that node alone).
func (r *run) converged(ctx context.Context, cl *client.Client, keys []string, final map[string]string) []string {
	res, err := cl.Put(ctx, []byte("chaos/converged"), []byte("yes"))
	if err != nil {
		return []string{fmt.Sprintf("convergence marker write: %v", err)}
	}
	mark := uint64(res.Header.AppliedIndex)
	bank := map[string]string{}
	var violations []string
	for _, id := range r.c.IDs() {
		if err := waitApplied(ctx, r.c, id, mark); err != nil {
			violations = append(violations, fmt.Sprintf("n%d did not apply index %d: %v", id, mark, err))
			continue
		}
		ncl, err := r.newClient([]string{r.c.ClientAddr(id)})
		if err != nil {
			return append(violations, err.Error())
		}
		for _, key := range keys {
			got, err := ncl.Get(ctx, []byte(key), client.WithConsistency(client.Serializable))
			switch {
			case errors.Is(err, client.ErrKeyNotFound):
				if want, ok := final[key]; ok {
					violations = append(violations, fmt.Sprintf("n%d lacks %q; the cluster read %q", id, key, want))
				}
			case err != nil:
				violations = append(violations, fmt.Sprintf("n%d: reading %q: %v", id, key, err))
			case string(got.Value) != final[key]:
				violations = append(violations, fmt.Sprintf("n%d has %q = %q; the cluster read %q", id, key, got.Value, final[key]))
			}
		}
		// The bank's accounts: every node must agree with the first.
		for _, key := range r.cfg.Bank.Keys() {
			got, err := ncl.Get(ctx, []byte(key), client.WithConsistency(client.Serializable))
			if err != nil {
				violations = append(violations, fmt.Sprintf("n%d: reading %q: %v", id, key, err))
				continue
			}
			if want, ok := bank[key]; ok && want != string(got.Value) {
				violations = append(violations, fmt.Sprintf("n%d has %q = %q; another node has %q", id, key, got.Value, want))
			}
			bank[key] = string(got.Value)
		}
	}
	return violations
}

// poll calls cond every pollEvery until it returns nil, and returns ctx's
// error, with cond's last, if ctx ends first.
func poll(ctx context.Context, cond func(context.Context) error) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// pollEvery is how often poll asks.
const pollEvery = 50 * time.Millisecond

// waitApplied waits until node id has applied index.
func waitApplied(ctx context.Context, c *Cluster, id raft.NodeID, index uint64) error {
	return poll(ctx, func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := c.Status(sctx, id)
		if err != nil {
			return err
		}
		for _, g := range st.GetGroups() {
			if g.GetGroupId() == uint64(server.DefaultGroup) && g.GetAppliedIndex() >= index {
				return nil
			}
		}
		return fmt.Errorf("n%d has not applied index %d", id, index)
	})
}

// waitLeader waits for the cluster to have a leader.
func waitLeader(ctx context.Context, c *Cluster) (raft.NodeID, error) {
	var lead raft.NodeID
	err := poll(ctx, func(ctx context.Context) error {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		id, err := c.Leader(lctx)
		lead = id
		return err
	})
	return lead, err
}

func writeEvents(path string, events []Event) error {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%s\n", e)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

func errorStrings(errs []error) []string {
	var s []string
	for _, err := range errs {
		s = append(s, err.Error())
	}
	return s
}

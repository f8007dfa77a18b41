package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Run runs the workload cfg describes against cfg.Conns connections opened
// with dial, and returns what it measured.
//
// The order is: dial every connection; preload (if cfg.Preload); warm up (if
// cfg.Warmup > 0); measure, for cfg.Duration or cfg.Ops operations; close the
// connections. Only the measured phase is recorded, and the server CPU time is
// read at its start and end.
//
// If ctx is cancelled during the measured phase, Run returns the partial
// result (Interrupted set) together with ctx's error; cancelled earlier, it
// returns only the error. Operations that fail are counted in the result, not
// returned as an error: an error means the run itself could not be done
// (bad config, a connection that could not be opened, a failed preload).
func Run(ctx context.Context, cfg Config, dial Dialer) (*Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	drivers := make([]Driver, 0, cfg.Conns)
	defer func() {
		for _, d := range drivers {
			_ = d.Close() // nothing useful to do about a failed close
		}
	}()
	for i := range cfg.Conns {
		d, err := dial(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("loadgen: dial connection %d: %w", i, err)
		}
		drivers = append(drivers, d)
	}
	r := newRun(cfg, drivers)
	if cfg.Preload {
		if err := r.preload(ctx); err != nil {
			return nil, err
		}
	}
	return r.workload(ctx)
}

// run holds the state shared by one Run's goroutines.
type run struct {
	cfg     Config
	clients []*client

	// state is read by every client before each operation; the
	// coordinator (the goroutine in Run) is its only writer.
	state atomic.Uint32
	// tickets counts measured operations issued, in Ops mode.
	tickets atomic.Int64

	mu struct {
		sync.Mutex
		errorSamples []string
	}
}

// Values of run.state.
const (
	stateWarmup uint32 = iota + 1
	stateMeasure
	stateStop
)

// maxErrorSamples bounds Result.ErrorSamples.
const maxErrorSamples = 5

// client is one closed-loop client. Its histograms and measured counts are
// owned by its goroutine and read only after it has exited; its progress
// counters are atomics, also read by the coordinator while it runs.
type client struct {
	id    int
	d     Driver
	rng   *rand.Rand
	key   []byte // KeyPrefix then a zero-padded index, rewritten in place
	value []byte

	put, get *Histogram
	measured struct {
		putOps, putErrs, getOps, getErrs, misses int64
	}

	// all counts every operation, measured only those recorded as measured
	// (so that the measured phase's progress agrees with the result).
	all, measuredProgress progressCounters
	_                     [64]byte // keep hot counters of neighbouring clients on distinct cache lines
}

// progressCounters are a client's running totals, written by the client and
// read by the coordinator's reporter.
type progressCounters struct {
	done, errs, latencyNs atomic.Int64
}

func (p *progressCounters) add(lat time.Duration, err error) {
	p.done.Add(1)
	if err != nil {
		p.errs.Add(1)
	} else {
		p.latencyNs.Add(int64(lat))
	}
}

func newRun(cfg Config, drivers []Driver) *run {
	r := &run{cfg: cfg, clients: make([]*client, cfg.Clients)}
	width := len(strconv.Itoa(cfg.Keys - 1))
	for i := range r.clients {
		c := &client{
			id:    i,
			d:     drivers[i%len(drivers)],
			rng:   rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			key:   make([]byte, len(cfg.KeyPrefix)+width),
			value: make([]byte, cfg.ValueSize),
		}
		copy(c.key, cfg.KeyPrefix)
		for j := range c.value {
			c.value[j] = byte(c.rng.Uint32())
		}
		if cfg.ReadFraction < 1 {
			c.put = NewHistogram()
		}
		if cfg.ReadFraction > 0 {
			c.get = NewHistogram()
		}
		r.clients[i] = c
	}
	return r
}

// setKey points c.key at key index i.
func (c *client) setKey(prefixLen, i int) {
	digits := c.key[prefixLen:]
	for j := len(digits) - 1; j >= 0; j-- {
		digits[j] = byte('0' + i%10)
		i /= 10
	}
}

// KeyName returns the key the runner uses for index i of cfg's key space
// (after defaults), so that tests and drivers can name the same keys.
func KeyName(cfg Config, i int) string {
	cfg = cfg.WithDefaults()
	width := len(strconv.Itoa(cfg.Keys - 1))
	return fmt.Sprintf("%s%0*d", cfg.KeyPrefix, width, i)
}

func (r *run) noteError(err error) {
	msg := err.Error()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mu.errorSamples) >= maxErrorSamples {
		return
	}
	for _, s := range r.mu.errorSamples {
		if s == msg {
			return
		}
	}
	r.mu.errorSamples = append(r.mu.errorSamples, msg)
}

// preload writes every key of the key space once, with up to Clients
// concurrent writers (writer i is client i, on its connection). It stops at
// the first write that fails.
func (r *run) preload(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	writers := r.clients[:min(len(r.clients), r.cfg.Keys)]
	prefixLen := len(r.cfg.KeyPrefix)
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, c := range writers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(r.cfg.Keys) || ctx.Err() != nil {
					return
				}
				c.setKey(prefixLen, int(i))
				start := time.Now()
				opCtx, opCancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				err := c.d.Put(opCtx, c.key, c.value)
				opCancel()
				if err != nil {
					cancel(fmt.Errorf("loadgen: preload %q: %w", c.key, err))
					return
				}
				c.all.add(time.Since(start), nil)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	rep := newReporter(r.cfg.Progress, writers)
	rep.begin(PhasePreload, 0, int64(r.cfg.Keys))
	ticker := time.NewTicker(r.cfg.ProgressInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			rep.report(false)
		case <-done:
			rep.report(true)
			if err := context.Cause(ctx); err != nil {
				return err
			}
			return nil
		}
	}
}

// workload runs the warmup and measured phases.
func (r *run) workload(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	// Operations in flight are cancelled only if the caller cancels; at the
	// normal end of a phase they are allowed to finish (within OpTimeout).
	opsCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()

	rep := newReporter(cfg.Progress, r.clients)
	ticker := time.NewTicker(cfg.ProgressInterval)
	defer ticker.Stop()
	var (
		measureStart             time.Time
		cpuBefore                cpuSnapshot
		cpuBeforeErr             error
		selfBefore               time.Duration
		loadStart                []float64
		measureTimer, warmupDone <-chan time.Time
	)
	enterMeasure := func() {
		loadStart = loadAvg()
		cpuBefore, cpuBeforeErr = snapshotCPU(cfg.ServerPIDs)
		selfBefore = selfCPU()
		measureStart = time.Now()
		// Publish the phase only now, so that no operation recorded as
		// measured began before the CPU snapshot.
		r.state.Store(stateMeasure)
		rep.begin(PhaseMeasure, cfg.Duration, cfg.Ops)
		ticker.Reset(cfg.ProgressInterval)
		if cfg.Duration > 0 {
			measureTimer = time.After(cfg.Duration)
		}
	}
	if cfg.Warmup > 0 {
		r.state.Store(stateWarmup)
		rep.begin(PhaseWarmup, cfg.Warmup, 0)
		warmupDone = time.After(cfg.Warmup)
	} else {
		enterMeasure()
	}

	var wg sync.WaitGroup
	for _, c := range r.clients {
		wg.Go(func() { r.runClient(opsCtx, c) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			r.state.Store(stateStop)
			cancelOps()
			<-done
			break loop
		case <-warmupDone:
			warmupDone = nil
			rep.report(true)
			enterMeasure()
		case <-measureTimer:
			measureTimer = nil
			r.state.Store(stateStop)
		case <-ticker.C:
			rep.report(false)
		case <-done:
			break loop
		}
	}
	end := time.Now()
	if measureStart.IsZero() { // cancelled during the warmup
		return nil, ctx.Err()
	}
	cpuAfter, cpuAfterErr := snapshotCPU(cfg.ServerPIDs)
	selfAfter := selfCPU()
	rep.report(true)

	res := r.result(measureStart, end)
	res.Interrupted = interrupted
	res.ClientCPUSeconds = (selfAfter - selfBefore).Seconds()
	res.Host.LoadAvgStart, res.Host.LoadAvgEnd = loadStart, loadAvg()
	if len(cfg.ServerPIDs) > 0 {
		res.ServerCPU = serverCPU(cfg.ServerPIDs, cpuBefore, cpuAfter, res.Ops+res.Errors,
			errors.Join(cpuBeforeErr, cpuAfterErr))
	}
	if interrupted {
		return res, ctx.Err()
	}
	return res, nil
}

// runClient is client c's closed loop. It records an operation only if the
// measured phase had begun when the operation was issued.
func (r *run) runClient(ctx context.Context, c *client) {
	cfg := &r.cfg
	prefixLen := len(cfg.KeyPrefix)
	for {
		st := r.state.Load()
		if st == stateStop {
			return
		}
		if st == stateMeasure && cfg.Ops > 0 && r.tickets.Add(1) > cfg.Ops {
			return
		}
		c.setKey(prefixLen, c.rng.IntN(cfg.Keys))
		kind := OpPut
		if cfg.ReadFraction > 0 && c.rng.Float64() < cfg.ReadFraction {
			kind = OpGet
		}

		start := time.Now()
		opCtx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		var err error
		found := true
		if kind == OpGet {
			found, err = c.d.Get(opCtx, c.key, cfg.ReadLevel)
		} else {
			err = c.d.Put(opCtx, c.key, c.value)
		}
		cancel()
		lat := time.Since(start)
		if ctx.Err() != nil {
			// The run was interrupted: this operation's outcome says
			// nothing about the store.
			return
		}

		c.all.add(lat, err)
		if st != stateMeasure {
			continue
		}
		c.measuredProgress.add(lat, err)
		m := &c.measured
		switch {
		case err != nil:
			r.noteError(err)
			if kind == OpGet {
				m.getErrs++
			} else {
				m.putErrs++
			}
		case kind == OpGet:
			m.getOps++
			if !found {
				m.misses++
			}
			c.get.Record(lat)
		default:
			m.putOps++
			c.put.Record(lat)
		}
	}
}

// result merges the clients' measurements. Call only after every client has
// returned.
func (r *run) result(start, end time.Time) *Result {
	all, put, get := NewHistogram(), NewHistogram(), NewHistogram()
	var putOps, putErrs, getOps, getErrs, misses int64
	for _, c := range r.clients {
		if c.put != nil {
			put.Merge(c.put)
		}
		if c.get != nil {
			get.Merge(c.get)
		}
		m := &c.measured
		putOps += m.putOps
		putErrs += m.putErrs
		getOps += m.getOps
		getErrs += m.getErrs
		misses += m.misses
	}
	all.Merge(put)
	all.Merge(get)

	elapsed := end.Sub(start).Seconds()
	res := &Result{
		Target:         r.cfg.Target,
		Workload:       r.cfg.Workload,
		Config:         resultConfig(r.cfg),
		Start:          start,
		ElapsedSeconds: elapsed,
		Ops:            putOps + getOps,
		Errors:         putErrs + getErrs,
		Misses:         misses,
		Latency:        all.Summary(),
		Host:           HostInfo{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version()},
	}
	if elapsed > 0 {
		res.Throughput = float64(res.Ops) / elapsed
	}
	if r.cfg.ReadFraction < 1 {
		res.Put = &OpStats{Ops: putOps, Errors: putErrs, Latency: put.Summary()}
	}
	if r.cfg.ReadFraction > 0 {
		res.Get = &OpStats{Ops: getOps, Errors: getErrs, Latency: get.Summary()}
	}
	r.mu.Lock()
	res.ErrorSamples = append([]string(nil), r.mu.errorSamples...)
	r.mu.Unlock()
	return res
}

// reporter turns the clients' progress counters into Progress reports. It is
// used only by the coordinating goroutine.
type reporter struct {
	fn      func(Progress)
	clients []*client

	phase  Phase
	start  time.Time
	length time.Duration
	total  int64

	base   counters // at the start of the phase
	last   counters // at the previous report
	lastAt time.Time
}

type counters struct{ done, errs, latencyNs int64 }

func newReporter(fn func(Progress), clients []*client) *reporter {
	return &reporter{fn: fn, clients: clients}
}

func (rp *reporter) sum() counters {
	var s counters
	for _, c := range rp.clients {
		p := &c.all
		if rp.phase == PhaseMeasure {
			p = &c.measuredProgress
		}
		s.done += p.done.Load()
		s.errs += p.errs.Load()
		s.latencyNs += p.latencyNs.Load()
	}
	return s
}

func (rp *reporter) begin(phase Phase, length time.Duration, total int64) {
	rp.phase, rp.length, rp.total = phase, length, total
	rp.start = time.Now()
	rp.lastAt = rp.start
	rp.base = rp.sum()
	rp.last = rp.base
}

func (rp *reporter) report(final bool) {
	if rp.fn == nil {
		return
	}
	now := time.Now()
	cur := rp.sum()
	p := Progress{
		Phase:   rp.phase,
		Elapsed: now.Sub(rp.start),
		Length:  rp.length,
		Done:    cur.done - rp.base.done,
		Errors:  cur.errs - rp.base.errs,
		Total:   rp.total,
		Final:   final,
	}
	if final {
		// The final report sums up the whole phase.
		if secs := p.Elapsed.Seconds(); secs > 0 {
			p.Rate = float64(p.Done) / secs
		}
		if ok := p.Done - p.Errors; ok > 0 {
			p.MeanLatency = time.Duration((cur.latencyNs - rp.base.latencyNs) / ok)
		}
	} else {
		if secs := now.Sub(rp.lastAt).Seconds(); secs > 0 {
			p.Rate = float64(cur.done-rp.last.done) / secs
		}
		if ok := (cur.done - rp.last.done) - (cur.errs - rp.last.errs); ok > 0 {
			p.MeanLatency = time.Duration((cur.latencyNs - rp.last.latencyNs) / ok)
		}
	}
	rp.last, rp.lastAt = cur, now
	rp.fn(p)
}

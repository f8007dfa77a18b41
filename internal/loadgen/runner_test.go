package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStore is an in-memory store whose connections (fakeConn) record which
// connection served which keys, and can be made to fail.
type fakeStore struct {
	mem *MemDriver
	// failEvery, if positive, makes every failEvery-th operation fail.
	failEvery int64
	ops       atomic.Int64

	mu     sync.Mutex
	dialed []int
	closed map[int]int
	keys   map[string]int // key → operations on it
	levels map[ReadLevel]int
	perCon map[int]int // connection → operations it served
}

func newFakeStore() *fakeStore {
	return &fakeStore{mem: NewMemDriver(), closed: map[int]int{}, keys: map[string]int{},
		levels: map[ReadLevel]int{}, perCon: map[int]int{}}
}

var errInjected = errors.New("injected failure")

type fakeConn struct {
	s  *fakeStore
	id int
}

func (s *fakeStore) dial(_ context.Context, conn int) (Driver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dialed = append(s.dialed, conn)
	return &fakeConn{s: s, id: conn}, nil
}

func (c *fakeConn) note(key []byte, level *ReadLevel) error {
	c.s.mu.Lock()
	c.s.keys[string(key)]++
	c.s.perCon[c.id]++
	if level != nil {
		c.s.levels[*level]++
	}
	c.s.mu.Unlock()
	if n := c.s.ops.Add(1); c.s.failEvery > 0 && n%c.s.failEvery == 0 {
		return errInjected
	}
	return nil
}

func (c *fakeConn) Put(ctx context.Context, key, value []byte) error {
	if err := c.note(key, nil); err != nil {
		return err
	}
	return c.s.mem.Put(ctx, key, value)
}

func (c *fakeConn) Get(ctx context.Context, key []byte, level ReadLevel) (bool, error) {
	if err := c.note(key, &level); err != nil {
		return false, err
	}
	return c.s.mem.Get(ctx, key, level)
}

func (c *fakeConn) Close() error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.closed[c.id]++
	return nil
}

func TestRunOpsModeRecordsExactlyOps(t *testing.T) {
	s := newFakeStore()
	cfg := Config{Target: "fake", Workload: "put", Clients: 8, Conns: 3, Keys: 100, ValueSize: 32,
		Ops: 5000, Warmup: 20 * time.Millisecond}
	res, err := Run(context.Background(), cfg, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 5000 || res.Errors != 0 {
		t.Errorf("Ops = %d, Errors = %d; want exactly 5000 and 0", res.Ops, res.Errors)
	}
	if res.Latency.Count != 5000 || res.Put == nil || res.Put.Ops != 5000 || res.Get != nil {
		t.Errorf("latency count %d, put %+v, get %+v", res.Latency.Count, res.Put, res.Get)
	}
	puts, gets, _ := s.mem.Counts()
	if puts <= 5000 || gets != 0 {
		t.Errorf("store saw %d puts and %d gets; want more than 5000 puts (warmup ones too) and no gets", puts, gets)
	}
	if res.Throughput <= 0 || res.ElapsedSeconds <= 0 {
		t.Errorf("throughput %v over %vs", res.Throughput, res.ElapsedSeconds)
	}
	if res.Target != "fake" || res.Workload != "put" || res.Config.Clients != 8 || res.Config.Conns != 3 {
		t.Errorf("result names %q %q, config %+v", res.Target, res.Workload, res.Config)
	}
}

func TestRunOpensAndClosesEachConnectionOnce(t *testing.T) {
	s := newFakeStore()
	cfg := Config{Clients: 7, Conns: 3, Keys: 10, Ops: 2000}
	if _, err := Run(context.Background(), cfg, s.dial); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fmt.Sprint(s.dialed) != "[0 1 2]" {
		t.Errorf("dialed %v, want [0 1 2]", s.dialed)
	}
	for i := range 3 {
		if s.closed[i] != 1 {
			t.Errorf("connection %d closed %d times, want once", i, s.closed[i])
		}
		if s.perCon[i] == 0 {
			t.Errorf("connection %d served nothing: %v", i, s.perCon)
		}
	}
}

func TestRunKeysStayInKeySpace(t *testing.T) {
	s := newFakeStore()
	cfg := Config{Clients: 4, Keys: 250, KeyPrefix: "k/", Ops: 20_000}
	if _, err := Run(context.Background(), cfg, s.dial); err != nil {
		t.Fatal(err)
	}
	valid := map[string]bool{}
	for i := range 250 {
		valid[KeyName(cfg, i)] = true
	}
	if KeyName(cfg, 7) != "k/007" {
		t.Errorf("KeyName(7) = %q, want k/007", KeyName(cfg, 7))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.keys {
		if !valid[k] {
			t.Errorf("key %q is outside the key space", k)
		}
	}
	// 20,000 uniform draws over 250 keys touch all of them.
	if len(s.keys) != 250 {
		t.Errorf("%d distinct keys used, want all 250", len(s.keys))
	}
}

func TestRunSameSeedSameKeys(t *testing.T) {
	keys := func(seed uint64) map[string]int {
		s := newFakeStore()
		cfg := Config{Clients: 1, Keys: 1_000_000, Ops: 300, Seed: seed}
		if _, err := Run(context.Background(), cfg, s.dial); err != nil {
			t.Fatal(err)
		}
		return s.keys
	}
	a, b, c := keys(5), keys(5), keys(6)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different keys")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("different seeds, same keys")
	}
}

func TestRunReadMixAndLevel(t *testing.T) {
	s := newFakeStore()
	cfg := Config{Clients: 4, Keys: 50, ReadFraction: 0.3, ReadLevel: Serializable, Ops: 20_000}
	res, err := Run(context.Background(), cfg, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Put == nil || res.Get == nil {
		t.Fatalf("put %+v get %+v: want both", res.Put, res.Get)
	}
	frac := float64(res.Get.Ops) / float64(res.Ops)
	if math.Abs(frac-0.3) > 0.02 {
		t.Errorf("read fraction %.3f, want 0.3", frac)
	}
	if res.Latency.Count != res.Put.Latency.Count+res.Get.Latency.Count {
		t.Errorf("overall count %d != put %d + get %d", res.Latency.Count, res.Put.Latency.Count, res.Get.Latency.Count)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.levels[Linearizable] != 0 || s.levels[Serializable] == 0 {
		t.Errorf("levels seen %v, want only serializable", s.levels)
	}
	if res.Config.ReadLevel != Serializable {
		t.Errorf("result config level %v", res.Config.ReadLevel)
	}
}

func TestRunPreloadWritesEveryKey(t *testing.T) {
	s := newFakeStore()
	var phases []Phase
	cfg := Config{Clients: 16, Conns: 2, Keys: 3000, ReadFraction: 1, Preload: true, Ops: 5000,
		ProgressInterval: time.Millisecond,
		Progress: func(p Progress) {
			if p.Final {
				phases = append(phases, p.Phase)
			}
		}}
	res, err := Run(context.Background(), cfg, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, n := s.mem.Counts(); n != 3000 {
		t.Errorf("%d keys stored after preload, want 3000", n)
	}
	if res.Misses != 0 || res.Get.Ops != 5000 {
		t.Errorf("misses %d, gets %d: preloaded keys must all be found", res.Misses, res.Get.Ops)
	}
	if fmt.Sprint(phases) != "[preload measure]" {
		t.Errorf("final progress reports for phases %v, want [preload measure]", phases)
	}
}

func TestRunWithoutPreloadCountsMisses(t *testing.T) {
	s := newFakeStore()
	res, err := Run(context.Background(), Config{Clients: 2, Keys: 100, ReadFraction: 1, Ops: 100}, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Misses != 100 {
		t.Errorf("Misses = %d, want 100 on an empty store", res.Misses)
	}
}

func TestRunCountsErrorsWithoutTimingThem(t *testing.T) {
	s := newFakeStore()
	s.failEvery = 10
	res, err := Run(context.Background(), Config{Clients: 4, Keys: 100, Ops: 10_000}, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops+res.Errors != 10_000 {
		t.Errorf("ops %d + errors %d != 10000", res.Ops, res.Errors)
	}
	if res.Errors < 900 || res.Errors > 1100 {
		t.Errorf("Errors = %d, want about 1000", res.Errors)
	}
	if res.Latency.Count != res.Ops {
		t.Errorf("latency count %d, want %d (successes only)", res.Latency.Count, res.Ops)
	}
	if len(res.ErrorSamples) != 1 || !strings.Contains(res.ErrorSamples[0], "injected") {
		t.Errorf("ErrorSamples = %q, want the one distinct message", res.ErrorSamples)
	}
}

func TestRunDurationModeMeasuresLatency(t *testing.T) {
	m := NewMemDriver()
	m.Delay = 2 * time.Millisecond
	var reports atomic.Int64
	var last Progress // Progress is never called concurrently with itself
	cfg := Config{Clients: 4, Conns: 2, Keys: 10, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
		ProgressInterval: 20 * time.Millisecond, ServerPIDs: []int{os.Getpid()},
		Progress: func(p Progress) { reports.Add(1); last = p }}
	res, err := Run(context.Background(), cfg, MemDialer(m))
	if err != nil {
		t.Fatal(err)
	}
	// 4 clients each waiting ≥ 2ms: at most 2,000 ops/s.
	if res.Throughput <= 0 || res.Throughput > 2000 {
		t.Errorf("throughput %.0f ops/s, want in (0, 2000]", res.Throughput)
	}
	if res.Latency.P50US < 2000 || res.Latency.MinUS < 2000 {
		t.Errorf("latency %+v: every op sleeps ≥ 2ms", res.Latency)
	}
	if res.ElapsedSeconds < 0.3 || res.ElapsedSeconds > 5 {
		t.Errorf("elapsed %.3fs, want about 0.3s", res.ElapsedSeconds)
	}
	if !last.Final || last.Phase != PhaseMeasure || last.Done != res.Ops+res.Errors {
		t.Errorf("last progress report %+v does not agree with the result's %d ops", last, res.Ops)
	}
	if reports.Load() < 5 {
		t.Errorf("%d progress reports in 350ms at 20ms intervals", reports.Load())
	}
	c := res.ServerCPU
	if c == nil || c.Error != "" || len(c.PerPID) != 1 || c.Seconds < 0 {
		t.Errorf("ServerCPU = %+v, want this process's figure", c)
	}
	if res.Host.NumCPU <= 0 || len(res.Host.LoadAvgStart) != 3 {
		t.Errorf("Host = %+v", res.Host)
	}
}

func TestRunInterruptedReturnsPartialResult(t *testing.T) {
	m := NewMemDriver()
	m.Delay = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	res, err := Run(ctx, Config{Clients: 4, Keys: 10, Duration: time.Hour}, MemDialer(m))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res == nil || !res.Interrupted || res.Ops == 0 {
		t.Fatalf("result %+v, want a partial, interrupted one", res)
	}
	if res.Errors != 0 {
		t.Errorf("Errors = %d: operations cut short by the interruption must not count", res.Errors)
	}
}

func TestRunInterruptedDuringWarmup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res, err := Run(ctx, Config{Clients: 2, Warmup: time.Hour, Ops: 10}, MemDialer(NewMemDriver()))
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("Run = %+v, %v; want no result and context.Canceled", res, err)
	}
}

func TestRunDialFailureClosesOpenedConnections(t *testing.T) {
	s := newFakeStore()
	boom := errors.New("refused")
	dial := func(ctx context.Context, conn int) (Driver, error) {
		if conn == 2 {
			return nil, boom
		}
		return s.dial(ctx, conn)
	}
	_, err := Run(context.Background(), Config{Clients: 4, Conns: 4, Ops: 10}, dial)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the dial error", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed[0] != 1 || s.closed[1] != 1 {
		t.Errorf("closed %v, want connections 0 and 1 closed once", s.closed)
	}
}

func TestRunPreloadFailureIsAnError(t *testing.T) {
	s := newFakeStore()
	s.failEvery = 500
	_, err := Run(context.Background(), Config{Clients: 4, Keys: 2000, Preload: true, Ops: 10}, s.dial)
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "preload") {
		t.Fatalf("err = %v, want the preload failure", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	_, err := Run(context.Background(), Config{Clients: 1, Conns: 2}, MemDialer(NewMemDriver()))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
}

func TestWaitReady(t *testing.T) {
	s := newFakeStore()
	d, _ := s.dial(context.Background(), 0)
	if err := WaitReady(context.Background(), d, []byte("ready"), time.Second); err != nil {
		t.Fatalf("WaitReady on a working store: %v", err)
	}
	s.failEvery = 1 // every operation fails
	err := WaitReady(context.Background(), d, []byte("ready"), 250*time.Millisecond)
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want ErrNotReady wrapping the last failure", err)
	}
}

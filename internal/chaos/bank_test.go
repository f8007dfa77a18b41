package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// bankCluster starts an in-process 3-node cluster and waits for its
// leader; it returns the cluster and a context for the test.
func bankCluster(t *testing.T) (*testcluster.Cluster, context.Context) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	c.WaitLeader(ctx, server.DefaultGroup)
	return c, ctx
}

// wait waits d, or until ctx ends: the length of a phase of a run.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TestBankUnderPartition runs bank workers on a real cluster for about
// two seconds (longer if by then no transfer went through or some
// consistency was never read), the leader isolated in the middle of it
// until the others elect a new one, and 700ms more:
// every read, at every consistency, sums to the total, transfers go
// through, and the log's file holds every operation.
func TestBankUnderPartition(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	c, ctx := bankCluster(t)
	configure := func(cfg *client.Config) {
		cfg.AttemptTimeout = time.Second
		cfg.RequestTimeout = 8 * time.Second
		cfg.Retry.MaxBackoff = 200 * time.Millisecond
		cfg.Retry.JitterSeed = seed
	}
	setupCl := c.Client(configure)
	b := Bank{Prefix: "bank/", Accounts: 5, Initial: 100, OpTimeout: 4 * time.Second}
	for i := range 2 { // idempotent
		if err := b.Setup(ctx, setupCl); err != nil {
			t.Fatalf("setup %d: %v", i, err)
		}
	}
	for _, other := range []Bank{
		{Prefix: b.Prefix, Accounts: 4, Initial: b.Initial}, // bank/4 is extra
		{Prefix: b.Prefix, Accounts: 5, Initial: 50},        // the total differs
	} {
		if err := other.Setup(ctx, setupCl); err == nil {
			t.Errorf("setting up %+v over %+v succeeded", other, b)
		} else {
			t.Logf("setting up %+v over %+v: %v", other, b, err)
		}
	}

	log := NewBankLog()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		cl := setupCl
		if w%2 == 1 {
			cl = c.Client(configure)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
		wg.Go(func() { b.Run(stop, cl, rng, log) })
	}
	wait(ctx, 700*time.Millisecond)
	lead := c.WaitLeader(ctx, server.DefaultGroup)
	c.Isolate(lead)
	var rest []raft.NodeID
	for _, id := range c.IDs() {
		if id != lead {
			rest = append(rest, id)
		}
	}
	// The majority elects a leader of its own; the old one serves on
	// (serializable reads) from its stale state.
	t.Logf("isolated node %d; node %d leads the rest", lead, c.WaitLeader(ctx, server.DefaultGroup, rest...))
	wait(ctx, 700*time.Millisecond)
	c.Heal()
	wait(ctx, 600*time.Millisecond)
	// However slow the machine, the run goes on until it has what the
	// assertions below need (or the test's time is up).
	covered := func() bool {
		okTransfers, reads := tally(log, b)
		return okTransfers > 0 && reads[client.Linearizable] > 0 && reads[client.Lease] > 0 && reads[client.Serializable] > 0
	}
	tick := time.NewTicker(50 * time.Millisecond)
	for !covered() && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()

	c.WaitLeader(ctx, server.DefaultGroup)
	var bal map[string]int64
	for attempt := 0; ; attempt++ {
		var err error
		if bal, err = b.Read(ctx, setupCl, log); err == nil {
			break
		} else if attempt == 5 {
			t.Fatalf("final read: %v", err)
		}
	}
	var sum int64
	for _, n := range bal {
		sum += n
	}
	if len(bal) != b.Accounts || sum != b.Total() {
		t.Errorf("final read: %v, want %d accounts summing to %d", bal, b.Accounts, b.Total())
	}

	t.Logf("bank: %s", log.Summary())
	if err := b.Check(log); err != nil {
		t.Error(err)
	}
	okTransfers, reads := tally(log, b)
	if okTransfers == 0 {
		t.Error("no transfer went through")
	}
	for _, cons := range []client.Consistency{client.Linearizable, client.Lease, client.Serializable} {
		if reads[cons] == 0 {
			t.Errorf("no completed %v read of every account", cons)
		}
	}
	ops := log.Ops()

	path := filepath.Join(t.TempDir(), "bank.jsonl")
	if err := log.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if got := readBankFile(t, path); len(got) != len(ops) {
		t.Errorf("%s holds %d operations, the log %d", path, len(got), len(ops))
	}
}

// tally counts log's transfers that went through, and its completed reads
// of every account by consistency.
func tally(log *BankLog, b Bank) (okTransfers int, reads map[client.Consistency]int) {
	reads = map[client.Consistency]int{}
	for _, op := range log.Ops() {
		switch {
		case op.Kind == BankTransfer && op.Outcome == lincheck.OK:
			okTransfers++
		case op.Kind == BankRead && op.Outcome == lincheck.OK && len(op.Balances) == b.Accounts:
			for _, c := range []client.Consistency{client.Linearizable, client.Lease, client.Serializable} {
				if op.Consistency == c.String() {
					reads[c]++
				}
			}
		}
	}
	return okTransfers, reads
}

func readBankFile(t *testing.T, path string) []BankOp {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []BankOp
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var op BankOp
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			t.Fatalf("%s line %d: %v", path, len(ops)+1, err)
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestBankCatchesTornTransfers is the control on real data: transfers
// broken on purpose (two separate Puts instead of one atomic batch), and
// a read taken between the two Puts of one of them. Check must report
// the read that does not sum.
func TestBankCatchesTornTransfers(t *testing.T) {
	c, ctx := bankCluster(t)
	cl := c.Client()
	b := Bank{Prefix: "torn/", Accounts: 3, Initial: 100, OpTimeout: 5 * time.Second}
	if err := b.Setup(ctx, cl); err != nil {
		t.Fatal(err)
	}
	log := NewBankLog()
	var (
		once    sync.Once
		torn    = make(chan struct{})
		seen    map[string]int64
		readErr error
	)
	b.torn = &tornHook{pause: func() {
		once.Do(func() {
			seen, readErr = b.Read(ctx, cl, log)
			close(torn)
		})
	}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(stop, cl, rand.New(rand.NewPCG(1, 2)), log) })
	select {
	case <-torn:
	case <-ctx.Done():
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("no torn transfer within the test's time: %s", log.Summary())
	}
	if readErr != nil {
		t.Fatalf("the read between the two halves of a transfer: %v", readErr)
	}
	var sum int64
	for _, n := range seen {
		sum += n
	}
	t.Logf("read mid-transfer: %v (sum %d); %s", seen, sum, log.Summary())
	if sum == b.Total() {
		t.Fatalf("the read mid-transfer summed to the total: the control broke nothing")
	}
	err := b.Check(log)
	if err == nil || !strings.Contains(err.Error(), "sum to") {
		t.Fatalf("Check did not report the torn read: %v", err)
	}
	t.Logf("Check: %v", err)
}

// TestBankCheck: each kind of violation, in a hand-made log, is reported;
// what is not a violation is not.
func TestBankCheck(t *testing.T) {
	b := Bank{Prefix: "b/", Accounts: 3, Initial: 10}
	bal := func(kvs ...string) []Balance {
		var bs []Balance
		for i := 0; i < len(kvs); i += 2 {
			bs = append(bs, Balance{Key: kvs[i], Value: kvs[i+1], Version: uint64(i + 1)})
		}
		return bs
	}
	read := func(cons client.Consistency, bs []Balance) BankOp {
		return BankOp{Kind: BankRead, Consistency: cons.String(), Outcome: lincheck.OK, Balances: bs}
	}
	clean := []BankOp{
		read(client.Linearizable, bal("b/0", "10", "b/1", "10", "b/2", "10")),
		read(client.Lease, bal("b/0", "0", "b/1", "5", "b/2", "25")),
		read(client.Serializable, nil), // a replica from before Setup
		{Kind: BankRead, Consistency: "lease", Outcome: lincheck.Unknown, Err: "unavailable"},
		{Kind: BankTransfer, From: "b/0", To: "b/1", Amount: 3, Sent: true, Outcome: lincheck.Unknown,
			Balances: bal("b/0", "10", "b/1", "10")},
	}
	for _, tc := range []struct {
		name string
		op   BankOp
		want string
	}{
		{"sum", read(client.Serializable, bal("b/0", "10", "b/1", "10", "b/2", "9")), "sum to 29, not 30"},
		{"negative", read(client.Lease, bal("b/0", "-5", "b/1", "10", "b/2", "25")), "negative balance b/0=-5"},
		{"missing", read(client.Linearizable, bal("b/0", "15", "b/2", "15")), "missing account b/1"},
		{"empty linearizable", read(client.Linearizable, nil), "missing account b/0"},
		{"extra", read(client.Linearizable, bal("b/0", "10", "b/1", "10", "b/2", "10", "b/3", "0")), `extra account b/3="0"`},
		{"unparsable", read(client.Lease, bal("b/0", "10", "b/1", "ten", "b/2", "10")), `unparsable balance b/1="ten"`},
		{"continuation", func() BankOp {
			op := read(client.Linearizable, bal("b/0", "10", "b/1", "10"))
			op.Continuation = true
			return op
		}(), "continuation"},
		{"transfer saw negative", BankOp{Kind: BankTransfer, From: "b/0", To: "b/1", Outcome: lincheck.NotApplied,
			Balances: bal("b/0", "-1", "b/1", "10")}, "negative balance b/0=-1"},
		{"transfer saw missing", BankOp{Kind: BankTransfer, From: "b/0", To: "b/1", Outcome: lincheck.NotApplied,
			Balances: bal("b/0", "10"), Missing: []string{"b/1"}}, "missing account b/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := NewBankLog()
			for _, op := range clean {
				log.record(op)
			}
			if err := b.Check(log); err != nil {
				t.Fatalf("clean log: %v", err)
			}
			log.record(tc.op)
			err := b.Check(log)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want an error with %q", err, tc.want)
			}
			if strings.Count(err.Error(), "\n\t") == 0 {
				t.Errorf("Check's error lists no violation: %v", err)
			}
		})
	}
}

// TestBankLayout: keys, total, scan range and configuration checks.
func TestBankLayout(t *testing.T) {
	b := Bank{Prefix: "bank/", Accounts: 3, Initial: 7}
	if got := strings.Join(b.Keys(), ","); got != "bank/0,bank/1,bank/2" {
		t.Errorf("Keys = %s", got)
	}
	if b.Total() != 21 {
		t.Errorf("Total = %d", b.Total())
	}
	if got := string(b.scanEnd()); got != "bank0" {
		t.Errorf("scanEnd = %q", got)
	}
	if got := (Bank{Prefix: "a\xff\xff"}).scanEnd(); string(got) != "b" {
		t.Errorf("scanEnd of a\\xff\\xff = %q", got)
	}
	if got := (Bank{Prefix: "\xff"}).scanEnd(); got != nil {
		t.Errorf("scanEnd of \\xff = %q, want nil", got)
	}
	for _, bad := range []Bank{{Prefix: "", Accounts: 3}, {Prefix: "x", Accounts: 1}, {Prefix: "x", Accounts: 3, Initial: -1}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

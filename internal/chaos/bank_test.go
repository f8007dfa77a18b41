package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// TestBankCheck: each kind of violation of one operation, in a hand-made
// log, is reported; what is not a violation is not.
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
	at := func(index uint64, op BankOp) BankOp {
		op.AppliedIndex = index
		return op
	}
	final := at(9, read(client.Linearizable, bal("b/0", "0", "b/1", "5", "b/2", "25")))
	final.Final = true
	clean := []BankOp{
		at(5, read(client.Linearizable, bal("b/0", "10", "b/1", "10", "b/2", "10"))),
		{Kind: BankTransfer, From: "b/0", To: "b/2", Amount: 10, Sent: true, Outcome: lincheck.OK, AppliedIndex: 6,
			Balances: bal("b/0", "10", "b/2", "10")},
		{Kind: BankTransfer, From: "b/1", To: "b/2", Amount: 5, Sent: true, Outcome: lincheck.OK, AppliedIndex: 7,
			Balances: bal("b/1", "10", "b/2", "10")},
		at(7, read(client.Lease, bal("b/0", "0", "b/1", "5", "b/2", "25"))),
		read(client.Serializable, nil), // a replica from before Setup
		{Kind: BankRead, Consistency: "lease", Outcome: lincheck.Unknown, Err: "unavailable"},
		{Kind: BankTransfer, From: "b/0", To: "b/1", Amount: 3, Sent: true, Outcome: lincheck.Unknown,
			Balances: bal("b/0", "10", "b/1", "10")},
		final,
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
		{"transfer outside the bank", BankOp{Kind: BankTransfer, From: "b/0", To: "c/1", Amount: 1, Sent: true, Outcome: lincheck.Unknown,
			Balances: bal("b/0", "10", "c/1", "10")}, "not between two accounts of the bank"},
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

// history builds a bank log by hand, one operation after the other: each
// is called after the previous one returned, unless placed otherwise.
type history struct {
	t   *testing.T
	b   Bank
	log *BankLog
	now int64
	ops []BankOp
}

func newHistory(t *testing.T, b Bank) *history {
	log := NewBankLog()
	log.use(b)
	return &history{t: t, b: b, log: log}
}

// add records op, called and returned after everything so far.
func (h *history) add(op BankOp) BankOp {
	h.now += 10
	op.Call = h.now
	h.now += 10
	op.Return = h.now
	h.log.record(op)
	h.ops = append(h.ops, op)
	return op
}

// addAt records op as is (its times set by the caller).
func (h *history) addAt(op BankOp) BankOp {
	h.log.record(op)
	h.ops = append(h.ops, op)
	return op
}

// read is an ok read at index of the given balances of accounts 0, 1, ...
func read(cons client.Consistency, index uint64, vals ...int64) BankOp {
	op := BankOp{Kind: BankRead, Consistency: cons.String(), Outcome: lincheck.OK, AppliedIndex: index}
	for i, v := range vals {
		op.Balances = append(op.Balances, Balance{Key: "b/" + strconv.Itoa(i), Value: strconv.FormatInt(v, 10), Version: 1})
	}
	return op
}

// final is the final read.
func final(index uint64, vals ...int64) BankOp {
	op := read(client.Linearizable, index, vals...)
	op.Final = true
	return op
}

// transferOp is a sent transfer of amount from account from to account to,
// conditioned on versions vFrom and vTo, with outcome out (at index, if
// ok).
func transferOp(from, to int, amount int64, out lincheck.Outcome, index, vFrom, vTo uint64) BankOp {
	f, t := "b/"+strconv.Itoa(from), "b/"+strconv.Itoa(to)
	op := BankOp{Kind: BankTransfer, From: f, To: t, Amount: amount, Sent: true, Outcome: out,
		Balances: []Balance{{Key: f, Value: "0", Version: vFrom}, {Key: t, Value: "0", Version: vTo}}}
	if out == lincheck.OK {
		op.AppliedIndex = index
	}
	return op
}

// check runs Check; want is empty for a clean log, else the substrings
// the error must hold.
func (h *history) check(want ...string) error {
	h.t.Helper()
	err := h.b.Check(h.log)
	switch {
	case len(want) == 0 && err != nil:
		h.t.Fatalf("Check: %v", err)
	case len(want) > 0 && err == nil:
		h.t.Fatalf("Check passed; want an error with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			h.t.Fatalf("Check = %v\nwant an error with %q", err, w)
		}
	}
	if err != nil {
		h.t.Logf("Check: %v", err)
	}
	return err
}

// summaryHas checks that the log's Summary holds each of want.
func (h *history) summaryHas(want ...string) {
	h.t.Helper()
	s := h.log.Summary()
	for _, w := range want {
		if !strings.Contains(s, w) {
			h.t.Fatalf("Summary = %s\nwant %q", s, w)
		}
	}
	h.t.Logf("Summary: %s", s)
}

// TestBankReconciliation: the final balances must be the initial ones
// plus every acknowledged transfer plus some of those of unknown outcome,
// and none of the refused ones (hand-made logs).
func TestBankReconciliation(t *testing.T) {
	b := Bank{Prefix: "b/", Accounts: 3, Initial: 10}
	// Two acknowledged transfers: 7 13 10, then 7 9 14.
	base := func(t *testing.T) *history {
		h := newHistory(t, b)
		h.add(transferOp(0, 1, 3, lincheck.OK, 5, 1, 1))
		h.add(transferOp(1, 2, 4, lincheck.OK, 6, 5, 1))
		return h
	}
	t.Run("clean", func(t *testing.T) {
		h := base(t)
		h.add(final(8, 7, 9, 14))
		h.check()
		h.summaryHas("final read at index 8: ok transfers 2, unknown 0")
	})
	t.Run("acknowledged transfer lost", func(t *testing.T) {
		h := base(t)
		h.add(final(8, 7, 13, 10))
		h.check("the final balances (b/0=7 b/1=13 b/2=10) do not reconcile",
			"plus the 2 ok transfers at or below index 8 give b/0=7 b/1=9 b/2=14, off by b/0=0 b/1=4 b/2=-4",
			"an acknowledged transfer is lost")
		h.summaryHas("does NOT reconcile")
	})
	for _, out := range []lincheck.Outcome{lincheck.NotApplied, lincheck.CASFailed} {
		t.Run(out.String()+" transfer applied", func(t *testing.T) {
			h := base(t)
			h.add(transferOp(2, 0, 2, out, 0, 6, 5))
			h.add(final(8, 9, 9, 12))
			h.check("do not reconcile", "off by b/0=2 b/1=0 b/2=-2", "a refused one applied")
		})
		t.Run(out.String()+" transfer not applied", func(t *testing.T) {
			h := base(t)
			h.add(transferOp(2, 0, 2, out, 0, 6, 5))
			h.add(final(8, 7, 9, 14))
			h.check()
		})
	}
	t.Run("unknown transfers resolved", func(t *testing.T) {
		h := base(t)
		h.add(transferOp(0, 2, 1, lincheck.Unknown, 0, 5, 6)) // applied
		h.add(transferOp(1, 0, 2, lincheck.Unknown, 0, 6, 5)) // not
		h.add(final(9, 6, 9, 15))
		h.check()
		h.summaryHas("unknown 2 (applied 1, not applied 1, undetermined 0)")
	})
	t.Run("unknown transfers undetermined", func(t *testing.T) {
		h := base(t)
		h.add(transferOp(0, 2, 1, lincheck.Unknown, 0, 5, 6))
		h.add(transferOp(0, 2, 1, lincheck.Unknown, 0, 5, 6))
		h.add(final(9, 6, 9, 15)) // one of them
		h.check()
		h.summaryHas("unknown 2 (applied 0, not applied 0, undetermined 2)")
	})
	t.Run("unknown transfer not reconcilable", func(t *testing.T) {
		h := base(t)
		h.add(transferOp(0, 2, 1, lincheck.Unknown, 0, 5, 6))
		h.add(final(9, 5, 9, 16)) // 2 moved, not 1
		h.check("do not reconcile", "off by b/0=-2 b/1=0 b/2=2, which no subset of the 1 transfers of unknown outcome")
	})
	// An unknown transfer conditioned on the versions that the next
	// acknowledged transfer of its account was conditioned on too cannot
	// have applied: it would have failed that one's condition.
	t.Run("unknown transfer ruled out by a later condition", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(transferOp(0, 1, 2, lincheck.Unknown, 0, 1, 1))
		h.add(transferOp(0, 1, 3, lincheck.OK, 5, 1, 1))
		h.add(final(8, 5, 15, 10)) // both
		h.check("do not reconcile", "which no subset of the 0 transfers of unknown outcome")
	})
	t.Run("unknown transfer not ruled out", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(transferOp(0, 1, 2, lincheck.Unknown, 0, 1, 1))
		h.add(transferOp(0, 1, 3, lincheck.OK, 5, 3, 3)) // conditioned on the unknown one's write at 3
		h.add(final(8, 5, 15, 10))
		h.check()
		h.summaryHas("unknown 1 (applied 1, not applied 0, undetermined 0)")
	})
	t.Run("unknown transfer called after the final read", func(t *testing.T) {
		h := base(t)
		h.add(final(8, 7, 9, 14))
		h.add(transferOp(0, 2, 1, lincheck.Unknown, 0, 5, 6))
		h.check()
		h.summaryHas("unknown 1 (applied 0, not applied 1, undetermined 0)")
	})
	t.Run("no final read", func(t *testing.T) {
		h := base(t)
		h.add(read(client.Linearizable, 8, 7, 9, 14))
		h.check("no final read (Bank.Read) completed")
		h.summaryHas("no final read yet")
	})
	t.Run("failed final read", func(t *testing.T) {
		h := base(t)
		op := final(0)
		op.Outcome, op.Err = lincheck.Unknown, "unavailable"
		h.add(op)
		h.check("no final read (Bank.Read) completed")
	})
	t.Run("no transfer, no final read", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(read(client.Linearizable, 3, 10, 10, 10))
		op := transferOp(0, 1, 1, lincheck.NotApplied, 0, 1, 1)
		op.Sent = false
		h.add(op)
		h.check()
	})
	t.Run("the last final read counts", func(t *testing.T) {
		h := base(t)
		h.add(final(8, 7, 9, 14))
		h.add(transferOp(2, 0, 1, lincheck.OK, 9, 6, 5))
		h.add(final(10, 8, 9, 13))
		h.check()
		h.summaryHas("final read at index 10: ok transfers 3")
	})
}

// TestBankReconciliationUndecided: more transfers of unknown outcome than
// the search can go through is a violation, not a pass; within bounds the
// search decides many of them.
func TestBankReconciliationUndecided(t *testing.T) {
	b := Bank{Prefix: "b/", Accounts: 5, Initial: 1000}
	rng := rand.New(rand.NewPCG(7, 8))
	// unknowns adds n transfers of unknown outcome between random
	// accounts, and a final read that shows those applied applied.
	unknowns := func(h *history, n int, amount func(i int) int64, applied func(i int) bool) {
		bal := []int64{1000, 1000, 1000, 1000, 1000}
		for i := range n {
			from := rng.IntN(5)
			to := (from + 1 + rng.IntN(4)) % 5
			a := amount(i)
			h.add(transferOp(from, to, a, lincheck.Unknown, 0, 1, 1))
			if applied(i) {
				bal[from] -= a
				bal[to] += a
			}
		}
		h.add(final(uint64(10*n), bal...))
	}
	t.Run("undecided", func(t *testing.T) {
		h := newHistory(t, b)
		h.b.MaxSearchStates = 2000
		h.log.use(h.b)
		unknowns(h, 40, func(int) int64 { return 1 + rng.Int64N(100) }, func(i int) bool { return i%3 == 0 })
		// A read beside the final one, as hard to search: skipped, not
		// failed.
		r := h.ops[len(h.ops)-1]
		r.Final, r.Consistency = false, client.Serializable.String()
		h.add(r)
		h.check("UNDECIDED, which is not a pass", "the 40 transfers of unknown outcome", "outgrew 2000 states")
		h.summaryHas("reconciliation UNDECIDED (ok transfers 0, unknown 40, 40 searched); reads value-checked 0, skipped 1")
	})
	t.Run("40 small", func(t *testing.T) {
		h := newHistory(t, b)
		start := time.Now()
		unknowns(h, 40, func(i int) int64 { return 1 + int64(i%4) }, func(i int) bool { return i%3 == 0 })
		h.check()
		h.summaryHas("unknown 40")
		t.Logf("40 unknowns of 1 to 4: %v", time.Since(start))
	})
	t.Run("40 large", func(t *testing.T) {
		h := newHistory(t, b)
		start := time.Now()
		unknowns(h, 40, func(int) int64 { return 1 + rng.Int64N(100) }, func(i int) bool { return i%2 == 0 })
		h.check()
		h.summaryHas("unknown 40")
		t.Logf("40 unknowns of 1 to 100: %v", time.Since(start))
	})
}

// TestBankStaleReads: a linearizable or lease read must not see a state
// older than one a completed read or transfer showed before it was
// called (hand-made logs).
func TestBankStaleReads(t *testing.T) {
	b := Bank{Prefix: "b/", Accounts: 3, Initial: 10}
	for _, cons := range []client.Consistency{client.Linearizable, client.Lease} {
		t.Run(cons.String()+" after read", func(t *testing.T) {
			h := newHistory(t, b)
			h.add(read(client.Linearizable, 10, 10, 10, 10))
			h.add(read(cons, 9, 10, 10, 10))
			h.check("op 1, " + cons.String() + " read [0s, 0s] node 0 applied 9: stale read: its applied index 9 is below index 10 of op 0, linearizable read")
		})
		t.Run(cons.String()+" after transfer", func(t *testing.T) {
			h := newHistory(t, b)
			h.add(transferOp(0, 1, 1, lincheck.OK, 12, 1, 1))
			h.add(read(cons, 11, 10, 10, 10))
			h.add(final(13, 9, 11, 10))
			h.check("op 1, "+cons.String()+" read", "stale read: its applied index 11 is below index 12 of op 0, transfer 1 b/0→b/1")
		})
	}
	t.Run("serializable may be stale", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(read(client.Linearizable, 10, 10, 10, 10))
		h.add(read(client.Serializable, 9, 10, 10, 10))
		h.check()
	})
	t.Run("concurrent reads may be in any order", func(t *testing.T) {
		h := newHistory(t, b)
		r1 := read(client.Linearizable, 10, 10, 10, 10)
		r1.Call, r1.Return = 10, 30
		r2 := read(client.Lease, 9, 10, 10, 10)
		r2.Call, r2.Return = 20, 40
		h.addAt(r1)
		h.addAt(r2)
		h.check()
	})
	t.Run("the most recent read counts", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(read(client.Linearizable, 10, 10, 10, 10))
		h.add(read(client.Linearizable, 14, 10, 10, 10))
		h.add(read(client.Linearizable, 12, 10, 10, 10))
		h.check("stale read: its applied index 12 is below index 14 of op 1")
	})
}

// TestBankReadValues: every read of every account must show the state at
// its applied index (hand-made logs).
func TestBankReadValues(t *testing.T) {
	b := Bank{Prefix: "b/", Accounts: 3, Initial: 10}
	for _, cons := range []client.Consistency{client.Linearizable, client.Lease, client.Serializable} {
		t.Run(cons.String()+" misses a transfer", func(t *testing.T) {
			h := newHistory(t, b)
			h.add(transferOp(0, 1, 3, lincheck.OK, 5, 1, 1))
			r := read(cons, 6, 10, 10, 10)
			r.Call, r.Return = 1, 2 // before the transfer: not stale, wrong
			h.addAt(r)
			h.add(final(7, 7, 13, 10))
			h.check("its balances (b/0=10 b/1=10 b/2=10) are not the state at its applied index 6",
				"the 1 ok transfers at or below it give b/0=7 b/1=13 b/2=10, off by b/0=3 b/1=-3 b/2=0")
		})
		t.Run(cons.String()+" sees a later transfer", func(t *testing.T) {
			h := newHistory(t, b)
			r := read(cons, 4, 7, 13, 10)
			r.Call, r.Return = 100, 200 // after the transfer returned
			h.add(transferOp(0, 1, 3, lincheck.OK, 5, 1, 1))
			h.addAt(r)
			h.add(final(7, 7, 13, 10))
			h.check("are not the state at its applied index 4")
		})
	}
	t.Run("clean", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(read(client.Serializable, 2, 10, 10, 10))
		h.add(transferOp(0, 1, 3, lincheck.OK, 5, 1, 1))
		h.add(read(client.Serializable, 4, 10, 10, 10)) // stale, but right for 4
		h.add(read(client.Lease, 5, 7, 13, 10))
		h.add(transferOp(1, 2, 2, lincheck.Unknown, 0, 5, 1))
		h.add(read(client.Linearizable, 8, 7, 11, 12)) // the unknown one applied
		h.add(read(client.Serializable, 6, 7, 13, 10)) // before it did
		h.add(final(9, 7, 11, 12))
		h.check()
		h.summaryHas("unknown 1 (applied 1", "reads value-checked 5, skipped 0")
	})
	// An unknown transfer the final read shows applied, and that must
	// have applied at or below 3 (the next write of its account was
	// conditioned on version 3), is in every read at 3 or above.
	t.Run("applied unknown transfer missing from a later read", func(t *testing.T) {
		for _, tc := range []struct {
			index uint64
			bad   bool
		}{{2, false}, {3, true}, {4, true}} {
			h := newHistory(t, b)
			h.add(transferOp(0, 1, 2, lincheck.Unknown, 0, 1, 1))
			h.add(transferOp(0, 2, 3, lincheck.OK, 5, 3, 1))
			h.add(read(client.Serializable, tc.index, 10, 10, 10))
			h.add(final(8, 5, 12, 13))
			if tc.bad {
				h.check(fmt.Sprintf("are not the state at its applied index %d", tc.index))
			} else {
				h.check()
			}
		}
	})
	// Once the final read shows that an unknown transfer never applied,
	// no read may show it.
	t.Run("unknown transfer resolved by the final read", func(t *testing.T) {
		h := newHistory(t, b)
		h.add(transferOp(1, 2, 2, lincheck.Unknown, 0, 1, 1))
		h.add(read(client.Serializable, 8, 10, 8, 12))
		h.add(final(9, 10, 10, 10))
		h.check("are not the state at its applied index 8", "which no subset of the 0 transfers of unknown outcome")
	})
}

// TestBankSearchSubsets compares searchSubsets with an enumeration of every
// subset, on random problems.
func TestBankSearchSubsets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	found := 0
	for iter := range 400 {
		n := 2 + rng.IntN(4)
		k := rng.IntN(11)
		moves := make([]move, k)
		for i := range moves {
			f := rng.IntN(n)
			to := (f + 1 + rng.IntN(n-1)) % n
			moves[i] = move{from: f, to: to, amount: 1 + rng.Int64N(int64(1+rng.IntN(6)))}
		}
		target := make([]int64, n)
		if rng.IntN(3) > 0 { // a reachable one
			for _, m := range moves {
				if rng.IntN(2) == 0 {
					m.apply(target)
				}
			}
		} else {
			for a := range target {
				target[a] = rng.Int64N(5) - 2
			}
		}
		// Enumerate.
		wantFound := false
		wantIn, wantOut := make([]bool, k), make([]bool, k)
		for set := range 1 << k {
			sum := make([]int64, n)
			for i, m := range moves {
				if set&(1<<i) != 0 {
					m.apply(sum)
				}
			}
			if !slices.Equal(sum, target) {
				continue
			}
			wantFound = true
			for i := range moves {
				if set&(1<<i) != 0 {
					wantIn[i] = true
				} else {
					wantOut[i] = true
				}
			}
		}
		got := searchSubsets(target, moves, 1<<20, true)
		if got.undecided || got.found != wantFound {
			t.Fatalf("problem %d: %v → %v: found %v undecided %v, want found %v", iter, moves, target, got.found, got.undecided, wantFound)
		}
		if wantFound {
			found++
			if !slices.Equal(got.canIn, wantIn) || !slices.Equal(got.canOut, wantOut) {
				t.Fatalf("problem %d: %v → %v: in %v out %v, want in %v out %v", iter, moves, target, got.canIn, got.canOut, wantIn, wantOut)
			}
		}
		if plain := searchSubsets(target, moves, 1<<20, false); plain.found != wantFound {
			t.Fatalf("problem %d: without resolving: found %v, want %v", iter, plain.found, wantFound)
		}
	}
	if found < 100 || found > 390 {
		t.Errorf("%d of 400 problems had a solution: the test does not test both ways", found)
	}
	// The bound.
	moves := make([]move, 30)
	target := make([]int64, 5)
	for i := range moves {
		moves[i] = move{from: i % 5, to: (i + 2) % 5, amount: 1 + rng.Int64N(1000)}
		if i%2 == 0 {
			moves[i].apply(target)
		}
	}
	if got := searchSubsets(target, moves, 1000, false); !got.undecided || got.found {
		t.Errorf("30 large moves within 1000 states: found %v undecided %v, want undecided", got.found, got.undecided)
	}
}

// TestBankCatchesLostAndRefusedTransfers is the control of the
// reconciliation and of the monotonic reads on real data: bank workers
// on a real cluster, then three transfers done behind the log's back
// (x, z, and z undone), then the final read. Recorded as they were, the
// log checks clean; recorded otherwise — x missing or refused, z
// acknowledged but its undoing missing, an early read replayed late —
// Check must report it.
func TestBankCatchesLostAndRefusedTransfers(t *testing.T) {
	c, ctx := bankCluster(t)
	cl := c.Client()
	b := Bank{Prefix: "recon/", Accounts: 4, Initial: 100, OpTimeout: 5 * time.Second}
	if err := b.Setup(ctx, cl); err != nil {
		t.Fatal(err)
	}
	log := NewBankLog()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		rng := rand.New(rand.NewPCG(3, uint64(w)))
		wg.Go(func() { b.Run(stop, cl, rng, log) })
	}
	tick := time.NewTicker(20 * time.Millisecond)
	for ctx.Err() == nil {
		if ok, reads := tally(log, b); ok >= 20 && reads[client.Linearizable] > 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the workload did not get going: %s", log.Summary())
	}

	// raw moves amount between two accounts behind the log's back (from
	// the richest to the poorest, or back for undo) and returns the op
	// that records it.
	raw := func(amount int64, undo *BankOp) BankOp {
		t.Helper()
		op := BankOp{Kind: BankTransfer, Amount: amount, Sent: true, Outcome: lincheck.OK, Call: int64(time.Since(log.start))}
		res, err := cl.Scan(ctx, []byte(b.Prefix), b.scanEnd(), b.Accounts+1)
		if err != nil {
			t.Fatal(err)
		}
		bal := map[string]int64{}
		vers := map[string]uint64{}
		for _, kv := range res.KVs {
			n, err := strconv.ParseInt(string(kv.Value), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			bal[string(kv.Key)], vers[string(kv.Key)] = n, uint64(kv.Version)
		}
		keys := b.Keys()
		slices.SortFunc(keys, func(x, y string) int { return int(bal[y] - bal[x]) })
		op.From, op.To = keys[0], keys[len(keys)-1]
		if undo != nil {
			op.From, op.To = undo.To, undo.From
		}
		for _, k := range []string{op.From, op.To} {
			op.Balances = append(op.Balances, Balance{Key: k, Value: strconv.FormatInt(bal[k], 10), Version: vers[k]})
		}
		r, err := cl.Batch(ctx, client.NewBatch().
			CompareAndSwap([]byte(op.From), client.IfVersion(client.Version(vers[op.From])), []byte(strconv.FormatInt(bal[op.From]-amount, 10))).
			CompareAndSwap([]byte(op.To), client.IfVersion(client.Version(vers[op.To])), []byte(strconv.FormatInt(bal[op.To]+amount, 10))))
		if err != nil {
			t.Fatal(err)
		}
		op.Return = int64(time.Since(log.start))
		op.Node, op.AppliedIndex = uint64(r.Header.Node), uint64(r.Header.AppliedIndex)
		return op
	}
	x := raw(7, nil)
	z := raw(5, nil)
	zBack := raw(5, &z)
	if _, err := b.Read(ctx, cl, log); err != nil {
		t.Fatal(err)
	}
	ops := log.Ops()
	fin := ops[len(ops)-1]
	t.Logf("workload: %s; x %v, z %v, z undone %v", log.Summary(), x, z, zBack)

	with := func(out lincheck.Outcome, op BankOp) BankOp {
		op.Outcome = out
		if out != lincheck.OK {
			op.AppliedIndex, op.Node = 0, 0
		}
		return op
	}
	// An early linearizable read, replayed after the final read.
	var stale BankOp
	for _, op := range ops {
		if op.Kind == BankRead && op.Outcome == lincheck.OK && op.Consistency == client.Linearizable.String() && op.AppliedIndex < fin.AppliedIndex {
			stale = op
			stale.Call, stale.Return = fin.Return+1, fin.Return+2
			break
		}
	}
	if stale.Kind == "" {
		t.Fatal("no linearizable read below the final one")
	}

	for _, tc := range []struct {
		name  string
		extra []BankOp
		want  []string // nil: clean
		sum   string
	}{
		{"as it was", []BankOp{x, z, zBack}, nil, "unknown 0"},
		{"x missing", []BankOp{z, zBack}, []string{"do not reconcile"}, ""},
		{"x refused", []BankOp{with(lincheck.NotApplied, x), z, zBack}, []string{"do not reconcile", "a refused one applied"}, ""},
		{"x cas-failed", []BankOp{with(lincheck.CASFailed, x), z, zBack}, []string{"do not reconcile"}, ""},
		{"z lost", []BankOp{x, z}, []string{"do not reconcile", "an acknowledged transfer is lost"}, ""},
		{"all unknown", []BankOp{with(lincheck.Unknown, x), with(lincheck.Unknown, z), with(lincheck.Unknown, zBack)}, nil,
			"unknown 3 (applied 1, not applied 0, undetermined 2)"},
		{"stale read", []BankOp{x, z, zBack, stale}, []string{"stale read", fmt.Sprintf("applied index %d is below index %d of op", stale.AppliedIndex, fin.AppliedIndex)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &history{t: t, b: b, log: NewBankLog()}
			h.log.start = log.start
			h.log.use(b)
			for _, op := range slices.Concat(ops, tc.extra) {
				h.addAt(op)
			}
			h.check(tc.want...)
			if tc.sum != "" {
				h.summaryHas(tc.sum)
			}
		})
	}
}

// TestBankUnknownOutcomes: on a real cluster, workers whose calls time
// out so soon that many transfers end with an unknown outcome (some of
// them applied, some not), beside workers that wait: the log must check
// clean, the search resolving the unknown ones. Against false alarms.
func TestBankUnknownOutcomes(t *testing.T) {
	c, ctx := bankCluster(t)
	cl := c.Client()
	b := Bank{Prefix: "unknown/", Accounts: 5, Initial: 100, OpTimeout: 5 * time.Second}
	if err := b.Setup(ctx, cl); err != nil {
		t.Fatal(err)
	}
	log := NewBankLog()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hasty := b
	for w := range 4 {
		rng := rand.New(rand.NewPCG(5, uint64(w)))
		wb := b
		if w%2 == 1 {
			wb = hasty
			wb.OpTimeout = time.Duration(1+w) * time.Millisecond
		}
		wg.Go(func() { wb.Run(stop, cl, rng, log) })
	}
	unknown := func() int {
		n := 0
		for _, op := range log.Ops() {
			if op.Kind == BankTransfer && op.Sent && op.Outcome == lincheck.Unknown {
				n++
			}
		}
		return n
	}
	tick := time.NewTicker(20 * time.Millisecond)
	for ctx.Err() == nil {
		if ok, _ := tally(log, b); ok >= 30 && unknown() >= 10 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	if _, err := b.Read(ctx, cl, log); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := b.Check(log)
	t.Logf("%s; Check took %v", log.Summary(), time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if n := unknown(); n < 10 {
		t.Errorf("only %d transfers of unknown outcome: the test tested little", n)
	}
}

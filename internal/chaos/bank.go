package chaos

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/lincheck"
	"github.com/cairnkv/cairn/kv"
)

// Bank is the bank workload: Accounts keys under Prefix, each holding a
// balance in decimal. A transfer moves an amount from one account to
// another in one atomic batch of two compare-and-swaps, each conditioned
// on the version its balance was read at, so the total never changes and
// no balance goes negative. A read sees every account in one Scan, which
// the server serves from one point-in-time snapshot of one replica's
// state machine (kv.StateMachine.Scan reads one Pebble snapshot, and
// Apply commits each batch of entries in one engine batch), so every
// read, at any consistency, must sum to Total.
//
// Check goes further than the sums. Each transfer that went through
// reports the log index that applied it, and each read the applied index
// of the state it read (both from client.Header.AppliedIndex, which the
// server takes from the same engine snapshot as the data), so the log
// pins down which state every read must have seen; see Check.
//
// Nothing else may write keys under Prefix. The accounts must fit in one
// page of a Scan: Accounts+1 keys (the +1 shows an extra account as such
// rather than as a second page), well within the server's cap of
// kv.DefaultMaxScanLimit pairs (server.Config.MaxScanLimit) and its page
// byte budget (the group's max_request_size, 4 MiB by default).
type Bank struct {
	// Prefix is the accounts' key prefix, e.g. "bank/". Account i is
	// Prefix followed by i in decimal.
	Prefix string
	// Accounts is the number of accounts, at least 2, e.g. 5.
	Accounts int
	// Initial is each account's starting balance, e.g. 100.
	Initial int64
	// OpTimeout bounds each client call of an operation (each read, each
	// batch). Default 5s.
	OpTimeout time.Duration
	// MaxSearchStates bounds Check's search for the subset of transfers
	// of unknown outcome that explains the final read (see Check): the
	// number of distinct partial balance vectors it may hold. Default
	// DefaultMaxSearchStates. Beyond it the check is undecided, which
	// Check reports as a violation.
	MaxSearchStates int

	// torn, if set, breaks transfers on purpose (for the control test):
	// they write the two accounts with two separate Puts and call
	// torn.pause between them. A pointer, so that Bank stays comparable.
	torn *tornHook
}

// tornHook is what a deliberately broken transfer calls between its two
// writes.
type tornHook struct{ pause func() }

// defaultOpTimeout is OpTimeout's default.
const defaultOpTimeout = 5 * time.Second

// transferShare is the share of Run's operations that are transfers.
const transferShare = 0.6

// DefaultMaxSearchStates is Bank.MaxSearchStates's default: at most
// about 40 MB of search states.
const DefaultMaxSearchStates = 1 << 19

// The value check of the reads other than the final one (see Check) is
// best effort: each read's search may hold readSearchStates states, all
// of them together readSearchBudget; a read beyond either is skipped
// (and counted as such in Summary), not failed.
const (
	readSearchStates = 1 << 14
	readSearchBudget = 1 << 21
)

func (b Bank) maxSearchStates() int {
	if b.MaxSearchStates > 0 {
		return b.MaxSearchStates
	}
	return DefaultMaxSearchStates
}

func (b Bank) opTimeout() time.Duration {
	if b.OpTimeout > 0 {
		return b.OpTimeout
	}
	return defaultOpTimeout
}

// validate checks b's layout.
func (b Bank) validate() error {
	var errs []error
	if b.Prefix == "" {
		errs = append(errs, errors.New("chaos: bank: Prefix is empty"))
	}
	if b.Accounts < 2 || b.Accounts >= kv.DefaultMaxScanLimit {
		errs = append(errs, fmt.Errorf("chaos: bank: Accounts %d not in [2, %d)", b.Accounts, kv.DefaultMaxScanLimit))
	}
	if b.Initial < 0 {
		errs = append(errs, fmt.Errorf("chaos: bank: Initial %d is negative", b.Initial))
	}
	return errors.Join(errs...)
}

// Total is the sum of the balances: Accounts × Initial.
func (b Bank) Total() int64 { return int64(b.Accounts) * b.Initial }

// Keys returns the accounts' keys, in order.
func (b Bank) Keys() []string {
	ks := make([]string, 0, b.Accounts)
	for i := range b.Accounts {
		ks = append(ks, b.Prefix+strconv.Itoa(i))
	}
	return ks
}

// scanEnd is the exclusive end of the keys under b.Prefix: the prefix
// with its last byte below 0xff incremented (nil, no bound, if none).
func (b Bank) scanEnd() []byte {
	end := []byte(b.Prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Setup creates the accounts with their initial balances in one batch of
// CompareAndSwap(IfAbsent) ops. It is idempotent: if the accounts already
// exist with the same layout (exactly Keys, each a non-negative balance,
// summing to Total) it succeeds; otherwise it returns an error. It retries
// an outcome-unknown or unavailable result until ctx ends.
func (b Bank) Setup(ctx context.Context, cl *client.Client) error {
	if err := b.validate(); err != nil {
		return err
	}
	init := []byte(strconv.FormatInt(b.Initial, 10))
	batch := client.NewBatch()
	for _, k := range b.Keys() {
		batch.CompareAndSwap([]byte(k), client.IfAbsent(), init)
	}
	for {
		octx, cancel := context.WithTimeout(ctx, b.opTimeout())
		_, err := cl.Batch(octx, batch)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, client.ErrCASFailed):
			// Created before (perhaps by an earlier attempt of ours).
			return b.checkLayout(ctx, cl)
		case errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrClosed):
			return fmt.Errorf("chaos: bank setup: %w", err)
		}
		if perr := pause(ctx, 100*time.Millisecond); perr != nil {
			return fmt.Errorf("chaos: bank setup: %w (last attempt: %w)", perr, err)
		}
	}
}

// checkLayout reads the accounts (retrying failed reads until ctx ends)
// and checks that they are exactly Keys, non-negative, summing to Total.
func (b Bank) checkLayout(ctx context.Context, cl *client.Client) error {
	for {
		octx, cancel := context.WithTimeout(ctx, b.opTimeout())
		res, err := cl.Scan(octx, []byte(b.Prefix), b.scanEnd(), b.Accounts+1)
		cancel()
		if errors.Is(err, client.ErrClosed) {
			return fmt.Errorf("chaos: bank setup: reading the existing accounts: %w", err)
		}
		if err == nil {
			op := BankOp{Kind: BankRead, Outcome: lincheck.OK, Balances: balancesOf(res.KVs), Continuation: len(res.Continuation) > 0}
			if v := b.violations(op); len(v) > 0 {
				return fmt.Errorf("chaos: bank setup: the accounts exist with another layout: %s", strings.Join(v, "; "))
			}
			return nil
		}
		if perr := pause(ctx, 100*time.Millisecond); perr != nil {
			return fmt.Errorf("chaos: bank setup: reading the existing accounts: %w (last attempt: %w)", perr, err)
		}
	}
}

// pause waits d, or until ctx ends (then returning its error).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run is one worker: until stop is closed, it does transfers (about 60%)
// and reads (40%). A transfer picks two accounts, reads both balances
// (with a linearizable Get each, or with one linearizable Scan of every
// account, recorded as a read too), and sends one batch of two
// compare-and-swaps, conditioned on the versions read, moving a random
// amount that keeps the source non-negative (from the other account if
// the first is empty). A read is one Scan of every account at a
// consistency drawn at random. Run lets the operation in flight finish
// (each client call is bounded by OpTimeout, not by stop); it returns
// early if cl is closed. Several workers may share cl and log; each needs
// its own rng.
func (b Bank) Run(stop <-chan struct{}, cl *client.Client, rng *rand.Rand, log *BankLog) {
	if b.Accounts < 2 {
		panic(fmt.Sprintf("chaos: bank: Run with %d accounts", b.Accounts))
	}
	log.use(b)
	consistencies := []client.Consistency{client.Linearizable, client.Lease, client.Serializable}
	for {
		select {
		case <-stop:
			return
		default:
		}
		var err error
		if rng.Float64() < transferShare {
			err = b.transfer(cl, rng, log)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
			_, err = b.scan(ctx, cl, consistencies[rng.IntN(len(consistencies))], scanRead, log)
			cancel()
		}
		if errors.Is(err, client.ErrClosed) {
			return
		}
	}
}

// Read is the final read: it does one linearizable Scan of every
// account, records it marked Final, and returns the balances. Call it
// once the workers have stopped (retrying it if it fails): Check
// reconciles every transfer against the last Read that completed. It
// fails if the scan failed, returned more than one page, or read a
// balance that does not parse; a missing or extra account, a negative
// balance or a sum other than Total is left to Check (the balances read
// are returned).
func (b Bank) Read(ctx context.Context, cl *client.Client, log *BankLog) (map[string]int64, error) {
	log.use(b)
	op, err := b.scan(ctx, cl, client.Linearizable, scanFinal, log)
	if err != nil {
		return nil, err
	}
	if op.Continuation {
		return nil, fmt.Errorf("chaos: bank read: the accounts did not fit in one page (%d accounts, %d keys read)", b.Accounts, len(op.Balances))
	}
	bal := map[string]int64{}
	var errs []error
	for _, x := range op.Balances {
		n, err := strconv.ParseInt(x.Value, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("chaos: bank read: balance of %s: %w", x.Key, err))
			continue
		}
		bal[x.Key] = n
	}
	return bal, errors.Join(errs...)
}

// scanKind is what a scan is for.
type scanKind int

const (
	scanRead     scanKind = iota // one of Run's reads
	scanTransfer                 // a transfer's read of the balances
	scanFinal                    // Read's
)

// scan reads every account at consistency c with one Scan and records it.
func (b Bank) scan(ctx context.Context, cl *client.Client, c client.Consistency, kind scanKind, log *BankLog) (BankOp, error) {
	op := BankOp{Kind: BankRead, Consistency: c.String(), InTransfer: kind == scanTransfer, Final: kind == scanFinal}
	log.begin(&op)
	res, err := cl.Scan(ctx, []byte(b.Prefix), b.scanEnd(), b.Accounts+1, client.WithConsistency(c))
	op.Outcome = lincheck.Classify(lincheck.Get, err).Outcome
	if err != nil {
		op.Err = err.Error()
	} else {
		op.Balances = balancesOf(res.KVs)
		op.Continuation = len(res.Continuation) > 0
		op.Node, op.AppliedIndex = uint64(res.Header.Node), uint64(res.Header.AppliedIndex)
	}
	log.end(op)
	if err != nil {
		return op, fmt.Errorf("chaos: bank %s scan: %w", c, err)
	}
	return op, nil
}

func balancesOf(kvs []client.KeyValue) []Balance {
	bs := make([]Balance, 0, len(kvs))
	for _, x := range kvs {
		bs = append(bs, Balance{Key: string(x.Key), Value: string(x.Value), Version: uint64(x.Version)})
	}
	return bs
}

// transfer does one transfer and records it.
func (b Bank) transfer(cl *client.Client, rng *rand.Rand, log *BankLog) error {
	keys := b.Keys()
	i := rng.IntN(len(keys))
	j := rng.IntN(len(keys) - 1)
	if j >= i {
		j++
	}
	from, to := keys[i], keys[j]
	byScan := rng.IntN(2) == 0

	op := BankOp{Kind: BankTransfer, From: from, To: to}
	log.begin(&op)
	done := func(out lincheck.Outcome, err error) error {
		op.Outcome = out
		if err != nil {
			op.Err = err.Error()
		}
		log.end(op)
		return err
	}

	// The balances, as read.
	read := map[string]Balance{}
	if byScan {
		ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
		r, err := b.scan(ctx, cl, client.Linearizable, scanTransfer, log)
		cancel()
		if err != nil {
			return done(lincheck.NotApplied, fmt.Errorf("reading the balances: %w", err))
		}
		for _, x := range r.Balances {
			if x.Key == from || x.Key == to {
				read[x.Key] = x
			}
		}
	} else {
		for _, k := range []string{from, to} {
			ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
			res, err := cl.Get(ctx, []byte(k))
			cancel()
			switch {
			case errors.Is(err, client.ErrKeyNotFound):
			case err != nil:
				return done(lincheck.NotApplied, fmt.Errorf("reading the balances: %w", err))
			default:
				read[k] = Balance{Key: k, Value: string(res.Value), Version: uint64(res.Version)}
			}
		}
	}
	vals := map[string]int64{}
	for _, k := range []string{from, to} {
		x, ok := read[k]
		if !ok {
			op.Missing = append(op.Missing, k)
			continue
		}
		op.Balances = append(op.Balances, x)
		n, err := strconv.ParseInt(x.Value, 10, 64)
		if err != nil || n < 0 {
			continue // Check reports it
		}
		vals[k] = n
	}
	if len(vals) < 2 {
		return done(lincheck.NotApplied, errors.New("a balance is missing, negative or unparsable"))
	}
	if vals[from] == 0 {
		from, to = to, from
		op.From, op.To = from, to
	}
	if vals[from] == 0 {
		return done(lincheck.NotApplied, errors.New("both accounts are empty"))
	}
	op.Amount = 1 + rng.Int64N(vals[from])
	newFrom := []byte(strconv.FormatInt(vals[from]-op.Amount, 10))
	newTo := []byte(strconv.FormatInt(vals[to]+op.Amount, 10))
	op.Sent = true

	if b.torn != nil {
		// The control: not atomic, and unconditional.
		ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
		defer cancel()
		if _, err := cl.Put(ctx, []byte(from), newFrom); err != nil {
			return done(lincheck.Classify(lincheck.Put, err).Outcome, err)
		}
		b.torn.pause()
		res, err := cl.Put(ctx, []byte(to), newTo)
		if err == nil {
			op.Node, op.AppliedIndex = uint64(res.Header.Node), uint64(res.Header.AppliedIndex)
		}
		return done(lincheck.Classify(lincheck.Put, err).Outcome, err)
	}

	batch := client.NewBatch().
		CompareAndSwap([]byte(from), client.IfVersion(client.Version(read[from].Version)), newFrom).
		CompareAndSwap([]byte(to), client.IfVersion(client.Version(read[to].Version)), newTo)
	ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
	res, err := cl.Batch(ctx, batch)
	cancel()
	if err == nil {
		op.Node, op.AppliedIndex = uint64(res.Header.Node), uint64(res.Header.AppliedIndex)
	}
	return done(lincheck.Classify(lincheck.CompareAndSwap, err).Outcome, err)
}

// Check returns an error listing every violation in log. Per operation:
// a completed read whose accounts do not sum to Total, a negative balance
// (read by a read or by a transfer), a missing or extra account, an
// unparsable balance, a read that did not fit in one page. Across
// operations:
//
//   - Reconciliation. The final read is the last read recorded by Read
//     (marked Final) that completed; a log in which some transfer was
//     sent must have one. Its balances, at its applied index A, must be
//     the initial ones plus the amounts moved by every acknowledged (ok)
//     transfer applied at or below A, plus those of SOME subset of the
//     transfers of unknown outcome, and of none refused (not-applied,
//     cas-failed): so no acknowledged transfer is lost and no refused
//     one applied. (An ok transfer applied above A is not in it; if it
//     returned before Read was called, the final read is stale, which
//     the next check reports. Read after the workers stopped, every ok
//     transfer is at or below A.) The subset is searched exactly
//     (searchSubsets); a search that outgrows MaxSearchStates is
//     undecided, and reported as a violation: an undecided check does not
//     pass.
//   - Monotonic reads. A linearizable or lease read called after another
//     such read returned must have an applied index at least the other's,
//     and at least the index of every transfer acknowledged before it was
//     called. (Serializable reads may be stale.)
//   - Every read's value. A completed read of every account, at any
//     consistency, at applied index A must likewise be the initial
//     balances plus the ok transfers at or below A plus some subset of the
//     unknown ones that may have applied by A: the server reads the data
//     and the applied index from one engine snapshot, and the state at an
//     index is the same on every replica. This check is best effort: a read
//     whose search is too large (readSearchStates, readSearchBudget) is
//     skipped and counted in Summary.
//
// A transfer of unknown outcome u can only have applied at an index T
// above every index known to be committed when it was called (of the
// linearizable and lease reads and the ok transfers that had returned)
// and above the versions its compare-and-swaps were conditioned on; and,
// since it was conditioned on those versions, before the first ok
// transfer w that wrote either account after that version — indeed at or
// below the version of that account w was itself conditioned on (so not
// at all if that is the version u read: nothing came between). Check uses
// these bounds to rule u out of a read, or out altogether, before the
// search; and, once the final read is reconciled, rules out of every read
// at or below the final one the transfers that are in none of the final
// read's solutions, and into those that must follow them the ones in all
// of them.
//
// One exception: a serializable read that found no account at all is
// not a violation. It read a replica whose state predates Setup (one
// lagging behind, or restarting from an engine that had not yet
// re-applied its log); Setup creates every account in one batch, so no
// state holds some accounts but not all. Linearizable and lease reads
// never may.
func (b Bank) Check(log *BankLog) error {
	a := log.analysis(b)
	if len(a.lines) == 0 {
		return nil
	}
	return fmt.Errorf("chaos: bank: %d violations (total %d):\n\t%s", len(a.lines), b.Total(), strings.Join(a.lines, "\n\t"))
}

// violations lists what is wrong with one op.
func (b Bank) violations(op BankOp) []string {
	if op.Outcome != lincheck.OK && op.Kind == BankRead {
		return nil // a failed read saw nothing
	}
	var v []string
	sum, sound := int64(0), true
	seen := map[string]bool{}
	for _, x := range op.Balances {
		seen[x.Key] = true
		n, err := strconv.ParseInt(x.Value, 10, 64)
		switch {
		case err != nil:
			v = append(v, fmt.Sprintf("unparsable balance %s=%q", x.Key, x.Value))
			sound = false
			continue
		case n < 0:
			v = append(v, fmt.Sprintf("negative balance %s=%d", x.Key, n))
		}
		sum += n
	}
	for _, k := range op.Missing {
		v = append(v, "missing account "+k)
	}
	if op.Kind != BankRead {
		return v
	}
	if op.Continuation {
		v = append(v, fmt.Sprintf("the scan returned a continuation after %d keys: the accounts did not fit in one page", len(op.Balances)))
		sound = false
	}
	if len(op.Balances) == 0 && !op.Continuation && op.Consistency == client.Serializable.String() {
		return v // a state from before Setup
	}
	keys := b.Keys()
	for _, x := range op.Balances {
		if !slices.Contains(keys, x.Key) {
			v = append(v, fmt.Sprintf("extra account %s=%q", x.Key, x.Value))
			sound = false
		}
	}
	if !op.Continuation {
		for _, k := range keys {
			if !seen[k] {
				v = append(v, "missing account "+k)
				sound = false
			}
		}
	}
	if sound && sum != b.Total() {
		v = append(v, fmt.Sprintf("the accounts sum to %d, not %d: %s", sum, b.Total(), describeBalances(op.Balances)))
	}
	return v
}

func describeBalances(bs []Balance) string {
	parts := make([]string, 0, len(bs))
	for _, x := range bs {
		parts = append(parts, x.Key+"="+x.Value)
	}
	return strings.Join(parts, " ")
}

// BankOpKind is what a bank operation did.
type BankOpKind string

// The kinds of bank operations.
const (
	BankTransfer BankOpKind = "transfer"
	BankRead     BankOpKind = "read"
)

// Balance is one account as read.
type Balance struct {
	Key string `json:"key"`
	// Value is the balance as stored (decimal, if all is well).
	Value   string `json:"value"`
	Version uint64 `json:"version"`
}

// BankOp is one recorded bank operation.
type BankOp struct {
	Kind BankOpKind `json:"kind"`
	// Call and Return are nanoseconds since NewBankLog on the monotonic
	// clock, taken before the first request and after the last answer;
	// Time is the wall-clock time of the call.
	Call   int64     `json:"call"`
	Return int64     `json:"return"`
	Time   time.Time `json:"time"`
	// Outcome: for a transfer, its batch's outcome as lincheck.Classify
	// sees it (ok, cas-failed, not-applied, unknown; not-applied too when
	// the batch was never sent, see Sent); for a read, ok or unknown (it
	// failed).
	Outcome lincheck.Outcome `json:"outcome"`
	// Err is the error's text, if any.
	Err string `json:"err,omitempty"`

	// From, To and Amount are a transfer's accounts and amount (0 if
	// it sent nothing). Sent says whether its batch was sent (false
	// when reading the balances failed or found nothing to move).
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Amount int64  `json:"amount,omitempty"`
	Sent   bool   `json:"sent,omitempty"`
	// Missing are the accounts a transfer's reads found absent.
	Missing []string `json:"missing,omitempty"`

	// Balances are what the operation read: for a read, every key the
	// scan returned, in order; for a transfer, its two accounts.
	Balances []Balance `json:"balances,omitempty"`
	// Consistency is a read's consistency (client.Consistency's name).
	Consistency string `json:"consistency,omitempty"`
	// InTransfer says the read was a transfer's read of the balances.
	InTransfer bool `json:"in_transfer,omitempty"`
	// Final marks the final read, Read's: Check reconciles every
	// transfer against the last one that completed.
	Final bool `json:"final,omitempty"`
	// Continuation says the scan returned one: it did not read every
	// account in one page.
	Continuation bool `json:"continuation,omitempty"`
	// Node and AppliedIndex say who answered, from the response's
	// client.Header: for a read, at which state (the applied index of the
	// state read); for an ok transfer, the log index of the entry that
	// applied it. Zero if the operation failed.
	Node         uint64 `json:"node,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

func (op BankOp) String() string {
	d := func(ns int64) string { return time.Duration(ns).Round(time.Microsecond).String() }
	switch op.Kind {
	case BankTransfer:
		s := fmt.Sprintf("transfer %d %s→%s [%s, %s] %v", op.Amount, op.From, op.To, d(op.Call), d(op.Return), op.Outcome)
		if op.AppliedIndex > 0 {
			s += fmt.Sprintf(" at index %d", op.AppliedIndex)
		}
		return s
	case BankRead:
		final := ""
		if op.Final {
			final = "final "
		}
		return fmt.Sprintf("%s%s read [%s, %s] node %d applied %d", final, op.Consistency, d(op.Call), d(op.Return), op.Node, op.AppliedIndex)
	}
	return string(op.Kind)
}

// BankLog records every bank operation. It is safe for concurrent use.
// A log records one Bank's operations.
type BankLog struct {
	start time.Time

	mu struct {
		sync.Mutex
		ops []BankOp
		// bank is the Bank whose Run or Read used the log last (for
		// Summary), nil if none did.
		bank *Bank
	}
}

// use notes that b records into l.
func (l *BankLog) use(b Bank) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.bank = &b
}

// analysis returns b's analysis of the log's operations so far.
func (l *BankLog) analysis(b Bank) bankAnalysis { return b.analyze(l.Ops()) }

// NewBankLog returns an empty log whose clock starts now.
func NewBankLog() *BankLog { return &BankLog{start: time.Now()} }

// begin stamps op's call time.
func (l *BankLog) begin(op *BankOp) {
	now := time.Now()
	op.Call, op.Time = int64(now.Sub(l.start)), now
}

// end stamps op's return time and records it.
func (l *BankLog) end(op BankOp) {
	op.Return = int64(time.Since(l.start))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.ops = append(l.mu.ops, op)
}

// record adds an op as is (for tests).
func (l *BankLog) record(op BankOp) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.ops = append(l.mu.ops, op)
}

// Ops returns the operations recorded so far, in call order.
func (l *BankLog) Ops() []BankOp {
	l.mu.Lock()
	ops := slices.Clone(l.mu.ops)
	l.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b BankOp) int { return cmp.Compare(a.Call, b.Call) })
	return ops
}

// Summary counts the log's operations: transfers by outcome, reads by
// consistency. Once the log holds a final read (Read's), it adds what
// Check found of it: how many ok transfers are at or below its applied
// index, and into what the search resolved the transfers of unknown
// outcome (applied in every solution, in none, or undetermined: in some),
// or that it found none (the check fails) or could not decide; and how
// many other reads had their balances checked against their applied
// index, and how many were skipped as too costly.
//
//	transfers 120 (ok 80 cas-failed 30 not-applied 6 unknown 4; 5 not sent); reads 90 (linearizable 30 lease 31 serializable 29; 3 failed; 40 of them for transfers); final read at index 812: ok transfers 80, unknown 4 (applied 1, not applied 2, undetermined 1); reads value-checked 86, skipped 0
func (l *BankLog) Summary() string {
	outcomes := map[lincheck.Outcome]int{}
	cons := map[string]int{}
	var transfers, unsent, reads, failed, forTransfer int
	final := false
	for _, op := range l.Ops() {
		switch op.Kind {
		case BankTransfer:
			transfers++
			outcomes[op.Outcome]++
			if !op.Sent {
				unsent++
			}
		case BankRead:
			reads++
			cons[op.Consistency]++
			if op.Outcome != lincheck.OK {
				failed++
			}
			if op.InTransfer {
				forTransfer++
			}
			final = final || op.Final && op.Outcome == lincheck.OK
		}
	}
	var s strings.Builder
	fmt.Fprintf(&s, "transfers %d (", transfers)
	for i, o := range []lincheck.Outcome{lincheck.OK, lincheck.CASFailed, lincheck.NotApplied, lincheck.Unknown} {
		if i > 0 {
			s.WriteString(" ")
		}
		fmt.Fprintf(&s, "%v %d", o, outcomes[o])
	}
	fmt.Fprintf(&s, "; %d not sent); reads %d (", unsent, reads)
	for i, c := range []client.Consistency{client.Linearizable, client.Lease, client.Serializable} {
		if i > 0 {
			s.WriteString(" ")
		}
		fmt.Fprintf(&s, "%v %d", c, cons[c.String()])
	}
	fmt.Fprintf(&s, "; %d failed; %d of them for transfers)", failed, forTransfer)
	l.mu.Lock()
	bank := l.mu.bank
	l.mu.Unlock()
	switch {
	case bank != nil && final:
		s.WriteString("; ")
		s.WriteString(l.analysis(*bank).summary())
	case bank != nil:
		s.WriteString("; no final read yet")
	}
	return s.String()
}

// WriteFile writes the log to a new file at path as JSON lines, one per
// operation in call order (for a failure's artifacts).
func (l *BankLog) WriteFile(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chaos: bank log: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("chaos: bank log: %w", cerr)
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, op := range l.Ops() {
		if err := enc.Encode(op); err != nil {
			return fmt.Errorf("chaos: bank log: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("chaos: bank log: %w", err)
	}
	return nil
}

// bankAnalysis is what Check found in a log.
type bankAnalysis struct {
	// lines are the violations.
	lines []string
	// final is the final read's reconciliation, nil if the log has no
	// completed final read.
	final *reconciliation
	// valueChecked counts the other reads whose balances were checked
	// against their applied index, valueSkipped those skipped as too
	// costly to search.
	valueChecked, valueSkipped int
}

// reconciliation is what became of the final read.
type reconciliation struct {
	index uint64
	// acked is the number of ok transfers at or below index.
	acked int
	// unknown counts the sent transfers of unknown outcome, searched
	// those the search considered; applied, notApplied and undetermined
	// say how it resolved them: in every solution, in none, in some.
	unknown, searched, applied, notApplied, undetermined int
	// unsound: the read itself has violations (reported as such), so it
	// was not reconciled. undecided: the search gave up. failed: no
	// solution.
	unsound, undecided, failed bool
}

func (a bankAnalysis) summary() string {
	r := a.final
	if r == nil {
		return "no final read"
	}
	var s string
	switch {
	case r.unsound:
		s = fmt.Sprintf("final read at index %d: unsound, not reconciled", r.index)
	case r.undecided:
		s = fmt.Sprintf("final read at index %d: reconciliation UNDECIDED (ok transfers %d, unknown %d, %d searched)", r.index, r.acked, r.unknown, r.searched)
	case r.failed:
		s = fmt.Sprintf("final read at index %d: does NOT reconcile (ok transfers %d, unknown %d, %d searched)", r.index, r.acked, r.unknown, r.searched)
	default:
		s = fmt.Sprintf("final read at index %d: ok transfers %d, unknown %d (applied %d, not applied %d, undetermined %d)", r.index, r.acked, r.unknown, r.applied, r.notApplied, r.undetermined)
	}
	return s + fmt.Sprintf("; reads value-checked %d, skipped %d", a.valueChecked, a.valueSkipped)
}

// analyze checks ops (in call order); see Check.
func (b Bank) analyze(ops []BankOp) bankAnalysis {
	var a bankAnalysis
	fail := func(format string, args ...any) { a.lines = append(a.lines, fmt.Sprintf(format, args...)) }
	for i, op := range ops {
		for _, v := range b.violations(op) {
			fail("op %d, %v: %s", i, op, v)
		}
	}
	h := b.newHistory(ops, fail)
	h.monotonic(fail)
	h.reconcile(&a, fail)
	h.checkReads(&a, fail)
	return a
}

// bankHistory is a log prepared for the checks across operations.
type bankHistory struct {
	b    Bank
	ops  []BankOp
	keys []string
	acct map[string]int // account key → position in keys

	// sent says some transfer was sent.
	sent bool
	// okIndex are the ok transfers' indices, ascending; okSum[i] the
	// amounts the first i of them moved, by account.
	okIndex []uint64
	okSum   [][]int64
	// loose are the ok transfers that did not record their index (logs
	// made by hand): whether a read saw one is decided by time alone.
	loose []xfer
	// unknown are the sent transfers of unknown outcome; resolved[j]
	// says what the final read made of unknown[j] (nil before, or if it
	// did not reconcile): +1 applied by then, -1 not, 0 undetermined.
	unknown  []xfer
	resolved []int8
	final    int // the final read's position in ops, -1 if none

	// Committed indices: of the ok linearizable and lease reads and the
	// ok transfers with an index, in order of return; maxIndex[i] and
	// maxOp[i] are the highest index among the first i of them and its op
	// (-1 if none).
	returns  []int64
	maxIndex []uint64
	maxOp    []int
}

// xfer is one transfer, as the checks see it.
type xfer struct {
	op int
	m  move
	// lo and hi bound, for a transfer of unknown outcome, the index T at
	// which it may have applied: lo < T < hi. It never applied if lo+1 >=
	// hi.
	lo, hi uint64
}

func (x xfer) possible() bool { return x.lo+1 < x.hi }

func (b Bank) newHistory(ops []BankOp, fail func(string, ...any)) *bankHistory {
	h := &bankHistory{b: b, ops: ops, keys: b.Keys(), acct: map[string]int{}, final: -1}
	for i, k := range h.keys {
		h.acct[k] = i
	}
	type committed struct {
		ret   int64
		index uint64
		op    int
	}
	var cs []committed
	type okx struct {
		index uint64
		m     move
	}
	var oks []okx
	// The ok transfers' writes by account: at index, over the version
	// prev (0 if not recorded).
	type write struct{ index, prev uint64 }
	byAcct := make([][]write, len(h.keys))
	for i, op := range ops {
		switch {
		case op.Kind == BankRead && op.Outcome == lincheck.OK:
			if op.Final {
				h.final = i
			}
			if strongRead(op) {
				cs = append(cs, committed{op.Return, op.AppliedIndex, i})
			}
			continue
		case op.Kind != BankTransfer || !op.Sent:
			continue
		}
		h.sent = true
		if op.Outcome != lincheck.OK && op.Outcome != lincheck.Unknown {
			continue // it applied nothing
		}
		f, okf := h.acct[op.From]
		t, okt := h.acct[op.To]
		if !okf || !okt || f == t {
			fail("op %d, %v: a transfer from %q to %q, not between two accounts of the bank: it cannot be reconciled", i, op, op.From, op.To)
			continue
		}
		m := move{from: f, to: t, amount: op.Amount}
		if m.amount < 0 {
			m = move{from: t, to: f, amount: -m.amount}
		}
		switch {
		case op.Outcome == lincheck.OK && op.AppliedIndex > 0:
			oks = append(oks, okx{op.AppliedIndex, m})
			cs = append(cs, committed{op.Return, op.AppliedIndex, i})
			for _, a := range []int{f, t} {
				w := write{index: op.AppliedIndex}
				if i := slices.IndexFunc(op.Balances, func(x Balance) bool { return x.Key == h.keys[a] }); i >= 0 {
					w.prev = op.Balances[i].Version
				}
				byAcct[a] = append(byAcct[a], w)
			}
		case op.Outcome == lincheck.OK:
			h.loose = append(h.loose, xfer{op: i, m: m})
		default:
			h.unknown = append(h.unknown, xfer{op: i, m: m})
		}
	}

	slices.SortFunc(oks, func(x, y okx) int { return cmp.Compare(x.index, y.index) })
	h.okSum = [][]int64{make([]int64, len(h.keys))}
	for _, x := range oks {
		h.okIndex = append(h.okIndex, x.index)
		h.okSum = append(h.okSum, x.m.apply(slices.Clone(h.okSum[len(h.okSum)-1])))
	}
	slices.SortFunc(cs, func(x, y committed) int { return cmp.Compare(x.ret, y.ret) })
	h.maxIndex, h.maxOp = []uint64{0}, []int{-1}
	for _, c := range cs {
		h.returns = append(h.returns, c.ret)
		mi, mo := h.maxIndex[len(h.maxIndex)-1], h.maxOp[len(h.maxOp)-1]
		if mo < 0 || c.index > mi {
			mi, mo = c.index, c.op
		}
		h.maxIndex, h.maxOp = append(h.maxIndex, mi), append(h.maxOp, mo)
	}
	for _, ws := range byAcct {
		slices.SortFunc(ws, func(x, y write) int { return cmp.Compare(x.index, y.index) })
	}

	// Where each transfer of unknown outcome may have applied.
	for j := range h.unknown {
		u := &h.unknown[j]
		op := ops[u.op]
		u.lo, _ = h.committedBefore(op.Call)
		u.hi = math.MaxUint64
		for _, key := range []string{op.From, op.To} {
			i := slices.IndexFunc(op.Balances, func(x Balance) bool { return x.Key == key })
			if i < 0 {
				continue
			}
			v := op.Balances[i].Version
			u.lo = max(u.lo, v)
			if b.torn != nil {
				continue // the control's transfers are not conditioned
			}
			// Conditioned on version v of key, it applied, if at all,
			// at T before the first ok write w of key above v (w's
			// condition would have failed on version T otherwise), and
			// so at or below the version w was conditioned on.
			ws := byAcct[h.acct[key]]
			n, _ := slices.BinarySearchFunc(ws, v, func(w write, v uint64) int {
				if w.index <= v {
					return -1
				}
				return 1
			})
			if n < len(ws) {
				w := ws[n]
				u.hi = min(u.hi, w.index)
				if w.prev > 0 {
					u.hi = min(u.hi, w.prev+1)
				}
			}
		}
	}
	return h
}

// strongRead says op is a linearizable or lease read.
func strongRead(op BankOp) bool {
	return op.Kind == BankRead && (op.Consistency == client.Linearizable.String() || op.Consistency == client.Lease.String())
}

// committedBefore returns the highest index known to be committed before
// time t (an ok linearizable or lease read, or an ok transfer, returned
// before it), and its op (-1 if none).
func (h *bankHistory) committedBefore(t int64) (uint64, int) {
	n, _ := slices.BinarySearch(h.returns, t) // those that returned before t
	return h.maxIndex[n], h.maxOp[n]
}

// monotonic checks that no linearizable or lease read has an applied
// index below one known to be committed before it was called.
func (h *bankHistory) monotonic(fail func(string, ...any)) {
	for i, op := range h.ops {
		if !strongRead(op) || op.Outcome != lincheck.OK {
			continue
		}
		if index, w := h.committedBefore(op.Call); w >= 0 && op.AppliedIndex < index {
			fail("op %d, %v: stale read: its applied index %d is below index %d of op %d, %v, which returned before it was called",
				i, op, op.AppliedIndex, index, w, h.ops[w])
		}
	}
}

// balances returns what read op saw by account, false if it did not see
// every account or has violations of its own.
func (h *bankHistory) balances(op BankOp) ([]int64, bool) {
	if len(op.Balances) != len(h.keys) || len(h.b.violations(op)) > 0 {
		return nil, false
	}
	bal := make([]int64, len(h.keys))
	for _, x := range op.Balances {
		n, err := strconv.ParseInt(x.Value, 10, 64)
		if err != nil {
			return nil, false
		}
		bal[h.acct[x.Key]] = n
	}
	return bal, true
}

// expect returns what the read at position r of the log must reflect:
// sure, the amounts moved by the transfers it must include; acked, how
// many ok transfers that is; maybe, the transfers it may include, and
// which, for each of them, its position in h.unknown (-1 for one of
// h.loose). If useFinal, what the final read resolved is used (for the
// reads at or below the final one).
func (h *bankHistory) expect(r int, useFinal bool) (sure []int64, acked int, maybe []move, which []int) {
	read := h.ops[r]
	index := read.AppliedIndex
	acked, _ = slices.BinarySearch(h.okIndex, index+1)
	sure = slices.Clone(h.okSum[acked])
	for _, x := range h.loose {
		op := h.ops[x.op]
		switch {
		case op.Return < read.Call:
			x.m.apply(sure)
			acked++
		case op.Call <= read.Return:
			maybe, which = append(maybe, x.m), append(which, -1)
		}
	}
	finalIndex := uint64(0)
	if useFinal && h.resolved != nil {
		finalIndex = h.ops[h.final].AppliedIndex
		useFinal = index <= finalIndex
	}
	for j, u := range h.unknown {
		if !u.possible() || u.lo >= index || h.ops[u.op].Call > read.Return {
			continue
		}
		if useFinal && h.resolved != nil {
			switch h.resolved[j] {
			case -1:
				continue
			case +1:
				// It applied at some T <= finalIndex, T < u.hi.
				if index >= min(finalIndex, u.hi-1) {
					u.m.apply(sure)
					continue
				}
			}
		}
		maybe, which = append(maybe, u.m), append(which, j)
	}
	return sure, acked, maybe, which
}

// target returns what the maybe transfers must add up to for read op to
// be right: its balances less the initial ones less sure.
func (h *bankHistory) target(bal, sure []int64) []int64 {
	t := make([]int64, len(bal))
	for a := range bal {
		t[a] = bal[a] - h.b.Initial - sure[a]
	}
	return t
}

// describe shows a vector of balances (or amounts) by account.
func (h *bankHistory) describe(v []int64) string {
	parts := make([]string, len(v))
	for a, n := range v {
		parts[a] = fmt.Sprintf("%s=%d", h.keys[a], n)
	}
	return strings.Join(parts, " ")
}

// reconcile checks the final read; see Check.
func (h *bankHistory) reconcile(a *bankAnalysis, fail func(string, ...any)) {
	if h.final < 0 {
		if h.sent {
			fail("no final read (Bank.Read) completed: the transfers cannot be reconciled with the final balances")
		}
		return
	}
	read := h.ops[h.final]
	rec := &reconciliation{index: read.AppliedIndex, unknown: len(h.unknown)}
	a.final = rec
	bal, ok := h.balances(read)
	if !ok {
		rec.unsound = true // its violations are reported
		return
	}
	sure, acked, maybe, which := h.expect(h.final, false)
	rec.acked, rec.searched = acked, len(maybe)
	res := searchSubsets(h.target(bal, sure), maybe, h.b.maxSearchStates(), true)
	expected := slices.Clone(sure)
	for a := range expected {
		expected[a] += h.b.Initial
	}
	switch {
	case res.undecided:
		rec.undecided = true
		fail("op %d, %v: UNDECIDED, which is not a pass: could not reconcile the final balances (%s) with the %d transfers of unknown outcome that may have applied: the search outgrew %d states (Bank.MaxSearchStates)",
			h.final, read, h.describe(bal), len(maybe), h.b.maxSearchStates())
		return
	case !res.found:
		rec.failed = true
		fail("op %d, %v: the final balances (%s) do not reconcile: the initial balances plus the %d ok transfers at or below index %d give %s, off by %s, which no subset of the %d transfers of unknown outcome that may have applied makes up: an acknowledged transfer is lost, or a refused one applied",
			h.final, read, h.describe(bal), acked, read.AppliedIndex, h.describe(expected), h.describe(h.target(bal, sure)), len(maybe))
		return
	}
	h.resolved = make([]int8, len(h.unknown))
	for j := range h.resolved {
		h.resolved[j] = -1 // unless the search says otherwise
	}
	for m, j := range which {
		if j < 0 {
			continue
		}
		switch {
		case res.canIn[m] && res.canOut[m]:
			h.resolved[j] = 0
		case res.canIn[m]:
			h.resolved[j] = +1
		}
	}
	for _, r := range h.resolved {
		switch r {
		case +1:
			rec.applied++
		case -1:
			rec.notApplied++
		default:
			rec.undetermined++
		}
	}
}

// checkReads checks the balances of every completed read of every
// account but the final one against its applied index; see Check.
func (h *bankHistory) checkReads(a *bankAnalysis, fail func(string, ...any)) {
	budget := readSearchBudget
	for i, read := range h.ops {
		if i == h.final || read.Kind != BankRead || read.Outcome != lincheck.OK {
			continue
		}
		bal, ok := h.balances(read)
		if !ok {
			continue
		}
		if budget <= 0 {
			a.valueSkipped++
			continue
		}
		sure, acked, maybe, _ := h.expect(i, true)
		res := searchSubsets(h.target(bal, sure), maybe, min(readSearchStates, budget, h.b.maxSearchStates()), false)
		budget -= res.states
		if res.undecided {
			a.valueSkipped++
			continue
		}
		a.valueChecked++
		if !res.found {
			expected := slices.Clone(sure)
			for a := range expected {
				expected[a] += h.b.Initial
			}
			fail("op %d, %v: its balances (%s) are not the state at its applied index %d: the initial balances plus the %d ok transfers at or below it give %s, off by %s, which no subset of the %d transfers of unknown outcome that may have applied by then makes up",
				i, read, h.describe(bal), read.AppliedIndex, acked, h.describe(expected), h.describe(h.target(bal, sure)), len(maybe))
		}
	}
}

// move is a transfer's effect: amount (>= 0) from account from to
// account to.
type move struct {
	from, to int
	amount   int64
}

// apply adds m to the balances v and returns v.
func (m move) apply(v []int64) []int64 {
	v[m.from] -= m.amount
	v[m.to] += m.amount
	return v
}

// searchResult is what searchSubsets found.
type searchResult struct {
	// found: some subset adds up to the target. undecided: the search
	// outgrew its bound before it could tell.
	found, undecided bool
	// states is the number of states the search held.
	states int
	// canIn[i] and canOut[i] say whether moves[i] is in some solution,
	// and left out of some (if found, and asked to resolve).
	canIn, canOut []bool
}

// searchSubsets decides whether some subset of moves adds up to target
// (a vector over the accounts), exactly: a dynamic program over the
// distinct partial sums (vectors) of the moves decided so far, pruned by
// bounds. The moves are taken in order of their pair of accounts, so
// those between the same two accounts collapse into the distinct net
// amounts between them, and each account is done with as early as can be;
// a partial sum is dropped unless, for every account, the rest of the
// moves can still make up the difference (the rest can take an account
// down by at most the amounts leaving it, up by those entering it), so
// once no move is left for an account its partial sum must be exact.
//
// The cost is O(S·k) time for k moves and S states in all, and O(S)
// space for the largest level (all levels if resolve); S is at most 2^k,
// and far fewer when amounts repeat, moves share pairs or the bounds
// bite. If S would exceed maxStates the search stops, undecided. With
// resolve, a backward pass over the kept levels finds, for each move,
// whether it is in some solution and out of some.
func searchSubsets(target []int64, moves []move, maxStates int, resolve bool) searchResult {
	n, k := len(target), len(moves)
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		a, b := moves[x], moves[y]
		return cmp.Or(
			cmp.Compare(min(a.from, a.to), min(b.from, b.to)),
			cmp.Compare(max(a.from, a.to), max(b.from, b.to)),
			cmp.Compare(b.amount, a.amount))
	})
	// lo[i][a] and hi[i][a]: what moves order[i:] can add to account a.
	lo, hi := make([][]int64, k+1), make([][]int64, k+1)
	lo[k], hi[k] = make([]int64, n), make([]int64, n)
	for i := k - 1; i >= 0; i-- {
		m := moves[order[i]]
		lo[i], hi[i] = slices.Clone(lo[i+1]), slices.Clone(hi[i+1])
		lo[i][m.from] -= m.amount
		hi[i][m.to] += m.amount
	}
	fits := func(i int, s []int64, a int) bool {
		need := target[a] - s[a]
		return lo[i][a] <= need && need <= hi[i][a]
	}

	var res searchResult
	s := make([]int64, n)
	for a := range n {
		if !fits(0, s, a) {
			return res
		}
	}
	var buf []byte
	key := func(s []int64) string {
		buf = buf[:0]
		for _, x := range s {
			buf = binary.AppendVarint(buf, x)
		}
		return string(buf)
	}
	decode := func(st string, s []int64) {
		b := []byte(st)
		for a := range s {
			x, w := binary.Varint(b)
			s[a], b = x, b[w:]
		}
	}
	cur := map[string]struct{}{key(s): {}}
	res.states = 1
	var levels []map[string]struct{}
	for i := range k {
		if resolve {
			levels = append(levels, cur)
		}
		m := moves[order[i]]
		next := map[string]struct{}{}
		add := func(s []int64) bool {
			if !fits(i+1, s, m.from) || !fits(i+1, s, m.to) {
				return true
			}
			kk := key(s)
			if _, ok := next[kk]; ok {
				return true
			}
			next[kk] = struct{}{}
			res.states++
			return res.states <= maxStates
		}
		for st := range cur {
			decode(st, s)
			if !add(s) || !add(m.apply(s)) {
				res.undecided = true
				return res
			}
		}
		cur = next
		if len(cur) == 0 {
			return res
		}
	}
	// Every account fits the empty rest exactly: cur is {target}.
	res.found = len(cur) > 0
	if !resolve || !res.found {
		return res
	}
	res.canIn, res.canOut = make([]bool, k), make([]bool, k)
	good := cur
	for i := k - 1; i >= 0; i-- {
		m := moves[order[i]]
		g := map[string]struct{}{}
		for st := range levels[i] {
			keep := false
			if _, ok := good[st]; ok {
				res.canOut[order[i]], keep = true, true
			}
			decode(st, s)
			if _, ok := good[key(m.apply(s))]; ok {
				res.canIn[order[i]], keep = true, true
			}
			if keep {
				g[st] = struct{}{}
			}
		}
		good = g
	}
	return res
}

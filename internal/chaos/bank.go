package chaos

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
			_, err = b.scan(ctx, cl, consistencies[rng.IntN(len(consistencies))], false, log)
			cancel()
		}
		if errors.Is(err, client.ErrClosed) {
			return
		}
	}
}

// Read does one linearizable Scan of every account, records it, and
// returns the balances. It fails if the scan failed, returned more than
// one page, or read a balance that does not parse; a missing or extra
// account, a negative balance or a sum other than Total is left to Check
// (the balances read are returned).
func (b Bank) Read(ctx context.Context, cl *client.Client, log *BankLog) (map[string]int64, error) {
	op, err := b.scan(ctx, cl, client.Linearizable, false, log)
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

// scan reads every account at consistency c with one Scan and records it
// (inTransfer: as a transfer's read of the balances).
func (b Bank) scan(ctx context.Context, cl *client.Client, c client.Consistency, inTransfer bool, log *BankLog) (BankOp, error) {
	op := BankOp{Kind: BankRead, Consistency: c.String(), InTransfer: inTransfer}
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
		r, err := b.scan(ctx, cl, client.Linearizable, true, log)
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
		_, err := cl.Put(ctx, []byte(to), newTo)
		return done(lincheck.Classify(lincheck.Put, err).Outcome, err)
	}

	batch := client.NewBatch().
		CompareAndSwap([]byte(from), client.IfVersion(client.Version(read[from].Version)), newFrom).
		CompareAndSwap([]byte(to), client.IfVersion(client.Version(read[to].Version)), newTo)
	ctx, cancel := context.WithTimeout(context.Background(), b.opTimeout())
	_, err := cl.Batch(ctx, batch)
	cancel()
	return done(lincheck.Classify(lincheck.CompareAndSwap, err).Outcome, err)
}

// Check returns an error listing every violation in log: a completed read
// whose accounts do not sum to Total, a negative balance (read by a read
// or by a transfer), a missing or extra account, an unparsable balance, a
// read that did not fit in one page. It is nil when the log is clean.
//
// One exception: a serializable read that found no account at all is
// not a violation. It read a replica whose state predates Setup (one
// lagging behind, or restarting from an engine that had not yet
// re-applied its log); Setup creates every account in one batch, so no
// state holds some accounts but not all. Linearizable and lease reads
// never may.
func (b Bank) Check(log *BankLog) error {
	var lines []string
	for i, op := range log.Ops() {
		for _, v := range b.violations(op) {
			lines = append(lines, fmt.Sprintf("op %d, %v: %s", i, op, v))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("chaos: bank: %d violations (total %d):\n\t%s", len(lines), b.Total(), strings.Join(lines, "\n\t"))
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
	// Continuation says the scan returned one: it did not read every
	// account in one page.
	Continuation bool `json:"continuation,omitempty"`
	// Node and AppliedIndex say who answered a read, at which state.
	Node         uint64 `json:"node,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

func (op BankOp) String() string {
	d := func(ns int64) string { return time.Duration(ns).Round(time.Microsecond).String() }
	switch op.Kind {
	case BankTransfer:
		return fmt.Sprintf("transfer %d %s→%s [%s, %s] %v", op.Amount, op.From, op.To, d(op.Call), d(op.Return), op.Outcome)
	case BankRead:
		return fmt.Sprintf("%s read [%s, %s] node %d applied %d", op.Consistency, d(op.Call), d(op.Return), op.Node, op.AppliedIndex)
	}
	return string(op.Kind)
}

// BankLog records every bank operation. It is safe for concurrent use.
type BankLog struct {
	start time.Time

	mu struct {
		sync.Mutex
		ops []BankOp
	}
}

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
// consistency.
//
//	transfers 120 (ok 80 cas-failed 30 not-applied 6 unknown 4; 5 not sent); reads 90 (linearizable 30 lease 31 serializable 29; 3 failed; 40 of them for transfers)
func (l *BankLog) Summary() string {
	outcomes := map[lincheck.Outcome]int{}
	cons := map[string]int{}
	var transfers, unsent, reads, failed, forTransfer int
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

package lincheck

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cairnkv/cairn/client"
)

// Workload is what one recording worker does: operations one at a time
// on register keys (get, put, compare-and-swap, delete) and append keys
// (appends of unique tokens, and reads). How many workers run, on how
// many clients, is the caller's business: each runs Run with its own KV
// (and so its own client id) and its own random source.
type Workload struct {
	// Registers are keys for get, put, compare-and-swap and delete; Logs
	// are keys for appends (and their reads). Registers must not be empty
	// unless AppendShare is 1 or more, nor Logs unless it is 0 or less.
	Registers, Logs []string
	// AppendShare is the fraction of operations on Logs: appends, and
	// one in five a read.
	AppendShare float64
	// OpTimeout bounds one operation (its context's deadline), except
	// for a share ImpatientShare of them, which give up after 1-25ms
	// (often before the operation completes, if not before it applies) or
	// 25-425ms. It must be positive.
	OpTimeout      time.Duration
	ImpatientShare float64
	// MaxPause, if set, makes one operation in five wait up to this long
	// (drawn uniformly) before it starts.
	MaxPause time.Duration
	// LeaseReadShare is the share of register reads sent at client.Lease
	// consistency; the others are linearizable.
	LeaseReadShare float64
}

// DefaultWorkload is the cluster tests' workload: 12 registers (r0..r11)
// and 4 append keys (a0..a3), three operations in ten on the latter, one
// in ten impatient, one register read in three at lease consistency.
func DefaultWorkload() Workload {
	return Workload{
		Registers:      Keys("r", 12),
		Logs:           Keys("a", 4),
		AppendShare:    0.3,
		OpTimeout:      6 * time.Second,
		ImpatientShare: 0.1,
		LeaseReadShare: 1.0 / 3,
	}
}

// Keys returns n keys named prefix0, prefix1, ...
func Keys(prefix string, n int) []string {
	ks := make([]string, 0, n)
	for i := range n {
		ks = append(ks, fmt.Sprintf("%s%d", prefix, i))
	}
	return ks
}

// chance draws true with probability p, always with exactly one draw of
// rng (so that a worker's sequence of draws does not depend on p).
// Drawing a uint64 below p·2⁶⁴ is, for p = 1/3, rng.IntN(3) == 0 but for
// draws of probability 2⁻⁵⁴: seeds recorded before the share became a
// parameter replay the same operations.
func chance(rng *rand.Rand, p float64) bool {
	x := rng.Uint64()
	switch {
	case p <= 0:
		return false
	case p >= 1:
		return true
	}
	return x < uint64(p*(1<<64))
}

// Run issues operations through kv one at a time until stop is closed
// (it lets an operation in flight finish: its context does not derive
// from stop, so the history ends quiet). Each value it writes is unique
// in the run ("w<client id>.<n>", so client ids must be unique too); a
// compare-and-swap expects the last value the worker saw of its key, or
// its absence. rng is the worker's own: Run is not safe to share it.
func (wl Workload) Run(stop <-chan struct{}, kv *KV, rng *rand.Rand) {
	type seen struct {
		known, present bool
		value          string
	}
	last := map[string]seen{}
	for n := 0; ; n++ {
		var pause <-chan time.Time
		if wl.MaxPause > 0 && rng.IntN(5) == 0 {
			pause = time.After(time.Duration(rng.Int64N(int64(wl.MaxPause))))
		}
		select {
		case <-stop:
			return
		case <-pause:
		default:
			if pause != nil {
				select {
				case <-stop:
					return
				case <-pause:
				}
			}
		}
		// Not derived from stop: an operation in flight when the run
		// ends is let finish, so the history ends quiet. One in
		// ImpatientShare gives up early instead: those that do end with
		// unknown outcomes, open-ended in the history.
		timeout := wl.OpTimeout
		if rng.Float64() < wl.ImpatientShare {
			timeout = time.Duration(1+rng.IntN(25)) * time.Millisecond
			if rng.IntN(2) == 0 {
				timeout = time.Duration(25+rng.IntN(400)) * time.Millisecond
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		val := fmt.Sprintf("w%d.%d", kv.ID(), n)
		if rng.Float64() < wl.AppendShare {
			// Mostly appends, and reads that close the open-ended ones.
			log := wl.Logs[rng.IntN(len(wl.Logs))]
			if rng.IntN(5) == 0 {
				kv.Get(ctx, log)
			} else {
				kv.Append(ctx, log, val+AppendSep)
			}
			cancel()
			continue
		}
		key := wl.Registers[rng.IntN(len(wl.Registers))]
		switch r := rng.IntN(100); {
		case r < 35:
			var opts []client.ReadOption
			if chance(rng, wl.LeaseReadShare) {
				opts = append(opts, client.WithConsistency(client.Lease))
			}
			if out, _ := kv.Get(ctx, key, opts...); out.Outcome == OK {
				last[key] = seen{true, out.Found, out.Value}
			}
		case r < 60:
			if out, _ := kv.Put(ctx, key, val); out.Outcome == OK {
				last[key] = seen{true, true, val}
			}
		case r < 90:
			var out Output
			if s := last[key]; s.known && s.present {
				out, _ = kv.CompareAndSwap(ctx, key, s.value, val)
			} else {
				out, _ = kv.CreateIfAbsent(ctx, key, val)
			}
			switch out.Outcome {
			case OK:
				last[key] = seen{true, true, val}
			case CASFailed:
				last[key] = seen{true, out.Found, out.Value}
			}
		default:
			// Never impatient: an open-ended delete stays open to the
			// end (no value of its own lets the checker close it).
			dctx, dcancel := context.WithTimeout(context.Background(), wl.OpTimeout)
			if out, _ := kv.Delete(dctx, key); out.Outcome == OK {
				last[key] = seen{known: true}
			}
			dcancel()
		}
		cancel()
	}
}

// Summary counts a history's operations by kind and outcome, for logs:
//
//	412 ops (get 120 put 80 cas 101 delete 31 append 80; ok 350 cas-failed 40 not-applied 2 unknown 20)
func Summary(hist []Op) string {
	kinds := map[Kind]int{}
	outcomes := map[Outcome]int{}
	for _, op := range hist {
		kinds[op.Input.Kind]++
		outcomes[op.Output.Outcome]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d ops (", len(hist))
	for i, k := range []Kind{Get, Put, CompareAndSwap, Delete, Append} {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%v %d", k, kinds[k])
	}
	b.WriteString("; ")
	for i, o := range []Outcome{OK, CASFailed, NotApplied, Unknown} {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%v %d", o, outcomes[o])
	}
	b.WriteString(")")
	return b.String()
}

// ReadFinal reads each key through kv, recorded, once the run's faults
// are healed and its workers stopped: these reads pin down which
// open-ended writes took effect, and give CheckAppends its final values.
// A read that fails is retried, up to attempts times in all. It returns
// the values found (absent keys left out) and an error naming each key it
// could not read.
func ReadFinal(ctx context.Context, kv *KV, keys []string, attempts int) (map[string]string, error) {
	final := map[string]string{}
	var errs []error
	for _, key := range keys {
		for attempt := 1; ; attempt++ {
			out, err := kv.Get(ctx, key)
			if out.Outcome == OK {
				if out.Found {
					final[key] = out.Value
				}
				break
			}
			if attempt >= attempts || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("final read of %q: %w", key, err))
				break
			}
		}
	}
	return final, errors.Join(errs...)
}

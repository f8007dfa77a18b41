package lincheck

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// AppendSep ends every appended token: an append workload appends values
// that end with AppendSep and contain it nowhere else, each value unique
// in the run, so that a key's value splits back into the tokens appended.
const AppendSep = ";"

// CheckAppends checks an append workload's exactly-once and ordering
// guarantees directly, with readable errors (Check proves the same through
// the model, but says only "not linearizable"). final holds each appended
// key's value, read after every operation has ended (a linearizable read
// once the cluster healed). For every key with appends in history:
//
//   - the value is a sequence of tokens, each appended by some operation
//     of the history, none twice;
//   - every append that succeeded appears, exactly where its result said
//     (Length is the end of its token: a retry that returned the original
//     result points at the original position), and no append that was not
//     applied does; one whose outcome is unknown appears at most once;
//   - tokens appear in real-time order: if an append returned before
//     another was called, it comes first.
func CheckAppends(history []Op, final map[string]string) error {
	keys, groups := byKey(history)
	var errs []error
	for _, k := range keys {
		var appends []Op
		for _, op := range groups[k] {
			if op.Input.Kind == Append {
				appends = append(appends, op)
			}
		}
		if len(appends) == 0 {
			continue
		}
		value, ok := final[k]
		if !ok {
			errs = append(errs, fmt.Errorf("key %q: no final value", k))
			continue
		}
		errs = append(errs, checkAppendKey(k, value, appends)...)
	}
	return errors.Join(errs...)
}

func checkAppendKey(key, value string, appends []Op) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("key %q: "+format, append([]any{key}, args...)...))
	}
	byToken := map[string]Op{}
	for _, op := range appends {
		tok := op.Input.Value
		if !strings.HasSuffix(tok, AppendSep) || strings.Count(tok, AppendSep) != 1 {
			fail("appended %q: not a token (must end with %q and hold it once)", tok, AppendSep)
			continue
		}
		if _, dup := byToken[tok]; dup {
			fail("token %q appended by two operations: the check needs unique tokens", tok)
		}
		byToken[tok] = op
	}
	if value != "" && !strings.HasSuffix(value, AppendSep) {
		fail("final value %q does not end with a token", tail(value))
	}

	type placed struct {
		op  Op
		end uint64 // the token's end offset in value
	}
	seen := map[string]bool{}
	var order []placed
	var off uint64
	for _, part := range strings.SplitAfter(value, AppendSep) {
		if part == "" {
			continue
		}
		off += uint64(len(part))
		op, ok := byToken[part]
		switch {
		case !ok:
			fail("holds %q at [%d, %d), which nobody appended", part, off-uint64(len(part)), off)
			continue
		case seen[part]:
			fail("holds %q twice (again at [%d, %d)): applied more than once (%v)", part, off-uint64(len(part)), off, op)
			continue
		}
		seen[part] = true
		order = append(order, placed{op, off})
		if op.Output.Outcome == NotApplied {
			fail("holds %q, whose append was answered as not applied (%v)", part, op)
		}
		if op.Output.Outcome == OK && op.Output.Length != off {
			fail("holds %q at [%d, %d), but its append returned length %d (%v)", part, off-uint64(len(part)), off, op.Output.Length, op)
		}
	}
	for tok, op := range byToken {
		if op.Output.Outcome == OK && !seen[tok] {
			fail("lost %q, whose append succeeded (%v)", tok, op)
		}
	}

	// Real-time order: no token may come after one whose append was called
	// after it returned. Walking the tokens in value order, track the
	// latest call so far; a token whose append returned before that call
	// is out of order.
	sort.SliceStable(order, func(i, j int) bool { return order[i].end < order[j].end })
	var latest *placed
	for i := range order {
		p := &order[i]
		if latest != nil && !p.op.IsOpen() && p.op.Return < latest.op.Call {
			fail("%q (returned at %d) comes after %q (called at %d, after it returned)",
				p.op.Input.Value, p.op.Return, latest.op.Input.Value, latest.op.Call)
		}
		if latest == nil || p.op.Call > latest.op.Call {
			latest = p
		}
	}
	return errs
}

// tail is the end of a long value, for messages.
func tail(v string) string {
	if len(v) <= 40 {
		return v
	}
	return "..." + v[len(v)-40:]
}

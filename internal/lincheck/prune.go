package lincheck

import "strings"

// Pruning removes operations that cannot change a key's verdict, and
// closes open-ended ones whose effect a later operation saw, so that
// open-ended operations (each concurrent with everything after its call)
// do not blow up porcupine's search. Each rule below says why the history
// is linearizable if and only if the history the rule leaves is. Rules
// are applied one operation at a time, so each argument holds for the
// history as it is when the rule is applied.
//
// Removing: "if" is the same for every removal rule: an operation that
// has no effect and observes nothing can be placed anywhere in its
// interval, and an open-ended one after everything (its return is Open,
// and any output is accepted), so a linearization without it extends to
// one with it. Closing (narrowing an open-ended operation's interval to
// end at the return of an operation R): "if" holds because the interval
// only narrows; "only if" because the rule shows that the operation takes
// effect before R in every linearization, and R's point is before R
// returned.
//
// Rule 1. A NotApplied operation has no effect and observed nothing:
// removed.
//
// Rule 2. An open-ended Get has no effect and observed nothing: removed.
//
// The next two rules are about an open-ended Put or CompareAndSwap W on a
// key k, writing a value v that no other operation on k writes.
//
// Rule 3. If a definite operation R on k observed v (a Get or a failed
// CompareAndSwap returned it, or a successful CompareAndSwap expected
// it), W is closed at the earliest such R's return. Only W puts v in k, so
// R's state comes after W's effect.
//
// Rule 4. If no other operation on k mentions v (none returned it, no
// CompareAndSwap expects it), no operation on k is an Append, no
// definite Delete on k that reported Deleted=true returned after W was
// called, and W is still open (Return Open), W is removed. "Only if": take
// a linearization L with W; remove W, and move to the end every
// open-ended operation with no effect in L between W and X, the first
// operation after W in L that writes (a Put, a Delete, or a
// CompareAndSwap whose condition held). Call that L'. Before W and from X
// on, L and L' go through the same states (X's effect does not depend on
// the state before it: a Put or Delete overwrites, and a CompareAndSwap
// that held after W expected v, which nothing does). Between W and X, L is
// in the state "v"; every operation there that returned observed it, so
// it mentions v, or is a Delete that reported Deleted=true (and returned
// after W's call, since it follows W), or an Append's length: none exist.
// The operations left between W and X in L' thus have unknown outputs and
// no effect; none was closed by rule 3 (a closed write took effect, so it
// would be X), so all are still open, and were moved to the end, where
// they are valid as well. L' is a linearization of the history without W.
//
// Rule 5. An open-ended CompareAndSwap C expecting a value e (not
// absence) is removed if its condition cannot hold at any time after its
// call: no operation on k writes e; or exactly one does, W, which is not
// open-ended, and a definite operation R, called after W returned,
// returned before C was called, having written (a Put, a Delete, a
// CompareAndSwap that held) or observed a state other than e (a Get, a
// failed CompareAndSwap). R comes after W in every linearization, and
// after R the key never holds e again (only W writes it); so C, wherever
// it is placed after its call, has no effect, and it observed nothing.
//
// Two more rules apply to a key that only ever sees Appends and Gets, each
// append's value a token (see AppendSep) appended by no other operation.
// The key's value then only grows, token by token, and holds a token if
// and only if the append of that token took effect.
//
// Rule 6. An open-ended Append whose token a definite Get R returned took
// effect before R: it is closed at the earliest such R's return.
//
// Rule 7. If a definite Get R was called after every other operation on
// the key that is not open-ended returned, an open-ended Append whose
// token R did not return is removed. In a linearization, everything not
// open-ended precedes R; the append does not (R would hold its token), so
// it comes after R, among open-ended operations only, which accept any
// output: removing it leaves a linearization.

// prune applies the rules above to one key's ops: it returns the ops
// left (some closed), and how many it removed and closed.
func prune(ops []Op) (kept []Op, removed, closed int) {
	ops, closed, removed = pruneAppends(ops) // rules 6 and 7
	kept = make([]Op, 0, len(ops))
	for _, op := range ops {
		switch {
		case op.Output.Outcome == NotApplied: // rule 1
		case op.IsOpen() && op.Input.Kind == Get: // rule 2
		default:
			kept = append(kept, op)
		}
	}
	removed += len(ops) - len(kept)
	closed += closeObservedWrites(kept) // rule 3
	n := len(kept)
	kept = removeHopelessSwaps(kept) // rule 5
	removed += n - len(kept)
	for {
		i := removableWrite(kept) // rule 4
		if i < 0 {
			return kept, removed, closed
		}
		kept = append(kept[:i], kept[i+1:]...)
		removed++
	}
}

// isRegisterWrite says whether op writes a value of its own.
func isRegisterWrite(op Op) bool {
	return op.Input.Kind == Put || op.Input.Kind == CompareAndSwap
}

// observed returns the value a definite op saw in the key, if it saw one.
func observed(op Op) (string, bool) {
	in, out := op.Input, op.Output
	switch {
	case out.Outcome == OK && in.Kind == Get && out.Found:
		return out.Value, true
	case out.Outcome == CASFailed && out.Found:
		return out.Value, true
	case out.Outcome == OK && in.Kind == CompareAndSwap && !in.ExpectAbsent:
		return in.Expect, true
	}
	return "", false
}

// closeObservedWrites applies rule 3 to one key's ops, in place, and
// returns how many it closed.
func closeObservedWrites(ops []Op) int {
	written := map[string]int{}
	seenAt := map[string]int64{} // value -> earliest return of a definite op that saw it
	for _, op := range ops {
		if isRegisterWrite(op) {
			written[op.Input.Value]++
		}
		if op.IsOpen() {
			continue
		}
		if v, ok := observed(op); ok {
			if at, seen := seenAt[v]; !seen || op.Return < at {
				seenAt[v] = op.Return
			}
		}
	}
	closed := 0
	for i := range ops {
		op := &ops[i]
		if !isRegisterWrite(*op) || !op.IsOpen() || written[op.Input.Value] != 1 {
			continue
		}
		if at, ok := seenAt[op.Input.Value]; ok && at >= op.Call && at < op.Return {
			op.Return = at
			closed++
		}
	}
	return closed
}

// removeHopelessSwaps applies rule 5 to one key's ops.
func removeHopelessSwaps(ops []Op) []Op {
	writers := map[string][]Op{} // value -> the ops that write it
	for _, op := range ops {
		if isRegisterWrite(op) {
			writers[op.Input.Value] = append(writers[op.Input.Value], op)
		}
	}
	// movedOn reports whether a definite op left, or saw the key away
	// from, value e after w returned, and itself returned before t.
	movedOn := func(e string, w Op, t int64) bool {
		for _, r := range ops {
			if r.IsOpen() || r.Call <= w.Return || r.Return >= t {
				continue
			}
			in, out := r.Input, r.Output
			switch {
			case out.Outcome == OK && (in.Kind == Put || in.Kind == Delete || in.Kind == CompareAndSwap):
				return true // a write: e is gone (no one else writes it)
			case out.Outcome == OK && in.Kind == Get, out.Outcome == CASFailed:
				if !out.Found || out.Value != e {
					return true
				}
			}
		}
		return false
	}
	kept := make([]Op, 0, len(ops))
	for _, op := range ops {
		in := op.Input
		if op.Return == Open && in.Kind == CompareAndSwap && !in.ExpectAbsent {
			ws := writers[in.Expect]
			if len(ws) == 0 || (len(ws) == 1 && !ws[0].IsOpen() && movedOn(in.Expect, ws[0], op.Call)) {
				continue
			}
		}
		kept = append(kept, op)
	}
	return kept
}

// removableWrite returns the index of an operation in ops (one key's) that
// rule 4 removes, or -1.
func removableWrite(ops []Op) int {
	written := map[string]int{}   // value -> how many ops write it
	mentioned := map[string]int{} // value -> how many ops return or expect it
	var lastDeletedTrue int64 = -1
	for _, op := range ops {
		in, out := op.Input, op.Output
		switch {
		case in.Kind == Append:
			return -1
		case in.Kind == Delete && out.Outcome == OK && out.Deleted:
			lastDeletedTrue = max(lastDeletedTrue, op.Return)
		}
		if isRegisterWrite(op) {
			written[in.Value]++
		}
		if in.Kind == CompareAndSwap && !in.ExpectAbsent {
			mentioned[in.Expect]++
		}
		if (out.Outcome == OK && in.Kind == Get || out.Outcome == CASFailed) && out.Found {
			mentioned[out.Value]++
		}
	}
	for i, op := range ops {
		in := op.Input
		if op.Return != Open || !isRegisterWrite(op) || lastDeletedTrue >= op.Call {
			continue
		}
		self := 0
		if in.Kind == CompareAndSwap && !in.ExpectAbsent && in.Expect == in.Value {
			self = 1 // W expecting its own value mentions nothing else
		}
		if written[in.Value] == 1 && mentioned[in.Value] == self {
			return i
		}
	}
	return -1
}

// pruneAppends applies rules 6 and 7 to one key's ops, if they apply to
// the key, and returns the ops left, how many it closed and how many it
// removed.
func pruneAppends(ops []Op) (_ []Op, closed, removed int) {
	tokens := map[string]bool{}
	// The latest return of a definite operation, which one, and the
	// latest of the others.
	var (
		latest, second int64 = -1, -1
		latestAt             = -1
	)
	for i, op := range ops {
		switch op.Input.Kind {
		case Append:
			if !isToken(op.Input.Value) || tokens[op.Input.Value] {
				return ops, 0, 0
			}
			tokens[op.Input.Value] = true
		case Get:
		default:
			return ops, 0, 0
		}
		if !op.IsOpen() {
			switch {
			case op.Return > latest:
				second, latest, latestAt = latest, op.Return, i
			case op.Return > second:
				second = op.Return
			}
		}
	}
	if len(tokens) == 0 {
		return ops, 0, 0
	}
	// seenBy[token] is the earliest return of a definite Get that
	// returned it; final is the value of a Get called after every other
	// definite operation returned, if there is one.
	seenBy := map[string]int64{}
	var final *string
	for i, op := range ops {
		if op.Input.Kind != Get || op.Output.Outcome != OK {
			continue
		}
		for _, tok := range splitTokens(op.Output.Value) {
			if at, ok := seenBy[tok]; !ok || op.Return < at {
				seenBy[tok] = op.Return
			}
		}
		if i == latestAt && op.Call > second {
			v := op.Output.Value
			final = &v
		}
	}
	inFinal := map[string]bool{}
	if final != nil {
		for _, tok := range splitTokens(*final) {
			inFinal[tok] = true
		}
	}
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		if op.Input.Kind == Append && op.IsOpen() {
			if at, ok := seenBy[op.Input.Value]; ok { // rule 6
				if at < op.Return && at >= op.Call {
					op.Return = at
					closed++
				}
			} else if final != nil && !inFinal[op.Input.Value] && op.Return == Open { // rule 7
				removed++
				continue
			}
		}
		out = append(out, op)
	}
	return out, closed, removed
}

// isToken says whether v is an append token: it ends with AppendSep and
// holds it nowhere else.
func isToken(v string) bool {
	return strings.HasSuffix(v, AppendSep) && strings.Count(v, AppendSep) == 1
}

// splitTokens splits a value into its tokens (a torn tail included as
// is: it matches no token).
func splitTokens(v string) []string {
	var toks []string
	for _, t := range strings.SplitAfter(v, AppendSep) {
		if t != "" {
			toks = append(toks, t)
		}
	}
	return toks
}

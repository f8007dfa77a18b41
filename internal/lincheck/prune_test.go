package lincheck

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPruneKeepsVerdict is the property test of pruning: on random small
// single-key histories (executions of the model with random intervals,
// some open-ended or not applied, and some outputs corrupted), Check
// (pruned) agrees with porcupine on the whole history.
func TestPruneKeepsVerdict(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	counts := map[Verdict]int{}
	pruned, closed := 0, 0
	for i := range 2000 {
		var ops []Op
		if i%2 == 0 {
			ops = randomHistory(rng, 1+rng.IntN(9), rng.IntN(3) == 0)
		} else {
			ops = randomAppendHistory(rng, 1+rng.IntN(9), rng.IntN(3) == 0)
		}
		want := checkUnpruned(ops, 10*time.Second)
		res := Check(ops, Options{Timeout: 10 * time.Second, VisualizationDir: t.TempDir()})
		if res.Verdict != want {
			t.Fatalf("history %d (seed %d): pruned verdict %v, unpruned %v; pruned %d:%s",
				i, seed, res.Verdict, want, res.Pruned, describeOps(ops, 100))
		}
		counts[want]++
		pruned += res.Pruned
		closed += res.Closed
	}
	t.Logf("verdicts %v, %d operations pruned, %d closed", counts, pruned, closed)
	if counts[VerdictOk] == 0 || counts[VerdictIllegal] == 0 {
		t.Fatalf("the generator made no variety: %v", counts)
	}
}

// randomHistory runs n operations on one key against the model, from
// concurrent clients with random intervals, taking effect at a random
// point of their interval (an open-ended one possibly never). If corrupt,
// one output is then changed.
func randomHistory(rng *rand.Rand, n int, corrupt bool) []Op {
	type timed struct {
		op Op
		at int64 // when it takes effect; -1: never
	}
	var values []string
	var ts []timed
	for i := range n {
		call := rng.Int64N(50)
		ret := call + rng.Int64N(30)
		at := call + rng.Int64N(ret-call+1)
		in := Input{Key: "k"}
		v := fmt.Sprintf("v%d", i)
		switch r := rng.IntN(10); {
		case r < 3:
			in.Kind = Get
		case r < 6:
			in.Kind, in.Value = Put, v
		case r < 7:
			in.Kind = Delete
		default:
			in.Kind, in.Value = CompareAndSwap, v
			if len(values) == 0 || rng.IntN(4) == 0 {
				in.ExpectAbsent = true
			} else {
				in.Expect = values[rng.IntN(len(values))]
			}
		}
		values = append(values, v)
		op := Op{Client: i, Input: in, Call: call, Return: ret}
		switch r := rng.IntN(10); {
		case r < 3: // open-ended: may take effect any time later, or never
			op.Return = Open
			at = call + rng.Int64N(200)
			if rng.IntN(3) == 0 {
				at = -1
			}
		case r < 4 && in.Kind.IsWrite():
			op.Output.Outcome = NotApplied
			at = -1
		}
		ts = append(ts, timed{op, at})
	}
	// Execute in order of effect.
	order := slices.Clone(ts)
	slices.SortStableFunc(order, func(a, b timed) int { return int(a.at - b.at) })
	var s state
	var ops []Op
	for _, t := range order {
		op := t.op
		if t.at < 0 {
			ops = append(ops, op)
			continue
		}
		out := Output{Outcome: OK}
		switch op.Input.Kind {
		case Get:
			out.Found, out.Value = s.present, s.value
		case Delete:
			out.Deleted = s.present
		case CompareAndSwap:
			if !s.holds(op.Input) {
				out = Output{Outcome: CASFailed, Found: s.present, Value: s.value}
			}
		}
		s = s.apply(op.Input)
		if op.Return != Open {
			op.Output = out
		}
		ops = append(ops, op)
	}
	if corrupt && len(ops) > 0 {
		i := rng.IntN(len(ops))
		o := &ops[i].Output
		switch {
		case o.Outcome == OK && ops[i].Input.Kind == Get:
			o.Found = true
			o.Value = values[rng.IntN(len(values))]
		case o.Outcome == OK && ops[i].Input.Kind == Delete:
			o.Deleted = !o.Deleted
		case o.Outcome == CASFailed:
			o.Found, o.Value = rng.IntN(2) == 0, values[rng.IntN(len(values))]
		case ops[i].Return != Open:
			o.Outcome = NotApplied
		}
	}
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

// randomAppendHistory is randomHistory for an append-only key: n appends
// and reads of one key, often ending with a read after everything else
// (which rule 5 needs); corrupt changes one output.
func randomAppendHistory(rng *rand.Rand, n int, corrupt bool) []Op {
	type timed struct {
		op Op
		at int64
	}
	var ts []timed
	for i := range n {
		call := rng.Int64N(50)
		ret := call + rng.Int64N(30)
		at := call + rng.Int64N(ret-call+1)
		in := Input{Key: "k", Kind: Get}
		if rng.IntN(3) > 0 {
			in = Input{Key: "k", Kind: Append, Value: fmt.Sprintf("t%d;", i)}
		}
		op := Op{Client: i, Input: in, Call: call, Return: ret}
		switch r := rng.IntN(10); {
		case r < 4:
			op.Return = Open
			at = call + rng.Int64N(200)
			if rng.IntN(3) == 0 {
				at = -1
			}
		case r < 5 && in.Kind == Append:
			op.Output.Outcome = NotApplied
			at = -1
		}
		ts = append(ts, timed{op, at})
	}
	if rng.IntN(2) == 0 { // a final read, after every definite op
		ts = append(ts, timed{Op{Client: n, Input: Input{Key: "k", Kind: Get}, Call: 1000, Return: 1001}, 1000})
	}
	slices.SortStableFunc(ts, func(a, b timed) int { return int(a.at - b.at) })
	var s state
	var ops []Op
	for _, t := range ts {
		op := t.op
		if t.at >= 0 {
			s = s.apply(op.Input)
			if op.Return != Open {
				op.Output = Output{Outcome: OK}
				switch op.Input.Kind {
				case Get:
					op.Output.Found, op.Output.Value = s.present, s.value
				case Append:
					op.Output.Length = uint64(len(s.value))
				}
			}
		}
		ops = append(ops, op)
	}
	if corrupt && len(ops) > 0 {
		i := rng.IntN(len(ops))
		o := &ops[i].Output
		switch {
		case o.Outcome == OK && ops[i].Input.Kind == Get && len(o.Value) > 0:
			toks := splitTokens(o.Value)
			switch rng.IntN(3) {
			case 0: // a token lost
				j := rng.IntN(len(toks))
				toks = slices.Delete(toks, j, j+1)
			case 1: // a token twice
				toks = append(toks, toks[rng.IntN(len(toks))])
			default: // swapped
				j, k := rng.IntN(len(toks)), rng.IntN(len(toks))
				toks[j], toks[k] = toks[k], toks[j]
			}
			o.Value = strings.Join(toks, "")
			o.Found = o.Value != ""
		case o.Outcome == OK && ops[i].Input.Kind == Get:
			o.Found, o.Value = true, fmt.Sprintf("t%d;", rng.IntN(n))
		case o.Outcome == OK && ops[i].Input.Kind == Append:
			o.Length += 3
		case ops[i].Return != Open:
			o.Outcome = NotApplied
		}
	}
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

// TestPruneRemovesUnobservedWrites: the rules remove what they should,
// and keep what they must.
func TestPruneRemovesUnobservedWrites(t *testing.T) {
	openPut := func(c int, v string) Op {
		return opOf(c, int64(c), Open, Input{Kind: Put, Key: "k", Value: v}, Output{})
	}
	openCAS := func(c int, expect, v string) Op {
		return opOf(c, int64(c), Open, Input{Kind: CompareAndSwap, Key: "k", Expect: expect, Value: v}, Output{})
	}
	openAppend := func(c int, tok string) Op {
		return opOf(c, int64(c), Open, Input{Kind: Append, Key: "k", Value: tok}, Output{})
	}
	for _, tc := range []struct {
		name            string
		ops             []Op
		closed, removed int
	}{
		{"unobserved open put", []Op{put(0, 0, 1, "k", "a"), openPut(1, "b"), get(2, 5, 6, "k", "a")}, 0, 1},
		{"observed open put is closed", []Op{openPut(1, "b"), get(2, 5, 6, "k", "b"), get(2, 7, 8, "k", "b")}, 1, 0},
		{"open put expected by a cas is closed", []Op{openPut(1, "b"), cas(2, 5, 6, "k", "b", "c")}, 1, 0},
		{"open put reported by a failed cas is closed", []Op{openPut(1, "b"), casFailed(2, 5, 6, "k", "x", "c", "b")}, 1, 0},
		{"open put expected by an open cas stays", []Op{
			openPut(1, "b"), opOf(2, 5, Open, Input{Kind: CompareAndSwap, Key: "k", Expect: "b", Value: "c"}, Output{}),
			get(3, 10, 11, "k", "c"),
		}, 1, 0},
		{"open put written twice stays", []Op{openPut(1, "b"), put(2, 3, 4, "k", "b"), get(2, 5, 6, "k", "b")}, 0, 0},
		{"deleted=true after the put's call observes presence", []Op{openPut(1, "b"), del(2, 5, 6, "k", true)}, 0, 0},
		{"deleted=true before the put's call does not", []Op{
			put(0, 0, 1, "k", "a"), del(0, 2, 3, "k", true), openPut(5, "b"),
		}, 0, 1},
		{"appends observe lengths", []Op{openPut(1, "b"), appendOp(2, 5, 6, "k", "x;", 3)}, 0, 0},
		{"open and not-applied reads and writes", []Op{
			opOf(0, 0, Open, Input{Kind: Get, Key: "k"}, Output{}),
			notApplied(put(1, 0, 1, "k", "z")),
			openPut(2, "q"),
		}, 0, 3},
		{"chain: pruning one frees another", []Op{
			openPut(1, "b"),
			opOf(2, 2, Open, Input{Kind: CompareAndSwap, Key: "k", Expect: "b", Value: "c"}, Output{}),
		}, 0, 2},
		{"open cas expecting an overwritten value is removed", []Op{
			put(0, 0, 1, "k", "a"), put(0, 2, 3, "k", "b"), openCAS(5, "a", "c"), del(1, 10, 11, "k", true),
		}, 0, 1},
		{"open cas expecting a value seen gone is removed", []Op{
			put(0, 0, 1, "k", "a"), getAbsent(1, 2, 3, "k"), openCAS(5, "a", "c"), del(1, 10, 11, "k", true),
		}, 0, 1},
		{"open cas expecting a value nobody writes is removed", []Op{
			openCAS(5, "zz", "c"), del(1, 10, 11, "k", true),
		}, 0, 1},
		{"open cas expecting a value not yet gone stays", []Op{
			put(0, 0, 1, "k", "a"), put(0, 2, 6, "k", "b"), openCAS(5, "a", "c"), del(1, 10, 11, "k", true),
		}, 0, 0},
		{"open cas expecting an open write's value stays", []Op{
			openPut(0, "a"), put(1, 2, 3, "k", "b"), openCAS(5, "a", "c"), del(1, 10, 11, "k", true),
		}, 0, 0},
		{"open append seen by a read is closed at its return", []Op{
			openAppend(0, "a;"), get(1, 5, 6, "k", "a;"), get(1, 7, 8, "k", "a;"),
		}, 1, 0},
		{"open append absent from the final read is removed", []Op{
			appendOp(0, 0, 1, "k", "b;", 2), openAppend(1, "a;"), get(2, 10, 11, "k", "b;"),
		}, 0, 1},
		{"open append, no read after everything: kept", []Op{
			appendOp(0, 0, 20, "k", "b;", 2), openAppend(1, "a;"), get(2, 10, 11, "k", "b;"),
		}, 0, 0},
		{"not an append-only key: rules 4 and 5 do not apply", []Op{
			openAppend(1, "a;"), get(2, 10, 11, "k", "a;"), put(0, 20, 21, "k", "x"), get(2, 30, 31, "k", "x"),
		}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, removed, closed := prune(tc.ops); removed != tc.removed || closed != tc.closed {
				t.Fatalf("removed %d and closed %d, want %d and %d", removed, closed, tc.removed, tc.closed)
			}
		})
	}
}

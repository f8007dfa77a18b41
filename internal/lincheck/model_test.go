package lincheck

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestModel checks hand-written histories, linearizable and not, against
// the model: each through Check (pruned) and through porcupine directly
// (unpruned), which must agree.
func TestModel(t *testing.T) {
	const k = "k"
	for _, tc := range []struct {
		name string
		ops  []Op
		want Verdict
	}{
		// Registers.
		{"empty history", nil, VerdictOk},
		{"read of a key never written is absent", []Op{getAbsent(0, 0, 1, k)}, VerdictOk},
		{"read of a key never written sees a value", []Op{get(0, 0, 1, k, "x")}, VerdictIllegal},
		{"sequential put then get", []Op{put(0, 0, 1, k, "a"), get(0, 2, 3, k, "a")}, VerdictOk},
		{"stale read after a completed put", []Op{
			put(0, 0, 1, k, "a"), put(0, 2, 3, k, "b"), get(1, 4, 5, k, "a"),
		}, VerdictIllegal},
		{"read concurrent with a put sees the old value", []Op{
			put(0, 0, 1, k, "a"), put(0, 2, 10, k, "b"), get(1, 3, 4, k, "a"),
		}, VerdictOk},
		{"read concurrent with a put sees the new value", []Op{
			put(0, 0, 1, k, "a"), put(0, 2, 10, k, "b"), get(1, 3, 4, k, "b"),
		}, VerdictOk},
		{"reads go back in time", []Op{
			put(0, 0, 1, k, "a"), put(0, 2, 10, k, "b"), get(1, 3, 4, k, "b"), get(1, 5, 6, k, "a"),
		}, VerdictIllegal},
		{"intervals are closed: touching ops are concurrent", []Op{
			put(0, 0, 5, k, "a"), get(1, 5, 6, k, "a"),
		}, VerdictOk},
		{"read sees a value nobody wrote", []Op{
			put(0, 0, 1, k, "a"), get(1, 2, 3, k, "z"),
		}, VerdictIllegal},
		{"read sees a put before it was called", []Op{
			get(1, 0, 1, k, "a"), put(0, 2, 3, k, "a"),
		}, VerdictIllegal},
		{"delete reports presence", []Op{
			put(0, 0, 1, k, "a"), del(0, 2, 3, k, true), del(0, 4, 5, k, false), getAbsent(1, 6, 7, k),
		}, VerdictOk},
		{"delete of an absent key reports deleted", []Op{del(0, 0, 1, k, true)}, VerdictIllegal},
		{"read after a delete sees the value", []Op{
			put(0, 0, 1, k, "a"), del(0, 2, 3, k, true), get(1, 4, 5, k, "a"),
		}, VerdictIllegal},

		// Compare-and-swap.
		{"cas that held", []Op{
			put(0, 0, 1, k, "a"), cas(0, 2, 3, k, "a", "b"), get(1, 4, 5, k, "b"),
		}, VerdictOk},
		{"cas succeeded although its condition failed", []Op{
			put(0, 0, 1, k, "a"), cas(0, 2, 3, k, "x", "b"),
		}, VerdictIllegal},
		{"cas failed reporting the current value", []Op{
			put(0, 0, 1, k, "a"), casFailed(0, 2, 3, k, "x", "b", "a"), get(1, 4, 5, k, "a"),
		}, VerdictOk},
		{"cas failed reporting a wrong current value", []Op{
			put(0, 0, 1, k, "a"), casFailed(0, 2, 3, k, "x", "b", "q"),
		}, VerdictIllegal},
		{"cas failed although its condition held", []Op{
			put(0, 0, 1, k, "a"), casFailed(0, 2, 3, k, "a", "b", "a"),
		}, VerdictIllegal},
		{"cas failed reporting absence", []Op{casFailed(0, 0, 1, k, "x", "b", "<absent>")}, VerdictOk},
		{"cas on absence", []Op{
			casAbsent(0, 0, 1, k, "a"), casFailed(1, 2, 3, k, "zz", "b", "a"),
		}, VerdictOk},
		{"cas on absence of a present key", []Op{
			put(0, 0, 1, k, "a"), casAbsent(0, 2, 3, k, "b"),
		}, VerdictIllegal},
		{"two concurrent cas from one value both succeed", []Op{
			put(0, 0, 1, k, "a"), cas(0, 2, 5, k, "a", "b"), cas(1, 2, 5, k, "a", "c"),
		}, VerdictIllegal},
		{"two concurrent cas from one value, one fails", []Op{
			put(0, 0, 1, k, "a"), cas(0, 2, 5, k, "a", "b"), casFailed(1, 2, 5, k, "a", "c", "b"),
		}, VerdictOk},

		// Open-ended and not-applied operations.
		{"open-ended put seen later", []Op{
			opOf(0, 0, Open, Input{Kind: Put, Key: k, Value: "a"}, Output{}), get(1, 100, 101, k, "a"),
		}, VerdictOk},
		{"open-ended put never seen", []Op{
			opOf(0, 0, Open, Input{Kind: Put, Key: k, Value: "a"}, Output{}), getAbsent(1, 100, 101, k),
		}, VerdictOk},
		{"open-ended put seen, then not, then seen", []Op{
			opOf(0, 0, Open, Input{Kind: Put, Key: k, Value: "a"}, Output{}),
			get(1, 10, 11, k, "a"), getAbsent(1, 12, 13, k), get(1, 14, 15, k, "a"),
		}, VerdictIllegal},
		{"open-ended put seen before its call", []Op{
			get(1, 0, 1, k, "a"), opOf(0, 2, Open, Input{Kind: Put, Key: k, Value: "a"}, Output{}),
		}, VerdictIllegal},
		{"open-ended put applied long after a later put", []Op{
			put(0, 0, 1, k, "a"),
			opOf(1, 2, Open, Input{Kind: Put, Key: k, Value: "b"}, Output{}),
			put(0, 10, 11, k, "c"), get(2, 12, 13, k, "c"), get(2, 14, 15, k, "b"),
		}, VerdictOk},
		{"open-ended cas takes effect only if its condition holds", []Op{
			put(0, 0, 1, k, "a"),
			opOf(1, 2, Open, Input{Kind: CompareAndSwap, Key: k, Expect: "x", Value: "b"}, Output{}),
			get(2, 10, 11, k, "b"),
		}, VerdictIllegal},
		{"not-applied put is never seen", []Op{
			notApplied(put(0, 0, 1, k, "a")), get(1, 2, 3, k, "a"),
		}, VerdictIllegal},
		{"not-applied put, then absent", []Op{
			notApplied(put(0, 0, 1, k, "a")), getAbsent(1, 2, 3, k),
		}, VerdictOk},
		{"a failed read observes nothing", []Op{
			put(0, 0, 1, k, "a"), opOf(1, 2, Open, Input{Kind: Get, Key: k}, Output{}), get(1, 3, 4, k, "a"),
		}, VerdictOk},

		// Appends.
		{"appends in order with their lengths", []Op{
			appendOp(0, 0, 1, k, "a;", 2), appendOp(1, 2, 3, k, "bb;", 5), get(2, 4, 5, k, "a;bb;"),
		}, VerdictOk},
		{"concurrent appends in either order", []Op{
			appendOp(0, 0, 5, k, "a;", 5), appendOp(1, 0, 5, k, "bb;", 3), get(2, 6, 7, k, "bb;a;"),
		}, VerdictOk},
		{"append length disagrees with the order", []Op{
			appendOp(0, 0, 5, k, "a;", 2), appendOp(1, 0, 5, k, "bb;", 5), get(2, 6, 7, k, "bb;a;"),
		}, VerdictIllegal},
		{"append applied twice", []Op{
			appendOp(0, 0, 1, k, "a;", 2), appendOp(1, 2, 3, k, "b;", 4), get(2, 4, 5, k, "a;b;a;"),
		}, VerdictIllegal},
		{"append lost", []Op{
			appendOp(0, 0, 1, k, "a;", 2), appendOp(1, 2, 3, k, "b;", 4), get(2, 4, 5, k, "a;"),
		}, VerdictIllegal},
		{"appends out of real-time order", []Op{
			appendOp(0, 0, 1, k, "a;", 4), appendOp(1, 2, 3, k, "b;", 2), get(2, 4, 5, k, "b;a;"),
		}, VerdictIllegal},
		{"open-ended append appears once", []Op{
			appendOp(0, 0, 1, k, "a;", 2),
			opOf(1, 2, Open, Input{Kind: Append, Key: k, Value: "b;"}, Output{}),
			appendOp(0, 10, 11, k, "c;", 6), get(2, 12, 13, k, "a;b;c;"),
		}, VerdictOk},
		{"open-ended append appears twice", []Op{
			opOf(1, 0, Open, Input{Kind: Append, Key: k, Value: "b;"}, Output{}),
			get(2, 12, 13, k, "b;b;"),
		}, VerdictIllegal},
		{"open-ended append missing, then present", []Op{
			opOf(1, 0, Open, Input{Kind: Append, Key: k, Value: "b;"}, Output{}),
			appendOp(0, 1, 2, k, "a;", 2), appendOp(0, 3, 4, k, "c;", 6),
		}, VerdictOk},
		{"open-ended append present, then missing", []Op{
			opOf(1, 0, Open, Input{Kind: Append, Key: k, Value: "b;"}, Output{}),
			get(2, 1, 2, k, "b;"), appendOp(0, 3, 4, k, "a;", 2),
		}, VerdictIllegal},

		// Keys are independent.
		{"keys are independent", []Op{
			put(0, 0, 10, "x", "1"), put(1, 0, 10, "y", "2"), get(2, 1, 2, "x", "1"), getAbsent(2, 3, 4, "y"),
		}, VerdictOk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res := Check(tc.ops, Options{Timeout: 10 * time.Second, VisualizationDir: dir})
			if res.Verdict != tc.want {
				t.Errorf("Check: %v, want %v", res, tc.want)
			}
			if got := checkUnpruned(tc.ops, 10*time.Second); got != tc.want {
				t.Errorf("porcupine without pruning: %v, want %v", got, tc.want)
			}
			if (res.Err() == nil) != (tc.want == VerdictOk) {
				t.Errorf("Err() = %v for verdict %v", res.Err(), res.Verdict)
			}
			if res.Verdict == VerdictIllegal {
				if len(res.IllegalKeys) == 0 {
					t.Errorf("Illegal without keys: %v", res)
				}
				if _, err := os.Stat(res.Visualization); err != nil {
					t.Errorf("visualization: %v (%v)", err, res)
				}
			}
		})
	}
}

// TestCheckNamesIllegalKeys: of several keys, Check names the one that is
// not linearizable and writes a visualization where asked.
func TestCheckNamesIllegalKeys(t *testing.T) {
	ops := []Op{
		put(0, 0, 1, "good", "a"), get(1, 2, 3, "good", "a"),
		put(0, 4, 5, "bad", "a"), put(0, 6, 7, "bad", "b"), get(1, 8, 9, "bad", "a"),
		put(2, 0, 1, "also-good", "x"),
	}
	path := t.TempDir() + "/viz.html"
	res := Check(ops, Options{Timeout: 10 * time.Second, VisualizationPath: path})
	if res.Verdict != VerdictIllegal || len(res.IllegalKeys) != 1 || res.IllegalKeys[0] != "bad" {
		t.Fatalf("Check: %v, want Illegal on key bad", res)
	}
	if res.Visualization != path {
		t.Fatalf("visualization at %q, want %q", res.Visualization, path)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "put(bad") {
		t.Errorf("visualization does not show the bad key's operations")
	}
	if strings.Contains(string(html), "put(good") {
		t.Errorf("visualization shows the good key's operations too")
	}
	if !errors.Is(res.Err(), ErrNotLinearizable) || !strings.Contains(res.Err().Error(), path) {
		t.Errorf("Err() = %v, want ErrNotLinearizable naming %s", res.Err(), path)
	}
}

// TestCheckTimeoutIsFailure: a history the checker cannot decide in time
// is VerdictUnknown, and Err reports it as a failure.
func TestCheckTimeoutIsFailure(t *testing.T) {
	// Many overlapping puts, then a read of a value nobody wrote: the
	// search must try every order of the puts before it can say Illegal.
	var ops []Op
	const n = 40
	for i := range n {
		ops = append(ops, put(i, 0, 100, "k", "v"+string(rune('A'+i))))
	}
	ops = append(ops, get(n, 200, 201, "k", "nobody"))
	res := Check(ops, Options{Timeout: 50 * time.Millisecond})
	if res.Verdict != VerdictUnknown {
		t.Fatalf("Check: %v, want Unknown", res)
	}
	if err := res.Err(); !errors.Is(err, ErrUndecided) {
		t.Fatalf("Err() = %v, want ErrUndecided", err)
	}
}

func TestMaxConcurrency(t *testing.T) {
	ops := []Op{
		put(0, 0, 10, "k", "a"), put(1, 5, 15, "k", "b"), put(2, 10, 20, "k", "c"), // 3 at t=10
		opOf(3, 30, Open, Input{Kind: Put, Key: "k", Value: "d"}, Output{}),
		put(4, 40, 50, "k", "e"),
	}
	if got := maxConcurrency(ops); got != 3 {
		t.Fatalf("maxConcurrency = %d, want 3", got)
	}
}

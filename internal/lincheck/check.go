package lincheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is what Check concluded.
type Verdict uint8

// The verdicts.
const (
	// VerdictOk: the history is linearizable.
	VerdictOk Verdict = iota + 1
	// VerdictIllegal: it is not.
	VerdictIllegal
	// VerdictUnknown: the checker ran out of time before deciding. This
	// proves nothing and must be treated as a failure.
	VerdictUnknown
)

func (v Verdict) String() string {
	switch v {
	case VerdictOk:
		return "Ok"
	case VerdictIllegal:
		return "Illegal"
	case VerdictUnknown:
		return "Unknown"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Options configures Check.
type Options struct {
	// Timeout bounds the search; when it runs out the verdict is
	// VerdictUnknown. Zero means no bound (never in tests).
	Timeout time.Duration
	// VisualizationPath is where an Illegal history's visualization is
	// written (an HTML file showing the offending keys' operations and
	// their longest linearizable prefixes). Default: a new file
	// lincheck-*.html in VisualizationDir.
	VisualizationPath string
	// VisualizationDir is where the default visualization file goes.
	// Default: os.TempDir().
	VisualizationDir string
}

// Result is Check's conclusion with what it was drawn from.
type Result struct {
	Verdict Verdict
	// Ops is how many operations the history held; Open how many of them
	// were open-ended; Pruned how many were removed as unable to change
	// the verdict, and Closed how many open-ended ones were closed at the
	// return of a read that saw their effect (see prune.go); Keys how many
	// keys they touched.
	Ops, Open, Pruned, Closed, Keys int
	// MaxConcurrency is the most operations of one key in the checked
	// history that were pending at one instant (open-ended ones pending
	// from their call on).
	MaxConcurrency int
	// IllegalKeys are the keys whose sub-histories are not linearizable
	// (Illegal only).
	IllegalKeys []string
	// Visualization is the path of the visualization file (Illegal only;
	// empty if writing it failed, with VisualizationErr saying why).
	Visualization    string
	VisualizationErr error
	// Elapsed is how long the check took.
	Elapsed time.Duration
}

func (r Result) String() string {
	s := fmt.Sprintf("%s: %d ops (%d open-ended; %d pruned, %d closed) on %d keys, max %d concurrent per key, checked in %v",
		r.Verdict, r.Ops, r.Open, r.Pruned, r.Closed, r.Keys, r.MaxConcurrency, r.Elapsed.Round(time.Millisecond))
	if r.Verdict == VerdictIllegal {
		s += fmt.Sprintf("; not linearizable: keys %q", r.IllegalKeys)
		if r.Visualization != "" {
			s += "; visualization: " + r.Visualization
		}
		if r.VisualizationErr != nil {
			s += fmt.Sprintf("; no visualization: %v", r.VisualizationErr)
		}
	}
	return s
}

// ErrNotLinearizable is the error of an Illegal Result, ErrUndecided of
// an Unknown one.
var (
	ErrNotLinearizable = errors.New("lincheck: history is not linearizable")
	ErrUndecided       = errors.New("lincheck: checker timed out (an undecided history is a failure)")
)

// Err is nil if and only if the history is linearizable: an Unknown
// verdict is an error too.
func (r Result) Err() error {
	switch r.Verdict {
	case VerdictOk:
		return nil
	case VerdictIllegal:
		return fmt.Errorf("%w: %s", ErrNotLinearizable, r)
	case VerdictUnknown:
		return fmt.Errorf("%w: %s", ErrUndecided, r)
	}
	return fmt.Errorf("lincheck: no verdict: %s", r)
}

// Check checks history (as a Recorder returns it, in any order) for
// linearizability against Model, key by key, within opts.Timeout.
func Check(history []Op, opts Options) Result {
	began := time.Now()
	res := Result{Ops: len(history)}
	ops := normalize(history)
	keys, groups := byKey(ops)
	res.Keys = len(keys)
	var checked []Op
	for _, k := range keys {
		for _, op := range groups[k] {
			if op.IsOpen() {
				res.Open++
			}
		}
		kept, removed, closed := prune(groups[k])
		res.Pruned += removed
		res.Closed += closed
		res.MaxConcurrency = max(res.MaxConcurrency, maxConcurrency(kept))
		groups[k] = kept
		checked = append(checked, kept...)
	}

	model := Model()
	switch porcupine.CheckOperationsTimeout(model, operations(checked), opts.Timeout) {
	case porcupine.Ok:
		res.Verdict = VerdictOk
	case porcupine.Unknown:
		res.Verdict = VerdictUnknown
	default:
		res.Verdict = VerdictIllegal
		res.IllegalKeys, res.Visualization, res.VisualizationErr = explain(model, keys, groups, opts)
	}
	res.Elapsed = time.Since(began)
	return res
}

// normalize returns a copy of ops in which every open-ended operation
// has an Unknown output and an Open return.
func normalize(history []Op) []Op {
	ops := slices.Clone(history)
	for i := range ops {
		if ops[i].IsOpen() {
			ops[i].Return = Open
			ops[i].Output.Outcome = Unknown
		}
	}
	return ops
}

// explain finds the keys whose sub-histories are illegal, each checked on
// its own (a key whose own check times out is listed too, marked), and
// writes the visualization of those keys.
func explain(model porcupine.Model, keys []string, groups map[string][]Op, opts Options) (illegal []string, path string, err error) {
	var bad []Op
	for _, k := range keys {
		switch porcupine.CheckOperationsTimeout(model, operations(groups[k]), opts.Timeout) {
		case porcupine.Illegal:
			illegal = append(illegal, k)
			bad = append(bad, groups[k]...)
		case porcupine.Unknown:
			illegal = append(illegal, k+" (undecided)")
		}
	}
	if len(bad) == 0 {
		return illegal, "", errors.New("no key is illegal on its own (undecided keys?)")
	}
	_, info := porcupine.CheckOperationsVerbose(model, operations(bad), opts.Timeout)
	path = opts.VisualizationPath
	if path == "" {
		dir := opts.VisualizationDir
		if dir == "" {
			dir = os.TempDir()
		}
		f, err := os.CreateTemp(dir, "lincheck-*.html")
		if err != nil {
			return illegal, "", err
		}
		path = f.Name()
		f.Close()
	}
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		return illegal, "", err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return illegal, path, nil
}

// maxConcurrency is the most operations of ops pending at one instant.
func maxConcurrency(ops []Op) int {
	type event struct {
		t     int64
		delta int
	}
	events := make([]event, 0, 2*len(ops))
	for _, op := range ops {
		events = append(events, event{op.Call, +1}, event{op.Return, -1})
	}
	// Intervals are closed: at equal times, calls count before returns.
	slices.SortFunc(events, func(a, b event) int {
		if a.t != b.t {
			if a.t < b.t {
				return -1
			}
			return 1
		}
		return b.delta - a.delta
	})
	n, most := 0, 0
	for _, e := range events {
		n += e.delta
		most = max(most, n)
	}
	return most
}

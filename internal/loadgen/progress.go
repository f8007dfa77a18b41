package loadgen

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// Phase is a stage of a run.
type Phase uint8

const (
	// PhasePreload writes every key once (Config.Preload).
	PhasePreload Phase = iota + 1
	// PhaseWarmup runs the workload without recording it (Config.Warmup).
	PhaseWarmup
	// PhaseMeasure runs the workload and records it.
	PhaseMeasure
)

func (p Phase) String() string {
	switch p {
	case PhasePreload:
		return "preload"
	case PhaseWarmup:
		return "warmup"
	case PhaseMeasure:
		return "measure"
	default:
		return fmt.Sprintf("Phase(%d)", uint8(p))
	}
}

// Progress is a snapshot of a running phase, handed to Config.Progress.
type Progress struct {
	Phase Phase
	// Elapsed is the time since the phase began; Length is its planned
	// length, 0 when the phase is bounded by a count instead.
	Elapsed time.Duration
	Length  time.Duration
	// Done counts the phase's finished operations (Errors of them failed);
	// Total is the planned count, 0 when the phase is bounded by time.
	Done   int64
	Errors int64
	Total  int64
	// Rate (operations per second) and MeanLatency cover the interval since
	// the previous report of this phase.
	Rate        float64
	MeanLatency time.Duration
	// Final is set on the last report of the phase.
	Final bool
}

// String renders p as one line, for example
//
//	measure   12.0s/15s      3,412 ops/s  total     40,321  err 0  mean 4.71ms
func (p Progress) String() string {
	var bound string
	switch {
	case p.Length > 0:
		bound = fmt.Sprintf("%5.1fs/%s", p.Elapsed.Seconds(), p.Length)
	case p.Total > 0:
		bound = fmt.Sprintf("%5.1fs %3.0f%%", p.Elapsed.Seconds(), 100*float64(p.Done)/float64(p.Total))
	default:
		bound = fmt.Sprintf("%5.1fs", p.Elapsed.Seconds())
	}
	return fmt.Sprintf("%-8s %-12s %9s ops/s  total %10s  err %s  mean %s",
		p.Phase, bound, commas(int64(p.Rate+0.5)), commas(p.Done), commas(p.Errors), roundLatency(p.MeanLatency))
}

// ProgressPrinter returns a Config.Progress function that writes each report
// to w as a line. With overwrite (w is a terminal) a phase's reports share
// one line, redrawn in place; otherwise each report is its own line.
func ProgressPrinter(w io.Writer, overwrite bool) func(Progress) {
	return func(p Progress) {
		switch {
		case !overwrite:
			fmt.Fprintln(w, p)
		case p.Final:
			fmt.Fprintf(w, "\r%s\x1b[K\n", p)
		default:
			fmt.Fprintf(w, "\r%s\x1b[K", p)
		}
	}
}

// commas formats n with thousands separators: 1234567 → "1,234,567".
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// roundLatency keeps three significant digits, for display.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	default:
		return d.Round(10 * time.Nanosecond)
	}
}

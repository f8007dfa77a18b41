package loadgen

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// MatchTolerance is how far a candidate may fall short of the baseline on a
// figure and still be said to match it in a comparison table: 5%, because on
// a shared 2-core machine the run-to-run noise of one system is about that.
const MatchTolerance = 0.05

// Comparison is one workload measured on a baseline system (etcd) and a
// candidate (cairn). Candidate is nil when the candidate could not be run;
// Missing then says why (for example "not built yet").
type Comparison struct {
	Workload  string
	Baseline  *Result
	Candidate *Result
	Missing   string
}

// WriteComparisonTable writes rows as one Markdown table: throughput, p50,
// p99 and server CPU seconds per 1,000 operations for each system, then the
// ratios candidate/baseline and whether the candidate matches the baseline
// on every figure (higher throughput; lower latency and CPU; within
// MatchTolerance). Errors and incomplete CPU figures are listed under it.
func WriteComparisonTable(w io.Writer, baseName, candName string, rows []Comparison) error {
	var b strings.Builder
	hdr := []string{"workload",
		baseName + " ops/s", baseName + " p50", baseName + " p99", baseName + " CPU s/1k ops",
		candName + " ops/s", candName + " p50", candName + " p99", candName + " CPU s/1k ops",
		"ops/s ×", "p50 ×", "p99 ×", "CPU ×", candName + " matches " + baseName}
	writeRow(&b, hdr)
	align := make([]string, len(hdr))
	for i := range align {
		align[i] = "---:"
	}
	align[0] = ":---"
	align[len(align)-1] = ":---"
	writeRow(&b, align)

	var notes []string
	for _, r := range rows {
		cells := []string{r.Workload}
		cells = append(cells, systemCells(r.Baseline, "missing")...)
		missing := r.Missing
		if missing == "" {
			missing = "missing"
		}
		cells = append(cells, systemCells(r.Candidate, missing)...)
		cells = append(cells, ratioCells(r.Baseline, r.Candidate)...)
		writeRow(&b, cells)
		notes = append(notes, resultNotes(baseName, r.Workload, r.Baseline)...)
		notes = append(notes, resultNotes(candName, r.Workload, r.Candidate)...)
	}
	b.WriteString("\nRatios are " + candName + "/" + baseName + ": above 1 is better for ops/s, below 1 is better for p50, p99 and CPU.\n")
	for _, n := range notes {
		b.WriteString("- " + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRow(b *strings.Builder, cells []string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

func systemCells(r *Result, missing string) []string {
	if r == nil {
		return []string{missing, "", "", ""}
	}
	cpu := "n/a"
	if r.ServerCPU != nil {
		cpu = fmt.Sprintf("%.3f", r.ServerCPU.SecondsPer1kOps)
	}
	return []string{
		commas(int64(r.Throughput + 0.5)),
		formatMicros(r.Latency.P50US),
		formatMicros(r.Latency.P99US),
		cpu,
	}
}

func ratioCells(base, cand *Result) []string {
	if base == nil || cand == nil {
		return []string{"", "", "", "", ""}
	}
	ratio := func(c, b float64) (string, float64, bool) {
		if b <= 0 {
			return "n/a", 0, false
		}
		x := c / b
		return fmt.Sprintf("%.2f", x), x, true
	}
	var failed []string
	higher := func(name string, c, b float64) string {
		s, x, ok := ratio(c, b)
		if ok && x < 1-MatchTolerance {
			failed = append(failed, name)
		}
		return s
	}
	lower := func(name string, c, b float64) string {
		s, x, ok := ratio(c, b)
		if ok && x > 1+MatchTolerance {
			failed = append(failed, name)
		}
		return s
	}
	cells := []string{
		higher("ops/s", cand.Throughput, base.Throughput),
		lower("p50", cand.Latency.P50US, base.Latency.P50US),
		lower("p99", cand.Latency.P99US, base.Latency.P99US),
	}
	if base.ServerCPU != nil && cand.ServerCPU != nil {
		cells = append(cells, lower("CPU", cand.ServerCPU.SecondsPer1kOps, base.ServerCPU.SecondsPer1kOps))
	} else {
		cells = append(cells, "n/a")
	}
	verdict := "yes"
	if len(failed) > 0 {
		verdict = "no: " + strings.Join(failed, ", ")
	}
	if base.Errors > 0 || cand.Errors > 0 || base.Interrupted || cand.Interrupted {
		verdict += " (see notes)"
	}
	return append(cells, verdict)
}

func resultNotes(system, workload string, r *Result) []string {
	if r == nil {
		return nil
	}
	var notes []string
	if r.Interrupted {
		notes = append(notes, fmt.Sprintf("%s %s: interrupted, partial figures", system, workload))
	}
	if r.Errors > 0 {
		n := fmt.Sprintf("%s %s: %d failed operations", system, workload, r.Errors)
		if len(r.ErrorSamples) > 0 {
			n += " (first: " + r.ErrorSamples[0] + ")"
		}
		notes = append(notes, n)
	}
	if r.Misses > 0 {
		notes = append(notes, fmt.Sprintf("%s %s: %d gets found no value", system, workload, r.Misses))
	}
	if r.ServerCPU != nil && r.ServerCPU.Error != "" {
		notes = append(notes, fmt.Sprintf("%s %s: CPU figure incomplete: %s", system, workload, r.ServerCPU.Error))
	}
	return notes
}

// formatMicros renders a latency given in microseconds with three
// significant digits and a unit: "87.4µs", "2.31ms", "1.20s".
func formatMicros(us float64) string {
	d := time.Duration(us * float64(time.Microsecond))
	switch {
	case d >= time.Second:
		return sig3(d.Seconds()) + "s"
	case d >= time.Millisecond:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		return sig3(us) + "µs"
	}
}

// sig3 formats x ≥ 0 with three significant digits, never in exponent form.
func sig3(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

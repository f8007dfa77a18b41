package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func result(target, workload string, tput, p50us, p99us, cpu1k float64) *Result {
	return &Result{Target: target, Workload: workload, Ops: 1000, Throughput: tput,
		Latency:   LatencySummary{Count: 1000, P50US: p50us, P99US: p99us},
		ServerCPU: &ServerCPU{SecondsPer1kOps: cpu1k}}
}

func TestComparisonTableWithoutCandidate(t *testing.T) {
	var b bytes.Buffer
	rows := []Comparison{
		{Workload: "put-c1", Baseline: result("etcd", "put-c1", 412.4, 2310, 4100, 0.912), Missing: "not built yet"},
	}
	if err := WriteComparisonTable(&b, "etcd", "cairn", rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := "| put-c1 | 412 | 2.31ms | 4.10ms | 0.912 | not built yet |  |  |  |  |  |  |  |  |\n"
	if !strings.Contains(out, want) {
		t.Errorf("table\n%s\nlacks row\n%s", out, want)
	}
	if !strings.HasPrefix(out, "| workload | etcd ops/s | etcd p50 | etcd p99 | etcd CPU s/1k ops | cairn ops/s |") {
		t.Errorf("header: %s", out)
	}
}

func TestComparisonTableRatiosAndVerdict(t *testing.T) {
	var b bytes.Buffer
	base := result("etcd", "get-lin-c64", 10000, 1000, 5000, 0.2)
	better := result("cairn", "get-lin-c64", 20000, 500, 5100, 0.1) // p99 within 5%
	worse := result("cairn", "put-c16", 9000, 1000, 8000, 0.2)
	worse.Errors = 3
	worse.ErrorSamples = []string{"deadline exceeded"}
	rows := []Comparison{
		{Workload: "get-lin-c64", Baseline: base, Candidate: better},
		{Workload: "put-c16", Baseline: base, Candidate: worse},
	}
	if err := WriteComparisonTable(&b, "etcd", "cairn", rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| 20,000 | 500µs | 5.10ms | 0.100 | 2.00 | 0.50 | 1.02 | 0.50 | yes |",
		"| 9,000 | 1.00ms | 8.00ms | 0.200 | 0.90 | 1.00 | 1.60 | 1.00 | no: ops/s, p99 (see notes) |",
		"- cairn put-c16: 3 failed operations (first: deadline exceeded)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table\n%s\nlacks\n%s", out, want)
		}
	}
}

func TestFormatMicros(t *testing.T) {
	for us, want := range map[float64]string{
		87.44: "87.4µs", 999: "999µs", 2310: "2.31ms", 12_500: "12.5ms", 999_960: "1000ms", 1_200_000: "1.20s",
	} {
		if got := formatMicros(us); got != want {
			t.Errorf("formatMicros(%v) = %q, want %q", us, got, want)
		}
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := result("etcd", "put-c16", 1234.5, 100, 200, 0.3)
	r.Config.ReadLevel = Serializable
	r.Start = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "r.json")
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"read_level": "serializable"`) {
		t.Errorf("JSON names the read level by number:\n%s", b.String())
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Throughput != r.Throughput || back.Config.ReadLevel != Serializable || !back.Start.Equal(r.Start) ||
		back.ServerCPU.SecondsPer1kOps != 0.3 {
		t.Errorf("round trip: %+v", back)
	}
	var s bytes.Buffer
	if err := back.WriteSummary(&s); err != nil || !strings.Contains(s.String(), "1,235 ops/s") {
		t.Errorf("summary %q, %v", s.String(), err)
	}
}

func TestProgressLine(t *testing.T) {
	p := Progress{Phase: PhaseMeasure, Elapsed: 12 * time.Second, Length: 15 * time.Second,
		Done: 40321, Rate: 3412.2, MeanLatency: 4712345 * time.Nanosecond}
	got := p.String()
	for _, want := range []string{"measure", "12.0s/15s", "3,412 ops/s", "40,321", "err 0", "4.71ms"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress line %q lacks %q", got, want)
		}
	}
	var b bytes.Buffer
	pr := ProgressPrinter(&b, true)
	pr(p)
	p.Final = true
	pr(p)
	if out := b.String(); strings.Count(out, "\r") != 2 || strings.Count(out, "\n") != 1 {
		t.Errorf("overwriting printer wrote %q", out)
	}
	b.Reset()
	pr = ProgressPrinter(&b, false)
	pr(p)
	pr(p)
	if out := b.String(); strings.Contains(out, "\r") || strings.Count(out, "\n") != 2 {
		t.Errorf("line printer wrote %q", out)
	}
}

func TestCommas(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}

package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Result is the outcome of one Run, and the JSON document the bench commands
// write. Field names are a stable interface: bench/vs-etcd.sh and benchtable
// read them; add fields, do not rename them.
type Result struct {
	Target   string       `json:"target"`
	Workload string       `json:"workload"`
	Config   ResultConfig `json:"config"`

	// Start is when the measured phase began; ElapsedSeconds runs from
	// then until the last measured operation returned.
	Start          time.Time `json:"start"`
	ElapsedSeconds float64   `json:"elapsed_s"`

	// Ops counts the measured operations that succeeded, Errors those that
	// failed (timeouts included); Misses counts successful Gets that found
	// no value. Throughput is Ops / ElapsedSeconds.
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	Misses     int64   `json:"misses"`
	Throughput float64 `json:"throughput_ops_s"`

	// Latency covers every successful measured operation; Put and Get
	// break it down by kind (nil when the workload had none of that kind).
	// Failed operations are counted, not timed.
	Latency LatencySummary `json:"latency"`
	Put     *OpStats       `json:"put,omitempty"`
	Get     *OpStats       `json:"get,omitempty"`

	// ServerCPU is nil when no server PIDs were given.
	ServerCPU *ServerCPU `json:"server_cpu,omitempty"`
	// ClientCPUSeconds is the CPU time of the load generator's own process
	// during the measured phase: on a small machine it competes with the
	// servers, so it is worth knowing.
	ClientCPUSeconds float64 `json:"client_cpu_s"`

	// Host describes the machine: the load average (1, 5, 15 minutes) at
	// the start and end of the measured phase shows whether something
	// else was running.
	Host HostInfo `json:"host"`

	// Interrupted is set when the run was cancelled before its end; the
	// figures then cover only what was measured until then.
	Interrupted bool `json:"interrupted,omitempty"`
	// ErrorSamples holds the first few distinct error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// OpStats is the measured outcome of one kind of operation.
type OpStats struct {
	Ops     int64          `json:"ops"`
	Errors  int64          `json:"errors"`
	Latency LatencySummary `json:"latency"`
}

// ResultConfig is the part of Config that defines the workload.
type ResultConfig struct {
	Clients      int       `json:"clients"`
	Conns        int       `json:"conns"`
	Keys         int       `json:"keys"`
	KeyPrefix    string    `json:"key_prefix"`
	ValueSize    int       `json:"value_size"`
	ReadFraction float64   `json:"read_fraction"`
	ReadLevel    ReadLevel `json:"read_level"`
	DurationS    float64   `json:"duration_s,omitempty"`
	Ops          int64     `json:"ops,omitempty"`
	WarmupS      float64   `json:"warmup_s"`
	Preload      bool      `json:"preload"`
	Seed         uint64    `json:"seed"`
	OpTimeoutS   float64   `json:"op_timeout_s"`
}

func resultConfig(c Config) ResultConfig {
	return ResultConfig{
		Clients:      c.Clients,
		Conns:        c.Conns,
		Keys:         c.Keys,
		KeyPrefix:    c.KeyPrefix,
		ValueSize:    c.ValueSize,
		ReadFraction: c.ReadFraction,
		ReadLevel:    c.ReadLevel,
		DurationS:    c.Duration.Seconds(),
		Ops:          c.Ops,
		WarmupS:      c.Warmup.Seconds(),
		Preload:      c.Preload,
		Seed:         c.Seed,
		OpTimeoutS:   c.OpTimeout.Seconds(),
	}
}

// HostInfo describes the machine a run was measured on.
type HostInfo struct {
	NumCPU       int       `json:"num_cpu"`
	GoVersion    string    `json:"go_version"`
	LoadAvgStart []float64 `json:"load_avg_start,omitempty"`
	LoadAvgEnd   []float64 `json:"load_avg_end,omitempty"`
}

// loadAvg reads the 1, 5 and 15 minute load averages, or nil.
func loadAvg() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		if out[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return nil
		}
	}
	return out
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResult reads a Result written by WriteJSON.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("loadgen: %s: %w", path, err)
	}
	return &r, nil
}

// WriteSummary writes a short human-readable account of r.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d clients over %d conns, %d keys, %d-byte values, read fraction %g (%s)\n",
		r.Target, r.Workload, r.Config.Clients, r.Config.Conns, r.Config.Keys, r.Config.ValueSize,
		r.Config.ReadFraction, r.Config.ReadLevel)
	if r.Interrupted {
		b.WriteString("  INTERRUPTED: partial figures\n")
	}
	fmt.Fprintf(&b, "  %s ops in %.2fs = %s ops/s; errors %d, misses %d\n",
		commas(r.Ops), r.ElapsedSeconds, commas(int64(r.Throughput+0.5)), r.Errors, r.Misses)
	line := func(name string, l LatencySummary) {
		d := func(us float64) time.Duration { return roundLatency(time.Duration(us * float64(time.Microsecond))) }
		fmt.Fprintf(&b, "  %-4s p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  (mean %v, n=%d)\n",
			name, d(l.P50US), d(l.P90US), d(l.P99US), d(l.P999US), d(l.MaxUS), d(l.MeanUS), l.Count)
	}
	line("all", r.Latency)
	if r.Put != nil && r.Get != nil {
		line("put", r.Put.Latency)
		line("get", r.Get.Latency)
	}
	if c := r.ServerCPU; c != nil {
		fmt.Fprintf(&b, "  server CPU %.2fs (%.3f s per 1,000 ops) over pids %v", c.Seconds, c.SecondsPer1kOps, c.PIDs)
		if c.Error != "" {
			fmt.Fprintf(&b, " [incomplete: %s]", c.Error)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  load generator CPU %.2fs; load average %v → %v on %d CPUs\n",
		r.ClientCPUSeconds, r.Host.LoadAvgStart, r.Host.LoadAvgEnd, r.Host.NumCPU)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

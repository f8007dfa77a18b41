package loadgen

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry. Latencies are recorded in nanoseconds from 1ns to 60s
// with three significant decimal digits: any reported percentile is within
// 0.1% of a latency that was actually recorded at that rank. Latencies above
// the maximum are clamped to it (and counted in Histogram.Clamped), never
// dropped: an operation that took that long still happened.
const (
	histLowest  = 1                       // ns
	histHighest = int64(60 * time.Second) // ns
	histDigits  = 3
)

// Histogram is a latency histogram (HDR, see github.com/HdrHistogram). It is
// not safe for concurrent use: the runner gives each client its own and
// merges them when the clients have finished.
type Histogram struct {
	h       *hdrhistogram.Histogram
	clamped int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histLowest, histHighest, histDigits)}
}

// Record adds one latency. Negative latencies (a clock step) count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	switch {
	case v < 0:
		v = 0
	case v > histHighest:
		v = histHighest
		h.clamped++
	}
	// Cannot fail: v is within the trackable range and counts are int64.
	_ = h.h.RecordValue(v)
}

// Merge adds every latency recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	// Cannot drop values: both have the same geometry.
	h.h.Merge(o.h)
	h.clamped += o.clamped
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Clamped is the number of latencies above 60s, recorded as 60s.
func (h *Histogram) Clamped() int64 { return h.clamped }

// Quantile returns the latency at quantile q in [0, 1] (0.99 is p99): the
// smallest recorded latency (up to histogram precision) that at least a
// fraction q of all latencies do not exceed. It reports the upper edge of
// the bucket, so it never understates. 0 if nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	return time.Duration(h.h.ValueAtPercentile(q * 100))
}

// Min, Max and Mean of the recorded latencies (0 if none).
func (h *Histogram) Min() time.Duration { return time.Duration(h.h.Min()) }
func (h *Histogram) Max() time.Duration { return time.Duration(h.h.Max()) }
func (h *Histogram) Mean() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.h.Mean())
}

// Summary returns the standard percentiles of h.
func (h *Histogram) Summary() LatencySummary {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return LatencySummary{
		Count:  h.Count(),
		MinUS:  us(h.Min()),
		MeanUS: us(h.Mean()),
		P50US:  us(h.Quantile(0.50)),
		P90US:  us(h.Quantile(0.90)),
		P99US:  us(h.Quantile(0.99)),
		P999US: us(h.Quantile(0.999)),
		MaxUS:  us(h.Max()),
	}
}

// LatencySummary is a histogram's standard percentiles, in microseconds.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the obviously-correct reference: the nearest-rank
// percentile of the sorted samples (the smallest sample such that at least a
// fraction q of all samples are ≤ it).
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

// withinPrecision reports whether got is the histogram's rendering of want:
// never below it, and above it by at most the three-significant-digit bucket
// width (0.1%, plus a nanosecond for rounding).
func withinPrecision(got, want time.Duration) bool {
	return got >= want && float64(got-want) <= 0.001*float64(want)+1
}

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	dists := map[string]func(r *rand.Rand) time.Duration{
		"uniform 1µs-100ms": func(r *rand.Rand) time.Duration {
			return time.Microsecond + time.Duration(r.Int64N(int64(100*time.Millisecond)))
		},
		"lognormal around 2ms": func(r *rand.Rand) time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()*0.8) * float64(2*time.Millisecond))
		},
		"bimodal 300µs and 40ms": func(r *rand.Rand) time.Duration {
			if r.IntN(100) < 97 {
				return 300*time.Microsecond + time.Duration(r.Int64N(int64(50*time.Microsecond)))
			}
			return 40*time.Millisecond + time.Duration(r.Int64N(int64(10*time.Millisecond)))
		},
		"tiny 0-900ns": func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(900)) },
	}
	quantiles := []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 11))
			h := NewHistogram()
			samples := make([]time.Duration, 100_000)
			for i := range samples {
				samples[i] = gen(r)
				h.Record(samples[i])
			}
			slices.Sort(samples)
			if h.Count() != int64(len(samples)) {
				t.Fatalf("Count = %d, want %d", h.Count(), len(samples))
			}
			for _, q := range quantiles[1:] {
				got, want := h.Quantile(q), exactQuantile(samples, q)
				if !withinPrecision(got, want) {
					t.Errorf("Quantile(%v) = %v, exact %v: off by more than 0.1%%", q, got, want)
				}
			}
			if got, want := h.Max(), samples[len(samples)-1]; !withinPrecision(got, want) {
				t.Errorf("Max = %v, exact %v", got, want)
			}
			if got, want := h.Min(), samples[0]; got > want || float64(want-got) > 0.001*float64(want)+1 {
				t.Errorf("Min = %v, exact %v", got, want)
			}
			var sum float64
			for _, s := range samples {
				sum += float64(s)
			}
			mean := time.Duration(sum / float64(len(samples)))
			if d := math.Abs(float64(h.Mean() - mean)); d > 0.001*float64(mean)+1 {
				t.Errorf("Mean = %v, exact %v", h.Mean(), mean)
			}
		})
	}
}

func TestHistogramKnownPercentiles(t *testing.T) {
	// 1..1000 µs, once each: p50 is 500µs, p99 990µs, p99.9 999µs.
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.9, 900 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{0.999, 999 * time.Microsecond},
		{1, 1000 * time.Microsecond},
	} {
		if got := h.Quantile(tc.q); !withinPrecision(got, tc.want) {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	s := h.Summary()
	if s.Count != 1000 || !withinPrecisionUS(s.P50US, 500) || !withinPrecisionUS(s.P99US, 990) ||
		!withinPrecisionUS(s.P999US, 999) || !withinPrecisionUS(s.MaxUS, 1000) || !withinPrecisionUS(s.MinUS, 1) {
		t.Errorf("Summary = %+v", s)
	}
	if math.Abs(s.MeanUS-500.5) > 0.5 {
		t.Errorf("MeanUS = %v, want 500.5", s.MeanUS)
	}
}

func withinPrecisionUS(got, want float64) bool {
	return withinPrecision(time.Duration(got*1000), time.Duration(want*1000))
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	all := NewHistogram()
	parts := []*Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	for range 30_000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		all.Record(d)
		parts[r.IntN(len(parts))].Record(d)
	}
	merged := NewHistogram()
	for _, p := range parts {
		merged.Merge(p)
	}
	if merged.Count() != all.Count() {
		t.Fatalf("merged Count = %d, want %d", merged.Count(), all.Count())
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := merged.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("Quantile(%v): merged %v, recorded together %v", q, got, want)
		}
	}
}

func TestHistogramClampsInsteadOfDropping(t *testing.T) {
	h := NewHistogram()
	h.Record(2 * time.Minute)
	h.Record(-time.Millisecond)
	h.Record(time.Millisecond)
	if h.Count() != 3 {
		t.Fatalf("Count = %d, want 3: nothing may be dropped", h.Count())
	}
	if h.Clamped() != 1 {
		t.Errorf("Clamped = %d, want 1", h.Clamped())
	}
	if got := h.Max(); !withinPrecision(got, time.Minute) {
		t.Errorf("Max = %v, want the 60s ceiling", got)
	}
	if got := h.Min(); got != 0 {
		t.Errorf("Min = %v, want 0 (a negative latency counts as 0)", got)
	}
	o := NewHistogram()
	o.Merge(h)
	if o.Clamped() != 1 {
		t.Errorf("Clamped after Merge = %d, want 1", o.Clamped())
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := NewHistogram()
	if s := h.Summary(); s != (LatencySummary{}) {
		t.Errorf("empty Summary = %+v, want zeros", s)
	}
}

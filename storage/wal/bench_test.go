package wal

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// measureRawSync returns how long one 256-byte write plus fdatasync takes
// on the disk under dir, the way the WAL writes (into a preallocated
// file), averaged over about d. The disk of a shared machine is noisy, so
// BenchmarkAppend measures this right before and right after each run.
func measureRawSync(b *testing.B, dir string, d time.Duration) time.Duration {
	f, err := vfs.Default.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Preallocate(0, 64<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256)
	start := time.Now()
	n := 0
	for time.Since(start) < d && n < (64<<20)/256 {
		if _, err := f.WriteAt(buf, int64(n)*256); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return time.Since(start) / time.Duration(n)
}

// proposal is one proposer's entry waiting for its batch to be durable.
type proposal struct {
	data []byte
	done chan error
}

// batcher plays the replica's run goroutine: it takes every proposal
// waiting, appends them as one Save with one sync (one Ready), and
// answers them all. Proposals that arrive during the sync wait for the
// next batch: that is group commit.
func batcher(w *WAL, props <-chan proposal, stop <-chan struct{}) (batches, entries *atomic.Uint64) {
	batches, entries = new(atomic.Uint64), new(atomic.Uint64)
	go func() {
		next, _ := w.LastIndex()
		next++
		var pending []proposal
		var ents []raft.Entry
		for {
			pending, ents = pending[:0], ents[:0]
			select {
			case p := <-props:
				pending = append(pending, p)
			case <-stop:
				return
			}
		drain:
			for len(pending) < 4096 {
				select {
				case p := <-props:
					pending = append(pending, p)
				default:
					break drain
				}
			}
			for _, p := range pending {
				ents = append(ents, raft.Entry{Term: 1, Index: next, Data: p.data})
				next++
			}
			err := w.Save(raft.HardState{Term: 1, Commit: next - 1}, ents, nil, true)
			if first, _ := w.FirstIndex(); err == nil && next-first > 100_000 {
				// Keep memory bounded, as a snapshot policy would.
				to := next - 50_000
				t, _ := w.Term(to)
				err = w.Compact(raft.SnapshotMeta{Index: to, Term: t, ConfState: raft.NewConfState(1)}, to)
			}
			for _, p := range pending {
				p.done <- err
			}
			batches.Add(1)
			entries.Add(uint64(len(pending)))
		}
	}()
	return batches, entries
}

// BenchmarkAppend measures in one run the raw fdatasync rate of the
// temporary directory's disk and the WAL's append rate with 1, 16 and 256
// concurrent proposers of 256-byte entries, and reports the ratios:
//
//	go test -run XXX -bench Append -benchtime 3s ./storage/wal
//
// Metrics: raw-fsyncs/s (the disk, measured before and after the run, or
// with one proposer interleaved with it in blocks of 50);
// entries/s; syncs/s (the WAL's); entries/batch; x-fsync = entries/s over
// raw-fsyncs/s (entries made durable per raw sync's worth of time);
// lat-µs, the mean proposal latency, and lat/fsync, that over one raw
// fdatasync (with one proposer: the WAL's overhead on top of the disk).
func BenchmarkAppend(b *testing.B) {
	for _, proposers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			dir := b.TempDir()
			rawBefore := measureRawSync(b, dir, 500*time.Millisecond)
			w, err := Open(filepath.Join(dir, "wal"), Options{Logger: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			hs, boot := raft.BootstrapState(1)
			if err := w.Save(hs, boot, nil, true); err != nil {
				b.Fatal(err)
			}
			props := make(chan proposal, proposers)
			stop := make(chan struct{})
			batches, entries := batcher(w, props, stop)
			syncs0 := w.Stats().Syncs

			var left atomic.Int64
			left.Store(int64(b.N))
			var latency atomic.Int64
			var wg sync.WaitGroup
			// With one proposer, raw fdatasyncs run interleaved with the
			// proposals, 50 at a time, on a probe file beside the log, so
			// that the ratio does not drift with the disk's load.
			var probe vfs.File
			var probeOff int64
			var rawTime time.Duration
			var rawN int
			if proposers == 1 {
				probe, err = vfs.Default.Create(filepath.Join(dir, "interleaved-probe"))
				if err == nil {
					err = probe.Preallocate(0, 256<<20)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer probe.Close()
			}
			b.SetBytes(256)
			b.ResetTimer()
			start := time.Now()
			for range proposers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					data := make([]byte, 256)
					done := make(chan error, 1)
					for i := 0; left.Add(-1) >= 0; i++ {
						if probe != nil && i%50 == 0 {
							t0 := time.Now()
							for range 50 {
								probe.WriteAt(data, probeOff%(256<<20))
								probeOff += 256
								if err := probe.Sync(); err != nil {
									b.Error(err)
									return
								}
							}
							rawTime += time.Since(t0)
							rawN += 50
						}
						t0 := time.Now()
						props <- proposal{data: data, done: done}
						if err := <-done; err != nil {
							b.Error(err)
							return
						}
						latency.Add(int64(time.Since(t0)))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start) - rawTime
			b.StopTimer()
			close(stop)
			rawAfter := measureRawSync(b, dir, 500*time.Millisecond)
			raw := (rawBefore + rawAfter) / 2
			if rawN > 0 {
				raw = rawTime / time.Duration(rawN)
			}
			n := float64(entries.Load())
			rate := n / elapsed.Seconds()
			syncs := float64(w.Stats().Syncs - syncs0)
			meanLat := time.Duration(float64(latency.Load()) / n)
			b.ReportMetric(rate, "entries/s")
			b.ReportMetric(syncs/elapsed.Seconds(), "syncs/s")
			b.ReportMetric(n/float64(batches.Load()), "entries/batch")
			b.ReportMetric(rate*raw.Seconds(), "x-fsync")
			b.ReportMetric(float64(meanLat)/float64(raw), "lat/fsync")
			b.ReportMetric(float64(time.Second)/float64(raw), "raw-fsyncs/s")
			b.ReportMetric(float64(meanLat)/1e3, "lat-µs")
			w.Close()
		})
	}
}

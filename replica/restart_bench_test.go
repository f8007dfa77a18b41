package replica_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
)

var (
	restartBytes = flag.Int64("restart.bytes", 1<<30, "BenchmarkRestartFromDisk: bytes of entry data in the log")
	restartEntry = flag.Int("restart.entry", 1024, "BenchmarkRestartFromDisk: bytes per entry")
	restartDir   = flag.String("restart.dir", "", "BenchmarkRestartFromDisk: directory on the disk to measure (default: a temporary directory)")
)

// BenchmarkRestartFromDisk measures how long a replica takes to restart
// from a large WAL on the real disk: wal.Open (replay), then replica.New
// until the state machine has applied every committed entry again (no
// snapshot: the worst case). In the same run it measures a raw
// sequential read of the same segment files, and reports the ratio.
// Each is measured cold (the files evicted from the page cache with
// posix_fadvise after they were synced) and warm (read just before).
//
// It writes -restart.bytes (default 1 GiB) first, so it is slow and not
// part of the default run:
//
//	go test ./replica -run '^$' -bench RestartFromDisk -benchtime 1x
//
// ns/op is the cold restart time.
func BenchmarkRestartFromDisk(b *testing.B) {
	dir := *restartDir
	if dir == "" {
		dir = b.TempDir()
	} else {
		dir = filepath.Join(dir, fmt.Sprintf("restart-%d", os.Getpid()))
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	logger := slog.New(slog.DiscardHandler)
	last, dataBytes := writeBigLog(b, dir, *restartBytes, *restartEntry, logger)
	files, fileBytes := segmentFiles(b, replica.WALDir(dir))
	b.Logf("log: %d entries of %d bytes, %.1f MiB of data, %d segments, %.1f MiB on disk",
		last, *restartEntry, float64(dataBytes)/(1<<20), len(files), float64(fileBytes)/(1<<20))

	var coldOpen, coldStart, coldRaw, warmOpen, warmStart, warmRaw time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		evict(b, files)
		coldRaw += rawRead(b, files)
		evict(b, files)
		b.StartTimer()
		o, s := restartOnce(b, dir, last, logger)
		b.StopTimer()
		coldOpen, coldStart = coldOpen+o, coldStart+s

		warmRaw += rawRead(b, files)
		o, s = restartOnce(b, dir, last, logger)
		warmOpen, warmStart = warmOpen+o, warmStart+s
		b.StartTimer()
	}
	n := float64(b.N)
	sec := func(d time.Duration) float64 { return d.Seconds() / n }
	b.ReportMetric(sec(coldRaw), "cold-raw-read-s")
	b.ReportMetric(sec(coldOpen), "cold-wal-open-s")
	b.ReportMetric(sec(coldOpen+coldStart), "cold-restart-s")
	b.ReportMetric(float64(coldOpen+coldStart)/float64(coldRaw), "cold-restart/raw")
	b.ReportMetric(sec(warmRaw), "warm-raw-read-s")
	b.ReportMetric(sec(warmOpen), "warm-wal-open-s")
	b.ReportMetric(sec(warmOpen+warmStart), "warm-restart-s")
	b.ReportMetric(float64(warmOpen+warmStart)/float64(warmRaw), "warm-restart/raw")
	b.Logf("cold: raw read %v, wal.Open %v, replica start and re-apply %v: restart %v = %.2fx the raw read",
		coldRaw/time.Duration(b.N), coldOpen/time.Duration(b.N), coldStart/time.Duration(b.N),
		(coldOpen+coldStart)/time.Duration(b.N), float64(coldOpen+coldStart)/float64(coldRaw))
	b.Logf("warm: raw read %v, wal.Open %v, replica start and re-apply %v: restart %v = %.2fx the raw read",
		warmRaw/time.Duration(b.N), warmOpen/time.Duration(b.N), warmStart/time.Duration(b.N),
		(warmOpen+warmStart)/time.Duration(b.N), float64(warmOpen+warmStart)/float64(warmRaw))
}

// writeBigLog writes a single-voter group's log of about size bytes of
// entry data into dir's WAL, all committed, and returns its last index.
func writeBigLog(b *testing.B, dir string, size int64, entrySize int, logger *slog.Logger) (raft.Index, int64) {
	b.Helper()
	d, err := replica.OpenDisk(dir, replica.DiskOptions{Bootstrap: []raft.NodeID{1}, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	const batch = 256
	index, written := raft.Index(1), int64(0)
	ents := make([]raft.Entry, 0, batch)
	for written < size {
		ents = ents[:0]
		for range batch {
			index++
			off := int(index) * 7 % (len(data) - entrySize)
			ents = append(ents, raft.Entry{Term: 1, Index: index, Data: data[off : off+entrySize]})
			written += int64(entrySize)
		}
		if err := d.Log.Save(raft.HardState{}, ents, nil, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Log.Save(raft.HardState{Term: 1, Commit: index}, nil, nil, true); err != nil {
		b.Fatal(err)
	}
	if err := d.Close(); err != nil {
		b.Fatal(err)
	}
	return index, written
}

func segmentFiles(b *testing.B, dir string) ([]string, int64) {
	b.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var files []string
	var total int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wal") {
			files = append(files, filepath.Join(dir, e.Name()))
			info, err := e.Info()
			if err != nil {
				b.Fatal(err)
			}
			total += info.Size()
		}
	}
	return files, total
}

// rawRead reads the files sequentially, as fast as the disk allows: the
// baseline a replay cannot beat.
func rawRead(b *testing.B, files []string) time.Duration {
	b.Helper()
	buf := make([]byte, 4<<20)
	start := time.Now()
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := f.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
	return time.Since(start)
}

// restartOnce opens the WAL and starts a replica on it, waiting until it
// has applied last. It returns the two durations.
func restartOnce(b *testing.B, dir string, last raft.Index, logger *slog.Logger) (open, start time.Duration) {
	b.Helper()
	t0 := time.Now()
	d, err := replica.OpenDisk(dir, replica.DiskOptions{Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	r, err := replica.New(replica.Config{
		ID: 1, Log: d.Log, Snapshots: d.Snapshots, StateMachine: &counter{},
		Transport: dropAll{}, Ticks: manualTicks{}, Logger: logger,
		SnapshotEvery: 1 << 40, SnapshotBytes: 1 << 50, // measure the replay, not a snapshot
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.WaitApplied(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	t2 := time.Now()
	if err := r.Stop(); err != nil {
		b.Fatal(err)
	}
	if err := d.Close(); err != nil {
		b.Fatal(err)
	}
	return t1.Sub(t0), t2.Sub(t1)
}

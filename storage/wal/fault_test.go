package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// sampleLog writes a small log of several segments and closes it.
func sampleLog(t *testing.T, fs vfs.FS, segSize int64, n int) string {
	t.Helper()
	w := mustOpen(t, "/wal", memOpts(fs, segSize))
	hs, ents := raft.BootstrapState(1, 2, 3)
	if err := w.Save(hs, ents, nil, true); err != nil {
		t.Fatal(err)
	}
	for i := raft.Index(2); i <= raft.Index(n); i++ {
		hs.Commit = i - 1
		e := raft.Entry{Term: 1, Index: i, Data: []byte(fmt.Sprintf("entry %d with some payload", i))}
		if err := w.Save(hs, []raft.Entry{e}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	want := describe(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// usedEnd returns where the records of a segment end.
func usedEnd(t *testing.T, m *vfs.MemFS, path string) int64 {
	buf, err := vfs.ReadFile(m, path)
	if err != nil {
		t.Fatal(err)
	}
	return nonZeroEnd(buf)
}

// TestEveryBitFlipDetected flips bits at every byte position of every
// segment of a sample log (all eight bits in the last segment, whose tail
// the torn-write rule covers; one bit elsewhere) and requires Open to
// refuse with a CorruptError naming the file and an offset at or before
// the flip.
func TestEveryBitFlipDetected(t *testing.T) {
	m := vfs.NewMem(1)
	sampleLog(t, m, MinSegmentSize, 120)
	segs, _ := m.List("/wal")
	if len(segs) < 3 {
		t.Fatalf("sample has %d segments", len(segs))
	}
	flips := 0
	for si, name := range segs {
		path := filepath.Join("/wal", name)
		end := usedEnd(t, m, path)
		bits := []uint{uint(si % 8)}
		if si == len(segs)-1 {
			bits = []uint{0, 1, 2, 3, 4, 5, 6, 7}
		}
		for off := int64(0); off < end; off++ {
			for _, bit := range bits {
				if err := m.FlipBit(path, off, bit); err != nil {
					t.Fatal(err)
				}
				w, err := Open("/wal", memOpts(m, MinSegmentSize))
				if err == nil {
					w.Close()
					t.Fatalf("%s: flip of bit %d at offset %d not detected", name, bit, off)
				}
				ce, ok := isCorrupt(err)
				if !ok || ce.File != path || ce.Offset > off {
					t.Fatalf("%s: flip of bit %d at offset %d: %v", name, bit, off, err)
				}
				m.FlipBit(path, off, bit)
				flips++
			}
		}
	}
	t.Logf("%d flips in %d segments, all detected", flips, len(segs))
}

func TestCorruptionCases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, m *vfs.MemFS, segs []string)
		file   int // index in segs of the file the error must name; -1: any
	}{
		{"missing middle segment", func(t *testing.T, m *vfs.MemFS, segs []string) {
			m.Remove(segs[1])
		}, 2},
		{"bad header", func(t *testing.T, m *vfs.MemFS, segs []string) {
			m.FlipBit(segs[1], 3, 0)
		}, 1},
		{"checksum failure before the tail of the last segment", func(t *testing.T, m *vfs.MemFS, segs []string) {
			m.FlipBit(segs[len(segs)-1], segmentHeaderSize+100, 2)
		}, -2},
		{"garbage after the end of the log", func(t *testing.T, m *vfs.MemFS, segs []string) {
			last := segs[len(segs)-1]
			end := usedEnd(t, m, last)
			m.FlipBit(last, end+100, 0)
		}, -2},
		{"segment renamed to another first index", func(t *testing.T, m *vfs.MemFS, segs []string) {
			seq, first, _ := parseSegmentName(filepath.Base(segs[1]))
			m.Rename(segs[1], filepath.Join("/wal", segmentName(seq, first+1)))
		}, -1},
		{"sealed segment cut short", func(t *testing.T, m *vfs.MemFS, segs []string) {
			f, _ := m.OpenReadWrite(segs[0])
			f.Truncate(usedEnd(t, m, segs[0]) - 3)
			f.Close()
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := vfs.NewMem(1)
			sampleLog(t, m, MinSegmentSize, 200)
			names, _ := m.List("/wal")
			if len(names) < 4 {
				t.Fatalf("sample has only %d segments", len(names))
			}
			var segs []string
			for _, n := range names {
				segs = append(segs, filepath.Join("/wal", n))
			}
			tc.break_(t, m, segs)
			_, err := Open("/wal", memOpts(m, MinSegmentSize))
			ce, ok := isCorrupt(err)
			if !ok {
				t.Fatalf("Open = %v, want a CorruptError", err)
			}
			want := ""
			switch {
			case tc.file >= 0:
				want = segs[tc.file]
			case tc.file == -2:
				want = segs[len(segs)-1]
			}
			if want != "" && ce.File != want {
				t.Fatalf("error names %s, want %s: %v", ce.File, want, err)
			}
			t.Log(err)
		})
	}
}

// TestTornTailRecovered: a write cut at any byte of the last batch is
// dropped, and the batches before it survive.
func TestTornTailRecovered(t *testing.T) {
	m := vfs.NewMem(1)
	want := sampleLog(t, m, 64<<10, 20)
	names, _ := m.List("/wal")
	last := filepath.Join("/wal", names[len(names)-1])
	end := usedEnd(t, m, last)
	// Append one more batch by hand, then cut it at every byte.
	var batch []byte
	batch = appendRecord(batch, &record{kind: kindEntry, entry: raft.Entry{Term: 1, Index: 21, Data: []byte("torn")}}, false)
	batch = appendRecord(batch, &record{kind: kindHardState, hs: raft.HardState{Term: 1, Commit: 21}}, true)
	for cut := 1; cut < len(batch); cut++ {
		img := m.CrashClone()
		f, _ := img.OpenReadWrite(last)
		f.WriteAt(batch[:cut], end)
		f.Close()
		w, err := Open("/wal", memOpts(img, 64<<10))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got := describe(w); got != want {
			t.Fatalf("cut at %d:\n got %s\nwant %s", cut, got, want)
		}
		if r := w.Recovery(); r.TornBytes == 0 || r.TornOffset != end {
			t.Fatalf("cut at %d: recovery %+v", cut, r)
		}
	}
}

// failingFS injects err into the n-th operation of the given kind.
func failNth(m *vfs.MemFS, kind vfs.OpKind, n int, err error) {
	count := 0
	m.SetInjector(func(o vfs.Op) error {
		if o.Kind == kind {
			count++
			if count == n {
				return err
			}
		}
		return nil
	})
}

// TestSyncErrorIsSticky: after a failed fsync the WAL refuses every later
// write with the same error, even though the disk "works" again; what was
// acknowledged before survives a crash.
func TestSyncErrorIsSticky(t *testing.T) {
	for _, kind := range []vfs.OpKind{vfs.OpSync, vfs.OpWrite} {
		t.Run(kind.String(), func(t *testing.T) {
			m := vfs.NewMem(1)
			want := sampleLog(t, m, 64<<10, 10)
			w := mustOpen(t, "/wal", memOpts(m, 64<<10))
			failNth(m, kind, 1, syscall.EIO)
			err := w.Save(raft.HardState{Term: 1, Commit: 10}, []raft.Entry{{Term: 1, Index: 11}}, nil, true)
			if !errors.Is(err, ErrIO) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Save = %v, want ErrIO wrapping EIO", err)
			}
			m.SetInjector(nil)
			err2 := w.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: 11}}, nil, true)
			if err2 != err {
				t.Fatalf("second Save = %v, want the same error %v", err2, err)
			}
			if err3 := w.Compact(raft.SnapshotMeta{Index: 5, Term: 1}, 5); err3 != err {
				t.Fatalf("Compact after failure = %v", err3)
			}
			if err4 := w.Close(); err4 != err {
				t.Fatalf("Close after failure = %v", err4)
			}
			// Reads still work, and show only what succeeded.
			if got := describe(w); got != want {
				t.Fatalf("in-memory log changed by a failed Save:\n got %s\nwant %s", got, want)
			}
			for i := range 10 {
				w2, err := Open("/wal", memOpts(m.CrashClone(), 64<<10))
				if err != nil {
					t.Fatalf("crash %d: %v", i, err)
				}
				if got := describe(w2); got != want {
					t.Fatalf("crash %d:\n got %s\nwant %s", i, got, want)
				}
			}
		})
	}
}

// TestNoSpaceAtRoll: a full disk shows when a new segment is
// preallocated; Save says ErrNoSpace, nothing changes, and once space is
// freed the same Save succeeds.
func TestNoSpaceAtRoll(t *testing.T) {
	m := vfs.NewMem(1)
	sampleLog(t, m, MinSegmentSize, 5)
	w := mustOpen(t, "/wal", memOpts(m, MinSegmentSize))
	m.SetCapacity(m.Used() + 100)
	before := describe(w)
	var err error
	next := raft.Index(6)
	for range 100 {
		err = w.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: next, Data: make([]byte, 200)}}, nil, true)
		if err != nil {
			break
		}
		next++
		before = describe(w)
	}
	if !errors.Is(err, ErrNoSpace) || !vfs.IsNoSpace(err) || errors.Is(err, ErrIO) {
		t.Fatalf("Save on a full disk = %v, want ErrNoSpace only", err)
	}
	if got := describe(w); got != before {
		t.Fatalf("failed Save changed the log:\n got %s\nwant %s", got, before)
	}
	if names, _ := m.List("/wal"); len(names) != len(w.Segments()) {
		t.Fatalf("files left behind: %v", names)
	}
	m.SetCapacity(0)
	if err := w.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: next, Data: make([]byte, 200)}}, nil, true); err != nil {
		t.Fatalf("Save after space freed: %v", err)
	}
	want := describe(w)
	w.Close()
	if got := describe(mustOpen(t, "/wal", memOpts(m, MinSegmentSize))); got != want {
		t.Fatalf("reopened:\n got %s\nwant %s", got, want)
	}
}

// TestNoSpaceMidWrite: a batch bigger than a segment grows the file past
// its preallocation, and the disk fills mid-write. The partial batch is
// erased; the log is unchanged, and a crash at any point recovers it.
func TestNoSpaceMidWrite(t *testing.T) {
	m := vfs.NewMem(1)
	want := sampleLog(t, m, MinSegmentSize, 3)
	w := mustOpen(t, "/wal", memOpts(m, MinSegmentSize))
	m.SetCapacity(m.Used() + MinSegmentSize + 3000)
	var big []raft.Entry
	for i := raft.Index(4); i < 14; i++ {
		big = append(big, raft.Entry{Term: 1, Index: i, Data: make([]byte, 1000)})
	}
	var images []*vfs.MemFS
	m.SetInjector(func(vfs.Op) error { images = append(images, m.CrashClone()); return nil })
	err := w.Save(raft.HardState{}, big, nil, true)
	if !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrIO) {
		t.Fatalf("Save = %v, want ErrNoSpace", err)
	}
	m.SetInjector(nil)
	if got := describe(w); got != want {
		t.Fatalf("log changed:\n got %s\nwant %s", got, want)
	}
	images = append(images, m.CrashClone())
	for i, img := range images {
		w2, err := Open("/wal", memOpts(img, MinSegmentSize))
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		if got := describe(w2); got != want {
			t.Fatalf("image %d:\n got %s\nwant %s", i, got, want)
		}
	}
	m.SetCapacity(0)
	if err := w.Save(raft.HardState{}, big, nil, true); err != nil {
		t.Fatalf("retry with space: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	m := vfs.NewMem(1)
	sampleLog(t, m, MinSegmentSize, 3)
	f, _ := m.Create("/wal/bogus.wal")
	f.Close()
	if _, err := Open("/wal", memOpts(m, MinSegmentSize)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("stray .wal file: %v", err)
	}
	m.Remove("/wal/bogus.wal")
	// Unknown files are left alone; temporary segments are removed.
	f, _ = m.Create("/wal/README")
	f.Close()
	f, _ = m.Create("/wal/" + segmentName(99, 99) + tempSuffix)
	f.Close()
	w := mustOpen(t, "/wal", memOpts(m, MinSegmentSize))
	if w.Recovery().SegmentsRemoved != 1 {
		t.Fatalf("recovery %+v", w.Recovery())
	}
	if _, err := m.Stat("/wal/README"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stat("/wal/" + segmentName(99, 99) + tempSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temporary segment survived: %v", err)
	}
}

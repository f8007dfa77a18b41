package snap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

func opts(fs vfs.FS) Options { return Options{FS: fs, Logger: slog.New(slog.DiscardHandler)} }

func meta(i raft.Index, t raft.Term) raft.SnapshotMeta {
	return raft.SnapshotMeta{Index: i, Term: t, ConfState: raft.NewConfState(1, 2, 3)}
}

func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeSnap(t testing.TB, s *Store, m raft.SnapshotMeta, data []byte) {
	t.Helper()
	w, err := s.Create(m)
	if err != nil {
		t.Fatal(err)
	}
	// Stream in odd-sized chunks.
	for len(data) > 0 {
		n := min(len(data), 7777)
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readSnap(s *Store, m raft.SnapshotMeta) ([]byte, error) {
	r, err := s.Open(m)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{{"mem", vfs.NewMem(1), "/snap"}, {"os", vfs.Default, filepath.Join(t.TempDir(), "snap")}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.dir, opts(tc.fs))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Latest(); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Latest of empty store: %v", err)
			}
			data := payload(1<<20+3, 1)
			writeSnap(t, s, meta(10, 2), data)
			writeSnap(t, s, meta(20, 3), nil) // empty data is fine
			got, err := readSnap(s, meta(10, 2))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
			if _, err := s.Open(meta(10, 3)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("wrong term: %v", err)
			}
			s2, err := Open(tc.dir, opts(tc.fs))
			if err != nil {
				t.Fatal(err)
			}
			latest, err := s2.Latest()
			if err != nil || latest.Index != 20 || latest.Term != 3 || !latest.ConfState.Equal(raft.NewConfState(1, 2, 3)) {
				t.Fatalf("Latest after reopen = %v, %v", raft.DescribeSnapshot(latest), err)
			}
			r, _ := s2.Open(meta(10, 2))
			if r.Size() != int64(len(data)) || r.Meta().Index != 10 {
				t.Fatalf("Size %d Meta %v", r.Size(), r.Meta())
			}
			r.Close()
			if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Read after Close: %v", err)
			}
			if err := s2.Prune(20); err != nil {
				t.Fatal(err)
			}
			if l := s2.List(); len(l) != 1 || l[0].Index != 20 {
				t.Fatalf("List after prune: %v", l)
			}
			if err := s2.Prune(100); err != nil || len(s2.List()) != 1 {
				t.Fatalf("Prune removed the newest: %v %v", err, s2.List())
			}
		})
	}
}

func TestCancel(t *testing.T) {
	m := vfs.NewMem(1)
	s, _ := Open("/snap", opts(m))
	w, _ := s.Create(meta(5, 1))
	w.Write([]byte("partial"))
	if err := w.Cancel(); err != nil {
		t.Fatal(err)
	}
	if names, _ := m.List("/snap"); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Cancel: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Cancel: %v", err)
	}
}

// TestCrashAtEveryPoint crashes at every filesystem operation while a
// snapshot is written over an older one: a restart always opens, finds
// the old or the new snapshot complete, never a partial one, and leaves no
// temporary file.
func TestCrashAtEveryPoint(t *testing.T) {
	old, neu := payload(100_000, 1), payload(300_000, 2)
	for seed := range uint64(10) {
		m := vfs.NewMem(seed)
		s, _ := Open("/snap", opts(m))
		writeSnap(t, s, meta(10, 1), old)
		var images []*vfs.MemFS
		m.SetInjector(func(vfs.Op) error { images = append(images, m.CrashClone()); return nil })
		writeSnap(t, s, meta(20, 2), neu)
		m.SetInjector(nil)
		images = append(images, m.CrashClone())
		sawNew := false
		for i, img := range images {
			s2, err := Open("/snap", opts(img))
			if err != nil {
				t.Fatalf("seed %d image %d: Open: %v", seed, i, err)
			}
			l, err := s2.Latest()
			if err != nil {
				t.Fatalf("seed %d image %d: Latest: %v", seed, i, err)
			}
			want := old
			if l.Index == 20 {
				want, sawNew = neu, true
			}
			got, err := readSnap(s2, l)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("seed %d image %d: snapshot %d: %d bytes, %v", seed, i, l.Index, len(got), err)
			}
			names, _ := img.List("/snap")
			for _, n := range names {
				if filepath.Ext(n) == tempSuffix {
					t.Fatalf("seed %d image %d: temporary file left: %v", seed, i, names)
				}
			}
		}
		if !sawNew {
			t.Fatalf("seed %d: the new snapshot never survived", seed)
		}
		if l, _ := s.Latest(); l.Index != 20 {
			t.Fatal("Latest did not move")
		}
	}
}

// TestCorruptionDetected flips a bit at every byte of a small snapshot:
// either Open or the read to the end reports a CorruptError naming the file.
func TestCorruptionDetected(t *testing.T) {
	m := vfs.NewMem(1)
	s, _ := Open("/snap", opts(m))
	writeSnap(t, s, meta(7, 1), payload(300, 3))
	path := filepath.Join("/snap", fileName(7, 1))
	st, _ := m.Stat(path)
	for off := int64(0); off < st.Size(); off++ {
		m.FlipBit(path, off, uint(off%8))
		_, err := readSnap(s, meta(7, 1))
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != path {
			t.Fatalf("flip at %d: %v", off, err)
		}
		m.FlipBit(path, off, uint(off%8))
	}
	// A cut-off file, and a damaged newest snapshot at store Open.
	f, _ := m.OpenReadWrite(path)
	f.Truncate(st.Size() - 1)
	f.Close()
	if _, err := readSnap(s, meta(7, 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := Open("/snap", opts(m)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("store Open with a damaged newest snapshot: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	m := vfs.NewMem(1)
	s, _ := Open("/snap", opts(m))
	m.SetCapacity(m.Used() + 100_000)
	w, err := s.Create(meta(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	data := payload(1<<20, 1)
	_, werr := w.Write(data)
	cerr := w.Close()
	if !vfs.IsNoSpace(werr) && !vfs.IsNoSpace(cerr) {
		t.Fatalf("Write %v, Close %v: want ENOSPC", werr, cerr)
	}
	if names, _ := m.List("/snap"); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
	if _, err := s.Latest(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed snapshot visible: %v", err)
	}
}

// TestStreamingMemory writes and reads a 64 MiB snapshot through the OS
// filesystem and checks that neither side allocates memory in proportion
// to it.
func TestStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	s, err := Open(t.TempDir(), opts(vfs.Default))
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	chunk := payload(1<<20, 9)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := s.Create(meta(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	for range size / len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(meta(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, r, make([]byte, 32<<10))
	r.Close()
	if err != nil || n != size {
		t.Fatalf("read %d, %v", n, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("allocated %d bytes to stream %d", alloc, size)
	}
}

func FuzzReader(f *testing.F) {
	m := vfs.NewMem(1)
	s, _ := Open("/snap", opts(m))
	for i, n := range []int{0, 10, 5000} {
		writeSnap(f, s, meta(raft.Index(i+1), 1), payload(n, uint64(i)))
		b, _ := vfs.ReadFile(m, filepath.Join("/snap", fileName(raft.Index(i+1), 1)))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := newReader("fuzz.snap", bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("not a CorruptError: %v", err)
			}
			return
		}
		got, err := io.ReadAll(r)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("not a CorruptError: %v", err)
			}
			return
		}
		// Accepted: it must be exactly what a Writer would produce.
		want := encodeHeader(r.Meta())
		hcrc := crcOf(want[:len(want)-4])
		want = append(want, got...)
		want = append(want, encodeTrailer(uint64(len(got)), crcUpdate(hcrc, got))...)
		if !bytes.Equal(want, data) {
			t.Fatalf("accepted bytes differ from their canonical encoding")
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzReader when
// SNAP_WRITE_FUZZ_SEEDS=1 (the seeds are checked in; go test reads them).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SNAP_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SNAP_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	m := vfs.NewMem(1)
	s, _ := Open("/snap", opts(m))
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	os.MkdirAll(dir, 0o755)
	for i, n := range []int{0, 10, 700} {
		writeSnap(t, s, meta(raft.Index(i+1), 1), payload(n, uint64(i)))
		b, _ := vfs.ReadFile(m, filepath.Join("/snap", fileName(raft.Index(i+1), 1)))
		seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

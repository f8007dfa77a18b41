package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func mustWrite(t *testing.T, f File, off int64, p []byte) {
	t.Helper()
	if n, err := f.WriteAt(p, off); err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, m FS, name string) ([]byte, bool) {
	t.Helper()
	b, err := ReadFile(m, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	must(t, err)
	return b, true
}

// newSyncedFile creates dir/name durably (name included) holding data.
func newSyncedFile(t *testing.T, m *MemFS, name string, data []byte) File {
	t.Helper()
	must(t, MkdirAllSync(m, filepath.Dir(name)))
	f, err := m.Create(name)
	must(t, err)
	mustWrite(t, f, 0, data)
	must(t, f.Sync())
	must(t, SyncDir(m, filepath.Dir(name)))
	return f
}

func TestMemSyncedDataSurvivesEveryCrash(t *testing.T) {
	for seed := range uint64(50) {
		m := NewMem(seed)
		newSyncedFile(t, m, "/d/f", []byte("durable"))
		c := m.CrashClone()
		got, ok := readAll(t, c, "/d/f")
		if !ok || string(got) != "durable" {
			t.Fatalf("seed %d: got %q, %v", seed, got, ok)
		}
	}
}

// TestMemUnsyncedWritesArePrefixes checks the crash model: of the writes
// after the last sync, a crash keeps a prefix in write order, the last one
// cut at any byte, and every outcome from "nothing" to "everything" occurs.
func TestMemUnsyncedWritesArePrefixes(t *testing.T) {
	writes := [][]byte{[]byte("aaaa"), []byte("bbbb"), []byte("cccc")}
	full := bytes.Join(writes, nil)
	seen := map[int]bool{}
	for seed := range uint64(400) {
		m := NewMem(seed)
		f := newSyncedFile(t, m, "/f", nil)
		must(t, f.Preallocate(0, 16))
		must(t, f.Sync())
		for i, w := range writes {
			mustWrite(t, f, int64(4*i), w)
		}
		got, ok := readAll(t, m.CrashClone(), "/f")
		if !ok || len(got) != 16 {
			t.Fatalf("seed %d: file %q, %v", seed, got, ok)
		}
		n := 0
		for n < len(full) && got[n] == full[n] {
			n++
		}
		if !bytes.Equal(got[n:], make([]byte, 16-n)) {
			t.Fatalf("seed %d: %q is not a prefix of %q followed by zeros", seed, got, full)
		}
		seen[n] = true
	}
	for n := 0; n <= len(full); n++ {
		if !seen[n] {
			t.Errorf("no crash kept exactly %d bytes", n)
		}
	}
}

func TestMemUnsyncedNamesMayVanish(t *testing.T) {
	var vanished, kept int
	for seed := range uint64(100) {
		m := NewMem(seed)
		must(t, MkdirAllSync(m, "/d"))
		f, err := m.Create("/d/f")
		must(t, err)
		mustWrite(t, f, 0, []byte("x"))
		must(t, f.Sync()) // data synced, name not
		if _, ok := readAll(t, m.CrashClone(), "/d/f"); ok {
			kept++
		} else {
			vanished++
		}
		must(t, SyncDir(m, "/d"))
		if _, ok := readAll(t, m.CrashClone(), "/d/f"); !ok {
			t.Fatalf("seed %d: file lost after the directory was synced", seed)
		}
	}
	if vanished == 0 || kept == 0 {
		t.Fatalf("vanished %d, kept %d: want both outcomes", vanished, kept)
	}
}

func TestMemRenameIsAtomic(t *testing.T) {
	var undone, done int
	for seed := range uint64(100) {
		m := NewMem(seed)
		newSyncedFile(t, m, "/d/a.tmp", []byte("new"))
		newSyncedFile(t, m, "/d/a", []byte("old"))
		must(t, m.Rename("/d/a.tmp", "/d/a"))
		if got, _ := readAll(t, m, "/d/a"); string(got) != "new" {
			t.Fatalf("live view after rename: %q", got)
		}
		c := m.CrashClone()
		got, ok := readAll(t, c, "/d/a")
		_, tmp := readAll(t, c, "/d/a.tmp")
		switch {
		case ok && string(got) == "new" && !tmp:
			done++
		case ok && string(got) == "old" && tmp:
			undone++
		default:
			t.Fatalf("seed %d: half a rename: a=%q (%v), tmp exists %v", seed, got, ok, tmp)
		}
		must(t, SyncDir(m, "/d"))
		if got, _ := readAll(t, m.CrashClone(), "/d/a"); string(got) != "new" {
			t.Fatalf("seed %d: rename lost after directory sync", seed)
		}
	}
	if undone == 0 || done == 0 {
		t.Fatalf("undone %d, done %d: want both outcomes", undone, done)
	}
}

func TestMemRemoveMayBeUndone(t *testing.T) {
	var back int
	for seed := range uint64(50) {
		m := NewMem(seed)
		newSyncedFile(t, m, "/d/f", []byte("x"))
		must(t, m.Remove("/d/f"))
		if _, ok := readAll(t, m, "/d/f"); ok {
			t.Fatal("removed file still visible")
		}
		if _, ok := readAll(t, m.CrashClone(), "/d/f"); ok {
			back++
		}
		must(t, SyncDir(m, "/d"))
		if _, ok := readAll(t, m.CrashClone(), "/d/f"); ok {
			t.Fatal("removed file came back after directory sync")
		}
	}
	if back == 0 {
		t.Fatal("an unsynced remove was never undone")
	}
}

// TestMemFailedSyncForfeitsData: after a failed sync, the writes it should
// have covered are never made durable, even by a later successful sync
// (the page cache may have dropped them), though reads still see them.
func TestMemFailedSyncForfeitsData(t *testing.T) {
	m := NewMem(1)
	f := newSyncedFile(t, m, "/f", []byte("0000"))
	mustWrite(t, f, 0, []byte("1111"))
	fail := true
	m.SetInjector(func(op Op) error {
		if op.Kind == OpSync && fail {
			fail = false
			return syscall.EIO
		}
		return nil
	})
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	if got, _ := readAll(t, m, "/f"); string(got) != "1111" {
		t.Fatalf("live view %q", got)
	}
	must(t, f.Sync())
	for range 20 {
		if got, _ := readAll(t, m.CrashClone(), "/f"); string(got) != "0000" {
			t.Fatalf("after failed sync the lost write became durable: %q", got)
		}
	}
}

// TestMemFailedSyncForfeitsDataAfterRename: the forfeit applies to the file
// synced, whatever name it was opened under. The WAL creates each segment
// under a temporary name and renames it into place, so every sync of a
// live segment goes through a handle whose name no longer exists (or,
// worse, names another file).
func TestMemFailedSyncForfeitsDataAfterRename(t *testing.T) {
	m := NewMem(1)
	f := newSyncedFile(t, m, "/f.tmp", []byte("0000"))
	must(t, m.Rename("/f.tmp", "/f"))
	must(t, SyncDir(m, "/"))
	// Another file now lives under the old name, with a pending write of
	// its own that the failed sync must not touch.
	g, err := m.Create("/f.tmp")
	must(t, err)
	must(t, g.Sync())
	must(t, SyncDir(m, "/"))
	mustWrite(t, g, 0, []byte("gggg"))
	mustWrite(t, f, 0, []byte("1111"))
	fail := true
	m.SetInjector(func(op Op) error {
		if op.Kind == OpSync && fail {
			fail = false
			return syscall.EIO
		}
		return nil
	})
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	must(t, f.Sync())
	must(t, g.Sync())
	for range 20 {
		c := m.CrashClone()
		if got, _ := readAll(t, c, "/f"); string(got) != "0000" {
			t.Fatalf("after a failed sync of a renamed file the lost write became durable: %q", got)
		}
		if got, _ := readAll(t, c, "/f.tmp"); string(got) != "gggg" {
			t.Fatalf("a failed sync of another file forfeited this one's write: %q", got)
		}
	}
}

func TestMemInjectedWriteError(t *testing.T) {
	m := NewMem(1)
	f := newSyncedFile(t, m, "/f", []byte("ab"))
	m.SetInjector(func(op Op) error {
		if op.Kind == OpWrite {
			return syscall.EIO
		}
		return nil
	})
	if n, err := f.WriteAt([]byte("zz"), 0); n != 0 || !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if got, _ := readAll(t, m, "/f"); string(got) != "ab" {
		t.Fatalf("failed write changed the file: %q", got)
	}
}

func TestMemCapacity(t *testing.T) {
	m := NewMem(1)
	f := newSyncedFile(t, m, "/f", nil)
	m.SetCapacity(10)
	if err := f.Preallocate(0, 11); !IsNoSpace(err) {
		t.Fatalf("Preallocate past capacity = %v", err)
	}
	must(t, f.Preallocate(0, 6))
	// Writes inside preallocated space never run out of room.
	mustWrite(t, f, 0, []byte("abcdef"))
	n, err := f.WriteAt([]byte("ghijkl"), 6)
	if n != 4 || !IsNoSpace(err) {
		t.Fatalf("WriteAt past capacity = %d, %v; want 4, ENOSPC", n, err)
	}
	if got, _ := readAll(t, m, "/f"); string(got) != "abcdefghij" {
		t.Fatalf("content %q", got)
	}
	must(t, m.Remove("/f"))
	if m.Used() != 0 {
		t.Fatalf("used %d after remove", m.Used())
	}
}

func TestMemFlipBit(t *testing.T) {
	m := NewMem(1)
	newSyncedFile(t, m, "/f", []byte{0, 0})
	must(t, m.FlipBit("/f", 1, 3))
	if got, _ := readAll(t, m, "/f"); !bytes.Equal(got, []byte{0, 8}) {
		t.Fatalf("live %v", got)
	}
	if got, _ := readAll(t, m.CrashClone(), "/f"); !bytes.Equal(got, []byte{0, 8}) {
		t.Fatalf("durable %v", got)
	}
}

func TestMemCrashStopsTheOldFS(t *testing.T) {
	m := NewMem(1)
	f := newSyncedFile(t, m, "/f", []byte("x"))
	c := m.Crash()
	if _, err := f.WriteAt([]byte("y"), 0); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write after crash: %v", err)
	}
	if _, err := m.Create("/g"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("create after crash: %v", err)
	}
	if got, _ := readAll(t, c, "/f"); string(got) != "x" {
		t.Fatalf("crashed image %q", got)
	}
	// The image is a working filesystem.
	g, err := c.Create("/g")
	must(t, err)
	mustWrite(t, g, 0, []byte("z"))
}

func TestMemTruncateAndCreateAreTracked(t *testing.T) {
	m := NewMem(3)
	f := newSyncedFile(t, m, "/f", []byte("abcdef"))
	must(t, f.Truncate(2))
	must(t, f.Sync())
	if got, _ := readAll(t, m.CrashClone(), "/f"); string(got) != "ab" {
		t.Fatalf("after synced truncate: %q", got)
	}
	g, err := m.Create("/f") // O_TRUNC the same inode
	must(t, err)
	mustWrite(t, g, 0, []byte("Z"))
	must(t, g.Sync())
	if got, _ := readAll(t, m.CrashClone(), "/f"); string(got) != "Z" {
		t.Fatalf("after create over it: %q", got)
	}
}

// TestFSContract runs the same operations on the OS filesystem and on
// MemFS and expects the same visible results.
func TestFSContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   FS
		root string
	}{
		{"os", Default, t.TempDir()},
		{"mem", NewMem(1), "/root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, dir := tc.fs, filepath.Join(tc.root, "a", "b")
			must(t, MkdirAllSync(fsys, dir))
			f, err := fsys.Create(filepath.Join(dir, "x.tmp"))
			must(t, err)
			must(t, f.Preallocate(0, 4096))
			if st, err := f.Stat(); err != nil || st.Size() != 4096 {
				t.Fatalf("size after preallocate: %v %v", st, err)
			}
			if _, err := f.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, f, 5, []byte(" world"))
			must(t, f.Sync())
			must(t, f.Truncate(11))
			must(t, f.Close())
			must(t, fsys.Rename(filepath.Join(dir, "x.tmp"), filepath.Join(dir, "x")))
			must(t, SyncDir(fsys, dir))
			names, err := fsys.List(dir)
			must(t, err)
			if !slices.Equal(names, []string{"x"}) {
				t.Fatalf("List = %v", names)
			}
			b, err := ReadFile(fsys, filepath.Join(dir, "x"))
			must(t, err)
			if string(b) != "hello world" {
				t.Fatalf("content %q", b)
			}
			r, err := fsys.Open(filepath.Join(dir, "x"))
			must(t, err)
			if _, err := r.Write([]byte("no")); err == nil {
				t.Fatal("write to a read-only file succeeded")
			}
			must(t, r.Close())
			rw, err := fsys.OpenReadWrite(filepath.Join(dir, "x"))
			must(t, err)
			mustWrite(t, rw, 0, []byte("J"))
			must(t, rw.Close())
			must(t, fsys.Remove(filepath.Join(dir, "x")))
			if _, err := fsys.Stat(filepath.Join(dir, "x")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat after remove: %v", err)
			}
			if _, err := fsys.Open(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Open missing: %v", err)
			}
		})
	}
}

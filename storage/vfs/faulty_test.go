package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// faultyCases are the filesystems Faulty is tested over: the OS's, in a
// temporary directory, and MemFS.
func faultyCases(t *testing.T) []struct {
	name string
	fs   FS
	root string
} {
	return []struct {
		name string
		fs   FS
		root string
	}{
		{"os", Default, t.TempDir()},
		{"mem", NewMem(1), "/root"},
	}
}

// wantNoSpace fails the test unless err is what a full disk gives op on
// path, as the os package shapes it: an *os.PathError wrapping ENOSPC.
func wantNoSpace(t *testing.T, what string, err error, op, path string) {
	t.Helper()
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Err != syscall.ENOSPC || pe.Op != op || pe.Path != path ||
		!errors.Is(err, syscall.ENOSPC) || !IsNoSpace(err) {
		t.Fatalf("%s on a full disk: %#v (%v); want &os.PathError{Op: %q, Path: %q, Err: ENOSPC}", what, err, err, op, path)
	}
}

func fileContent(t *testing.T, fsys FS, name string) []byte {
	t.Helper()
	b, err := ReadFile(fsys, name)
	must(t, err)
	return b
}

// TestFaultyNoSpace fills the disk under open files: every call that
// would take space fails with ENOSPC and changes nothing; the others
// work; healing restores normal operation, on the same open files.
func TestFaultyNoSpace(t *testing.T) {
	for _, tc := range faultyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaulty(tc.fs)
			dir := filepath.Join(tc.root, "d")
			must(t, MkdirAllSync(f, dir))
			name := filepath.Join(dir, "seg")
			file, err := f.Create(name)
			must(t, err)
			defer file.Close()
			must(t, file.Preallocate(0, 64))
			if _, err := file.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			must(t, file.Sync())
			before := fileContent(t, f, name)
			other := filepath.Join(dir, "other")
			o, err := f.Create(other)
			must(t, err)
			mustWrite(t, o, 0, []byte("0123456789"))
			must(t, o.Close())

			f.Set(DiskFaults{NoSpace: true})
			if got := f.Faults(); got != (DiskFaults{NoSpace: true}) {
				t.Fatalf("Faults() = %v", got)
			}

			// What takes space fails, with nothing applied: not even
			// inside the preallocated range.
			n, err := file.Write([]byte(" world"))
			if n != 0 {
				t.Fatalf("Write on a full disk wrote %d bytes", n)
			}
			wantNoSpace(t, "Write", err, "write", name)
			n, err = file.WriteAt([]byte("XY"), 1)
			if n != 0 {
				t.Fatalf("WriteAt on a full disk wrote %d bytes", n)
			}
			wantNoSpace(t, "WriteAt inside the file", err, "write", name)
			_, err = file.WriteAt([]byte("XY"), 100)
			wantNoSpace(t, "WriteAt past the end", err, "write", name)
			wantNoSpace(t, "Preallocate", file.Preallocate(0, 4096), "fallocate", name)
			wantNoSpace(t, "Truncate that grows", file.Truncate(128), "truncate", name)
			newFile := filepath.Join(dir, "new")
			_, err = f.Create(newFile)
			wantNoSpace(t, "Create of a new file", err, "open", newFile)
			newDir := filepath.Join(dir, "sub", "dir")
			wantNoSpace(t, "MkdirAll of a new directory", f.MkdirAll(newDir, 0o755), "mkdir", newDir)
			if got := fileContent(t, f, name); !bytes.Equal(got, before) {
				t.Fatalf("a failed call changed the file: %q, was %q", got, before)
			}
			for _, p := range []string{newFile, filepath.Join(dir, "sub")} {
				if _, err := f.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s exists after a failed create: %v", p, err)
				}
			}

			// What frees space, reads and syncs works.
			buf := make([]byte, 5)
			if _, err := file.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
				t.Fatalf("ReadAt on a full disk: %q, %v", buf, err)
			}
			must(t, file.Sync())
			must(t, SyncDir(f, dir))
			must(t, f.MkdirAll(dir, 0o755)) // exists: nothing to make
			must(t, file.Truncate(64))      // same size
			must(t, f.Rename(other, other+".old"))
			must(t, f.Remove(other+".old"))
			again, err := f.Create(name + ".tmp") // new: refused
			if err == nil {
				again.Close()
				t.Fatal("Create of a new file succeeded on a full disk")
			}
			ro, err := f.Open(name)
			must(t, err)
			must(t, ro.Close())
			must(t, file.Truncate(32))
			if st, err := file.Stat(); err != nil || st.Size() != 32 {
				t.Fatalf("after a shrinking Truncate: %v, %v", st, err)
			}

			// Healed: the same open file takes writes again, at the
			// position the failed Write left untouched.
			f.Set(DiskFaults{})
			if _, err := file.Write([]byte(" world")); err != nil {
				t.Fatal(err)
			}
			must(t, file.Preallocate(0, 64))
			must(t, file.Sync())
			got := fileContent(t, f, name)
			if len(got) != 64 || string(got[:11]) != "hello world" {
				t.Fatalf("after healing: %q", got)
			}
			g, err := f.Create(newFile)
			must(t, err)
			must(t, g.Close())
			must(t, f.MkdirAll(newDir, 0o755))
		})
	}
}

// TestFaultyCreateOverExisting: on a full disk, Create of an existing
// file works (it truncates, freeing space), as the proto and the doc say.
func TestFaultyCreateOverExisting(t *testing.T) {
	for _, tc := range faultyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaulty(tc.fs)
			must(t, f.MkdirAll(tc.root, 0o755))
			name := filepath.Join(tc.root, "f")
			file, err := f.Create(name)
			must(t, err)
			mustWrite(t, file, 0, []byte("old"))
			must(t, file.Close())
			f.Set(DiskFaults{NoSpace: true})
			file, err = f.Create(name)
			must(t, err)
			defer file.Close()
			if got := fileContent(t, f, name); len(got) != 0 {
				t.Fatalf("Create did not truncate: %q", got)
			}
			_, err = file.Write([]byte("x"))
			wantNoSpace(t, "Write to the recreated file", err, "write", name)
		})
	}
}

// TestFaultyDelays: each call waits at least the delay in force (only the
// lower bound is asserted: the machine may be slow).
func TestFaultyDelays(t *testing.T) {
	const writeDelay, syncDelay = 30 * time.Millisecond, 40 * time.Millisecond
	for _, tc := range faultyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaulty(tc.fs)
			must(t, f.MkdirAll(tc.root, 0o755))
			name := filepath.Join(tc.root, "f")
			file, err := f.Create(name)
			must(t, err)
			defer file.Close()
			f.Set(DiskFaults{WriteDelay: writeDelay, SyncDelay: syncDelay})
			timed := func(what string, want time.Duration, call func() error) {
				t.Helper()
				start := time.Now()
				if err := call(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if d := time.Since(start); d < want {
					t.Fatalf("%s took %v; the delay is %v", what, d, want)
				}
			}
			timed("Write", writeDelay, func() error { _, err := file.Write([]byte("abc")); return err })
			timed("WriteAt", writeDelay, func() error { _, err := file.WriteAt([]byte("d"), 3); return err })
			timed("Preallocate", writeDelay, func() error { return file.Preallocate(0, 4096) })
			timed("Sync", syncDelay, file.Sync)
			timed("directory Sync", syncDelay, func() error { return SyncDir(f, tc.root) })
			if got := fileContent(t, f, name); string(got[:4]) != "abcd" || len(got) != 4096 {
				t.Fatalf("delayed writes wrote %q", got[:min(len(got), 8)])
			}
		})
	}
}

// TestFaultySetReleasesWaiters: a call waiting out a delay is released as
// soon as Set removes the delay, and held on when Set lengthens it. In a
// synctest bubble the clock moves only when every goroutine is blocked,
// so "released at once" means no time passed at all.
func TestFaultySetReleasesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := NewFaulty(NewMem(1))
		file, err := f.Create("/f")
		must(t, err)
		f.Set(DiskFaults{SyncDelay: time.Hour, WriteDelay: time.Second})

		start := time.Now()
		done := make(chan time.Time)
		go func() {
			must(t, file.Sync())
			done <- time.Now()
		}()
		synctest.Wait() // the Sync is waiting out its hour
		f.Set(DiskFaults{WriteDelay: time.Second})
		if end := <-done; end != start {
			t.Fatalf("the Sync returned %v after the delay was removed; want at once", end.Sub(start))
		}

		// A longer delay set during the wait holds the call longer; a
		// shorter one, past what it has waited, releases it.
		start = time.Now()
		go func() {
			_, err := file.Write([]byte("x"))
			must(t, err)
			done <- time.Now()
		}()
		synctest.Wait()
		f.Set(DiskFaults{WriteDelay: 3 * time.Second})
		time.Sleep(2 * time.Second) // fake time: the bubble's clock
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("the Write returned before the lengthened delay")
		default:
		}
		f.Set(DiskFaults{WriteDelay: time.Second})
		if end := <-done; end.Sub(start) != 2*time.Second {
			t.Fatalf("the Write returned after %v; want 2s (released when the delay fell below what it had waited)", end.Sub(start))
		}
	})
}

// TestFaultyConcurrentSet flips the faults while writers write and sync
// the same open file: each write is applied whole or not at all (n is 0
// or everything, and afterwards the file holds exactly the writes that
// succeeded, and zeros where the others would have gone).
func TestFaultyConcurrentSet(t *testing.T) {
	for _, tc := range faultyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaulty(tc.fs)
			must(t, f.MkdirAll(tc.root, 0o755))
			name := filepath.Join(tc.root, "f")
			file, err := f.Create(name)
			must(t, err)
			defer file.Close()
			const writers, writes, size = 4, 200, 16
			must(t, file.Preallocate(0, writers*writes*size))

			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f.Set(DiskFaults{NoSpace: i%2 == 0, SyncDelay: time.Duration(i%3) * time.Microsecond})
					_ = f.Faults()
				}
			})
			var ok [writers][writes]bool
			var errs [writers]error
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					p := bytes.Repeat([]byte{byte('a' + w)}, size)
					for i := range writes {
						if i%7 == w {
							// Writers flip the faults too, so that
							// flips land between writes on any machine.
							f.Set(DiskFaults{NoSpace: !f.Faults().NoSpace})
						}
						n, err := file.WriteAt(p, int64((w*writes+i)*size))
						switch {
						case err == nil && n == size:
							ok[w][i] = true
						case IsNoSpace(err) && n == 0:
						default:
							errs[w] = fmt.Errorf("writer %d, write %d: %d bytes, %v", w, i, n, err)
							return
						}
						if i%16 == 0 {
							if err := file.Sync(); err != nil {
								errs[w] = fmt.Errorf("writer %d: sync: %w", w, err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			flipper.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}

			f.Set(DiskFaults{})
			got := fileContent(t, f, name)
			applied, refused := 0, 0
			for w := range writers {
				for i := range writes {
					want := make([]byte, size)
					if ok[w][i] {
						want = bytes.Repeat([]byte{byte('a' + w)}, size)
						applied++
					} else {
						refused++
					}
					off := (w*writes + i) * size
					if !bytes.Equal(got[off:off+size], want) {
						t.Fatalf("writer %d, write %d (ok %v): the file holds %q", w, i, ok[w][i], got[off:off+size])
					}
				}
			}
			t.Logf("%d writes applied, %d refused", applied, refused)
		})
	}
}

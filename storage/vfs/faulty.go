package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DiskFaults are the failpoints of a Faulty filesystem. The zero value is
// a healthy disk.
type DiskFaults struct {
	// WriteDelay holds back every Write, WriteAt and Preallocate this long
	// before it runs: a slow disk. It is per call, whatever the call's
	// size (a WAL batch is one call; a snapshot is one per 256 KiB).
	WriteDelay time.Duration
	// SyncDelay holds back every Sync, of files and of directories, this
	// long before it runs: a disk with slow flushes.
	SyncDelay time.Duration
	// NoSpace makes the disk full: every Write, WriteAt and Preallocate, a
	// Create of a file that does not exist yet, a MkdirAll that would make
	// a directory, and a Truncate that grows a file fail with ENOSPC, and
	// nothing of them is applied. Reads, Sync, Remove, Rename, a shrinking
	// Truncate and a Create over an existing file keep working: a full
	// disk still lets its user free space and make durable what it wrote.
	//
	// Every write fails, even one inside space the file already has (a
	// preallocated WAL segment), where a real full disk would accept it:
	// so the failpoint fires at once, not only when the log next grows.
	// That is within what a real disk may do (a copy-on-write or
	// thin-provisioned filesystem can fail any write with ENOSPC).
	NoSpace bool
}

// IsZero reports whether d is a healthy disk.
func (d DiskFaults) IsZero() bool { return d == DiskFaults{} }

// String describes d for logs: "none", or the failpoints set.
func (d DiskFaults) String() string {
	if d.IsZero() {
		return "none"
	}
	return fmt.Sprintf("write_delay=%v sync_delay=%v no_space=%v", d.WriteDelay, d.SyncDelay, d.NoSpace)
}

// Faulty is an FS that passes every operation to another FS, subject to
// failpoints (DiskFaults) that can be changed at any time with Set: chaos
// runs and tests use it to make a running node's disk slow or full. It is
// safe for concurrent use, and so are the files it opens if the wrapped
// FS's are.
//
// The faults are read at each call, so a Set takes effect on files
// already open, and on calls already waiting out a delay: a call waits
// until it has waited as long as the delay in force says, so a Set that
// shortens or removes the delay releases it at once, and one that
// lengthens it holds it longer. The full-disk check comes after the wait,
// with the faults in force then.
//
// A healthy Faulty costs each call one atomic load. Code that may never
// inject faults should use the wrapped FS directly.
type Faulty struct {
	fs FS

	// mu serializes Set: each state's changed channel is closed exactly
	// once, by the Set that replaces it.
	mu  sync.Mutex
	cur atomic.Pointer[faultState]
}

// faultState is one Set's faults, immutable once published.
type faultState struct {
	DiskFaults
	// changed is closed when a Set replaces this state, waking the calls
	// waiting out its delays so that they read the new one.
	changed chan struct{}
}

var _ FS = (*Faulty)(nil)

// NewFaulty returns a Faulty over fs, with a healthy disk.
func NewFaulty(fs FS) *Faulty {
	f := &Faulty{fs: fs}
	f.cur.Store(&faultState{changed: make(chan struct{})})
	return f
}

// Set replaces the failpoints in force. Negative delays count as zero.
func (f *Faulty) Set(d DiskFaults) {
	d.WriteDelay, d.SyncDelay = max(d.WriteDelay, 0), max(d.SyncDelay, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.cur.Swap(&faultState{DiskFaults: d, changed: make(chan struct{})})
	close(old.changed)
}

// Faults returns the failpoints in force.
func (f *Faulty) Faults() DiskFaults { return f.cur.Load().DiskFaults }

// delayKind says which delay a call waits out.
type delayKind uint8

const (
	delayWrite delayKind = iota
	delaySync
)

func (k delayKind) of(d DiskFaults) time.Duration {
	if k == delaySync {
		return d.SyncDelay
	}
	return d.WriteDelay
}

// wait holds the caller back until it has waited as long as the delay of
// kind in force says, re-reading the faults whenever Set changes them,
// and returns the faults in force when it is done. It sleeps on a timer,
// never longer than the delay in force.
func (f *Faulty) wait(kind delayKind) DiskFaults {
	st := f.cur.Load()
	if kind.of(st.DiskFaults) <= 0 {
		return st.DiskFaults
	}
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		left := kind.of(st.DiskFaults) - time.Since(start)
		if left <= 0 {
			return st.DiskFaults
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left) // since Go 1.23, no stale tick survives Reset
		}
		select {
		case <-timer.C:
		case <-st.changed:
		}
		st = f.cur.Load()
	}
}

// noSpace is the error a full disk gives op on path, shaped as the os
// package shapes it.
func noSpace(op, path string) error {
	return &os.PathError{Op: op, Path: path, Err: syscall.ENOSPC}
}

// exists reports whether name exists on f's FS; an error other than "does
// not exist" counts as existing, so that the wrapped FS reports it.
func (f *Faulty) exists(name string) bool {
	_, err := f.fs.Stat(name)
	return !errors.Is(err, fs.ErrNotExist)
}

// Create implements FS. On a full disk it fails for a file that does not
// exist yet; truncating an existing one frees space, so it works.
func (f *Faulty) Create(name string) (File, error) {
	if f.Faults().NoSpace && !f.exists(name) {
		return nil, noSpace("open", name)
	}
	return f.wrap(name, f.fs.Create)
}

// Open implements FS.
func (f *Faulty) Open(name string) (File, error) { return f.wrap(name, f.fs.Open) }

// OpenReadWrite implements FS.
func (f *Faulty) OpenReadWrite(name string) (File, error) { return f.wrap(name, f.fs.OpenReadWrite) }

// OpenDir implements FS. The directory's Sync waits out SyncDelay.
func (f *Faulty) OpenDir(name string) (File, error) { return f.wrap(name, f.fs.OpenDir) }

func (f *Faulty) wrap(name string, open func(string) (File, error)) (File, error) {
	file, err := open(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, f: f, name: name}, nil
}

// Remove implements FS. It works on a full disk.
func (f *Faulty) Remove(name string) error { return f.fs.Remove(name) }

// Rename implements FS. It works on a full disk.
func (f *Faulty) Rename(oldname, newname string) error { return f.fs.Rename(oldname, newname) }

// MkdirAll implements FS. On a full disk it fails if dir does not exist
// (it would make a directory).
func (f *Faulty) MkdirAll(dir string, perm os.FileMode) error {
	if f.Faults().NoSpace && !f.exists(dir) {
		return noSpace("mkdir", dir)
	}
	return f.fs.MkdirAll(dir, perm)
}

// List implements FS.
func (f *Faulty) List(dir string) ([]string, error) { return f.fs.List(dir) }

// Stat implements FS.
func (f *Faulty) Stat(name string) (os.FileInfo, error) { return f.fs.Stat(name) }

// faultyFile is a file opened by a Faulty: reads, Stat and Close go
// straight to the wrapped file; writes, syncs and size changes first
// consult the faults in force.
type faultyFile struct {
	File
	f    *Faulty
	name string
}

func (w *faultyFile) Write(p []byte) (int, error) {
	if w.f.wait(delayWrite).NoSpace {
		return 0, noSpace("write", w.name)
	}
	return w.File.Write(p)
}

func (w *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if w.f.wait(delayWrite).NoSpace {
		return 0, noSpace("write", w.name)
	}
	return w.File.WriteAt(p, off)
}

func (w *faultyFile) Preallocate(off, n int64) error {
	if w.f.wait(delayWrite).NoSpace {
		return noSpace("fallocate", w.name)
	}
	return w.File.Preallocate(off, n)
}

// Sync waits out SyncDelay; it works on a full disk.
func (w *faultyFile) Sync() error {
	w.f.wait(delaySync)
	return w.File.Sync()
}

// Truncate fails on a full disk if it would grow the file.
func (w *faultyFile) Truncate(size int64) error {
	if w.f.Faults().NoSpace {
		st, err := w.File.Stat()
		if err != nil {
			return err
		}
		if size > st.Size() {
			return noSpace("truncate", w.name)
		}
	}
	return w.File.Truncate(size)
}

package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// File is an open file (or, from OpenDir, a directory that can only be
// synced and closed).
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's data and size durable (fdatasync on Linux).
	// On a directory from OpenDir it makes the directory's entries durable.
	Sync() error
	// Preallocate reserves disk space for [off, off+n), growing the file
	// to at least off+n bytes; the new bytes read as zeros. Once
	// preallocated, writes inside the range do not fail for lack of space
	// on a real filesystem (Faulty's NoSpace fails them anyway, so that a
	// test reaches the callers' handling of ENOSPC on every write).
	Preallocate(off, n int64) error
	// Truncate changes the file's size; new bytes read as zeros.
	Truncate(size int64) error
	// Stat describes the file.
	Stat() (os.FileInfo, error)
}

// FS is a filesystem. Names are slash-separated paths, as built by
// filepath.Join on Unix.
type FS interface {
	// Create creates the named file, or truncates it if it exists, and
	// opens it for reading and writing.
	Create(name string) (File, error)
	// Open opens the named file for reading.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing.
	OpenReadWrite(name string) (File, error)
	// OpenDir opens a directory so that it can be synced.
	OpenDir(name string) (File, error)
	// Remove removes the named file or empty directory.
	Remove(name string) error
	// Rename renames a file, replacing newname if it exists. Like rename(2)
	// it is atomic: a crash leaves either name, never neither.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and any missing parents.
	MkdirAll(dir string, perm os.FileMode) error
	// List returns the names of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat describes the named file.
	Stat(name string) (os.FileInfo, error)
}

// Errors returned by this package's filesystems. Operating-system errors
// are returned as the os package returns them (*os.PathError wrapping a
// syscall.Errno); MemFS returns the same shapes, so callers test both with
// errors.Is(err, syscall.ENOSPC), errors.Is(err, fs.ErrNotExist) and so on.
var (
	// ErrCrashed is returned by every operation on a MemFS after its Crash
	// method was called: the machine it stood for has lost power.
	ErrCrashed = errors.New("vfs: filesystem crashed")
	// ErrClosed is returned by MemFS for an operation on a closed file.
	ErrClosed = errors.New("vfs: file already closed")
	// ErrIsDir is returned by MemFS for a file operation on a directory.
	ErrIsDir = errors.New("vfs: is a directory")
	// ErrNotDir is returned by MemFS when a path component is not a
	// directory.
	ErrNotDir = errors.New("vfs: not a directory")
)

// IsNoSpace reports whether err says the device is full.
func IsNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

// SyncDir makes the entries of dir durable.
func SyncDir(fs FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// MkdirAllSync creates dir and any missing parents like MkdirAll, and makes
// every directory it created durable by syncing its parent.
func MkdirAllSync(fs FS, dir string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fs.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if p := filepath.Dir(d); p == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Sync from the outermost new directory's parent inward.
	for i := len(missing) - 1; i >= 0; i-- {
		if err := SyncDir(fs, filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// ReadFile reads a whole file.
func ReadFile(fs FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(buf)) {
		return nil, err
	}
	return buf, nil
}

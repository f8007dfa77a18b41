package wal

import (
	"errors"
	"fmt"
)

// Errors returned by a WAL. Callers branch on them with errors.Is; the
// returned errors wrap them with detail (and the underlying OS error).
var (
	// ErrCorrupt is wrapped by every *CorruptError: Open found data it
	// cannot trust. Open refuses to open rather than drop entries the node
	// may have acknowledged. The repair path is to wipe the replica's data
	// and let it catch up from its peers by snapshot (docs/storage.md).
	ErrCorrupt = errors.New("wal: corrupt log")

	// ErrIO is wrapped by the error a write or sync failure returns, and by
	// every later call's error: after a failed write or fsync the WAL
	// refuses all further writes (the kernel may already have dropped the
	// data the failed sync covered, so a retry could report success for
	// data that is gone). Reads of the in-memory log still work. Reopen to
	// recover what the disk really holds.
	ErrIO = errors.New("wal: I/O error; the log accepts no more writes")

	// ErrNoSpace is returned by Save and Compact when the disk is full.
	// Nothing was written (or what was partly written was erased), the
	// in-memory log is unchanged, and a later call may succeed once space
	// is freed. It also wraps the OS error (syscall.ENOSPC).
	ErrNoSpace = errors.New("wal: no space left on device")

	// ErrClosed is returned by Save, Compact and Close after Close.
	ErrClosed = errors.New("wal: closed")

	// ErrInvalidArgument is returned by Save and Compact for input that
	// breaks their contract (entries out of order, a gap after the last
	// index, a compaction beyond the snapshot). Nothing was written.
	ErrInvalidArgument = errors.New("wal: invalid argument")

	// ErrInvalidOptions is wrapped by every error Options.Validate returns.
	ErrInvalidOptions = errors.New("wal: invalid options")
)

// CorruptError says where a log is corrupt. It wraps ErrCorrupt.
type CorruptError struct {
	// File is the segment's path.
	File string
	// Offset is the byte offset of the bad record (0 for a bad header or a
	// missing segment).
	Offset int64
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corrupt(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

package snap

import (
	"errors"
	"fmt"
)

// Errors returned by a Store. Callers branch on them with errors.Is.
var (
	// ErrCorrupt is wrapped by every *CorruptError: a snapshot file is
	// damaged. The repair path is to wipe the replica and let it catch up
	// from its peers.
	ErrCorrupt = errors.New("snap: corrupt snapshot")
	// ErrNotFound is returned by Open for a snapshot the store does not
	// hold, and by Latest when it holds none.
	ErrNotFound = errors.New("snap: snapshot not found")
	// ErrClosed is returned by a Writer or Reader used after Close (or a
	// Writer after Cancel).
	ErrClosed = errors.New("snap: already closed")
)

// CorruptError says which snapshot file is damaged, where, and how. It
// wraps ErrCorrupt.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("snap: corrupt snapshot: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corrupt(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

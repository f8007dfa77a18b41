package wal

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cairnkv/cairn/storage/vfs"
)

// Options configures a WAL. The zero value is usable: Open fills in the
// defaults.
type Options struct {
	// FS is the filesystem. Default: vfs.Default.
	FS vfs.FS
	// SegmentSize is the size each segment is preallocated to. A batch
	// bigger than a whole segment gets a segment of its own that grows past
	// it. Default: 64 MiB. Minimum: 4 KiB.
	SegmentSize int64
	// Logger receives recovery notices (a torn tail cut off, leftover
	// files removed). Default: slog.Default().
	Logger *slog.Logger
}

const (
	// DefaultSegmentSize is Options.SegmentSize's default.
	DefaultSegmentSize = 64 << 20
	// MinSegmentSize is the smallest SegmentSize Validate accepts.
	MinSegmentSize = 4 << 10
)

// withDefaults returns o with every unset field given its default.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every problem with o (after defaults are applied), each
// wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.SegmentSize < MinSegmentSize {
		errs = append(errs, fmt.Errorf("%w: SegmentSize %d is below the minimum %d", ErrInvalidOptions, o.SegmentSize, MinSegmentSize))
	}
	if o.SegmentSize > maxPayload {
		errs = append(errs, fmt.Errorf("%w: SegmentSize %d is above the maximum %d", ErrInvalidOptions, o.SegmentSize, maxPayload))
	}
	return errors.Join(errs...)
}

package kv

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures a StateMachine. Nothing in it affects what Apply
// computes (that is all in the log, including the Limits), so replicas of
// one group may be configured differently.
type Config struct {
	// Dir is the engine's directory. Required.
	Dir string
	// FS is the filesystem the engine lives on. Default: the real one
	// (vfs.Default). Tests use vfs.NewCrashableMem.
	FS vfs.FS
	// CacheSize is the engine's block cache, in bytes. Default 64 MiB.
	CacheSize int64
	// SnapshotChunkSize is the payload size at which Snapshot closes a
	// frame of its stream. Default 1 MiB.
	SnapshotChunkSize int
	// MaxScanLimit caps a Scan's pair count (and is the count a Scan with
	// limit 0 gets). Default 10000.
	MaxScanLimit uint32
	// Logger receives the engine's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultCacheSize         = 64 << 20
	DefaultSnapshotChunkSize = 1 << 20
	DefaultMaxScanLimit      = 10000
)

// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
var ErrInvalidConfig = errors.New("kv: invalid config")

// Validate fills in defaults and reports every problem it finds.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Dir == "" {
		bad("Dir is required")
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheSize < 0 {
		bad("CacheSize %d is negative", c.CacheSize)
	}
	if c.SnapshotChunkSize == 0 {
		c.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	if c.SnapshotChunkSize < 0 || c.SnapshotChunkSize > maxFramePayload/2 {
		bad("SnapshotChunkSize %d not in [1, %d]", c.SnapshotChunkSize, maxFramePayload/2)
	}
	if c.MaxScanLimit == 0 {
		c.MaxScanLimit = DefaultMaxScanLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

package snapxfer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options tunes an Endpoint. Zero values take the defaults documented on
// each field (filled in by Validate).
type Options struct {
	// ChunkSize is how many bytes of the stream the sender puts in one
	// chunk. Default 1 MiB.
	ChunkSize int
	// Window is how many chunks a sender keeps in flight without an
	// acknowledgement. The sender holds exactly these in memory (to resend
	// them), so it uses at most Window*ChunkSize bytes per transfer.
	// Default 4.
	Window int

	// MaxChunkSize is the largest chunk the receiver accepts; bigger ones
	// are dropped as corrupt. Default 4 MiB, and at least ChunkSize.
	MaxChunkSize int
	// MaxInbound is how many transfers the receiver runs at once; a
	// transfer beyond it is rejected with ReasonBusy and the leader
	// retries later. Default 2.
	MaxInbound int
	// InboundQueue is how many chunks the receiver queues per transfer
	// ahead of the one being written; more are dropped (and resent). A
	// receiver thus holds at most MaxInbound*(InboundQueue+1)*MaxChunkSize
	// bytes of chunks. Default 2*Window.
	InboundQueue int

	// RetransmitTimeout is how long a sender waits for an acknowledgement
	// that moves the transfer forward before it resends every unacked
	// chunk (a lost tail, lost acks). Default 2s.
	RetransmitTimeout time.Duration
	// StallTimeout bounds a transfer without progress: a sender whose
	// acknowledged offset has not moved, or a receiver that has been
	// waiting for the next chunk, for this long abandons the transfer, so
	// a dead peer never pins a snapshot (and the leader's log) forever.
	// It must exceed the time a receiver needs to sync a whole snapshot
	// after its last chunk. Default 30s, and at least RetransmitTimeout.
	StallTimeout time.Duration

	// Logger receives the endpoint's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultChunkSize         = 1 << 20
	DefaultWindow            = 4
	DefaultMaxChunkSize      = 4 << 20
	DefaultMaxInbound        = 2
	DefaultRetransmitTimeout = 2 * time.Second
	DefaultStallTimeout      = 30 * time.Second
)

// Validate fills in defaults and reports every problem it finds, each
// wrapping ErrInvalidOptions.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.MaxChunkSize == 0 {
		o.MaxChunkSize = max(DefaultMaxChunkSize, o.ChunkSize)
	}
	if o.MaxInbound == 0 {
		o.MaxInbound = DefaultMaxInbound
	}
	if o.InboundQueue == 0 {
		o.InboundQueue = 2 * o.Window
	}
	if o.RetransmitTimeout == 0 {
		o.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = max(DefaultStallTimeout, o.RetransmitTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ChunkSize < 0 {
		bad("ChunkSize %d is negative", o.ChunkSize)
	}
	if o.Window < 0 {
		bad("Window %d is negative", o.Window)
	}
	if o.MaxChunkSize < o.ChunkSize {
		bad("MaxChunkSize %d is below ChunkSize %d", o.MaxChunkSize, o.ChunkSize)
	}
	if o.MaxInbound < 0 {
		bad("MaxInbound %d is negative", o.MaxInbound)
	}
	if o.InboundQueue < 0 {
		bad("InboundQueue %d is negative", o.InboundQueue)
	}
	if o.RetransmitTimeout < 0 {
		bad("RetransmitTimeout %v is negative", o.RetransmitTimeout)
	}
	if o.StallTimeout < o.RetransmitTimeout {
		bad("StallTimeout %v is below RetransmitTimeout %v", o.StallTimeout, o.RetransmitTimeout)
	}
	return errors.Join(errs...)
}

package snapxfer

import (
	"errors"
	"fmt"
)

// Errors of a transfer. The sender's done callback and the reader a
// Handler is given return them, usually wrapped with detail; callers branch
// with errors.Is and errors.As.
var (
	// ErrStalled: the transfer made no progress within the stall timeout
	// and was abandoned. On the sender it means "we never heard back"; the
	// leader retries with a new transfer later.
	ErrStalled = errors.New("snapxfer: transfer stalled")

	// ErrRejected is wrapped by every *RejectedError: the receiver said no.
	ErrRejected = errors.New("snapxfer: transfer rejected by the receiver")

	// ErrAborted is returned by a receiving reader when the sender aborted
	// the transfer.
	ErrAborted = errors.New("snapxfer: transfer aborted by the sender")

	// ErrSuperseded is returned by a receiving reader when a newer
	// transfer from the same sender replaced it.
	ErrSuperseded = errors.New("snapxfer: transfer superseded by a newer one")

	// ErrChecksum is returned by a receiving reader when the whole
	// stream's checksum does not match what the sender computed.
	ErrChecksum = errors.New("snapxfer: snapshot stream checksum mismatch")

	// ErrNotConsumed is reported when a Handler returned success without
	// reading the stream to its end: the snapshot cannot have been staged.
	ErrNotConsumed = errors.New("snapxfer: handler did not read the snapshot to its end")

	// ErrProtocol: a peer sent an acknowledgement that contradicts what was
	// sent (an offset that is no chunk boundary, say): a bug or a liar.
	ErrProtocol = errors.New("snapxfer: protocol violation")

	// ErrClosed: the endpoint is closed.
	ErrClosed = errors.New("snapxfer: endpoint closed")

	// ErrInvalidMessage is returned (through done) by Send for a message
	// that is not a MsgSnap with snapshot metadata.
	ErrInvalidMessage = errors.New("snapxfer: not a MsgSnap with a snapshot")

	// ErrInvalidOptions is wrapped by every error Options.Validate returns.
	ErrInvalidOptions = errors.New("snapxfer: invalid options")
)

// RejectedError is how a sender reports a transfer the receiver failed:
// it carries the receiver's reason and wraps ErrRejected.
type RejectedError struct {
	Reason Reason
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("snapxfer: transfer rejected by the receiver: %s", e.Reason)
}

// Unwrap makes errors.Is(err, ErrRejected) hold.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// reasonOf is the Reason a receiver reports for a failed transfer.
func reasonOf(err error) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrStalled):
		return ReasonStalled
	case errors.Is(err, ErrChecksum):
		return ReasonChecksum
	case errors.Is(err, ErrSuperseded):
		return ReasonSuperseded
	case errors.Is(err, ErrAborted):
		return ReasonAborted
	case errors.Is(err, ErrClosed):
		return ReasonClosed
	}
	return ReasonRefused
}

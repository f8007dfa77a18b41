package kv

import (
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/api/kvpb"
)

// Error is a command's or a read's own failure, as the client sees it: a
// wire code (which the server maps to a gRPC status, see
// kvpb.ErrorCode.GRPCCode) with a message and, for a limit, its name and
// numbers. It is never a broken engine: those are plain errors.
//
// errors.Is(err, ErrKeyTooLarge) and the like match any *Error with the
// sentinel's code.
type Error struct {
	Code    kvpb.ErrorCode
	Message string
	// Limit names the limit exceeded (a Limits field's wire name, e.g.
	// "max_key_size"), with its value and the size found.
	Limit      string
	LimitValue uint64
	Actual     uint64
}

func (e *Error) Error() string { return "kv: " + e.Message }

// Is matches any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Detail is e on the wire.
func (e *Error) Detail() *kvpb.ErrorDetail {
	return &kvpb.ErrorDetail{
		Code:       e.Code,
		Message:    e.Message,
		Limit:      e.Limit,
		LimitValue: e.LimitValue,
		Actual:     e.Actual,
	}
}

// ErrorFromDetail is the inverse of Error.Detail.
func ErrorFromDetail(d *kvpb.ErrorDetail) *Error {
	return &Error{
		Code:       d.GetCode(),
		Message:    d.GetMessage(),
		Limit:      d.GetLimit(),
		LimitValue: d.GetLimitValue(),
		Actual:     d.GetActual(),
	}
}

// Sentinels for errors.Is. Apply returns them (as *Error values with
// specific messages) in a command's Result; Get, Scan and the Check
// functions return the validation ones directly.
var (
	// ErrEmptyKey: a key was empty. Nothing was applied.
	ErrEmptyKey = &Error{Code: kvpb.ErrorCode_EMPTY_KEY, Message: "empty key"}
	// ErrKeyTooLarge: a key exceeded Limits.MaxKeySize. Nothing was applied.
	ErrKeyTooLarge = &Error{Code: kvpb.ErrorCode_KEY_TOO_LARGE, Message: "key too large"}
	// ErrValueTooLarge: a value, or a value after an Append, would exceed
	// Limits.MaxValueSize. Nothing was applied.
	ErrValueTooLarge = &Error{Code: kvpb.ErrorCode_VALUE_TOO_LARGE, Message: "value too large"}
	// ErrRequestTooLarge: an encoded command exceeded Limits.MaxRequestSize.
	// Nothing was applied.
	ErrRequestTooLarge = &Error{Code: kvpb.ErrorCode_REQUEST_TOO_LARGE, Message: "request too large"}
	// ErrMalformed: a command or request was not well formed (undecodable
	// bytes, no operation, contradictory fields). Nothing was applied.
	ErrMalformed = &Error{Code: kvpb.ErrorCode_MALFORMED, Message: "malformed request"}
	// ErrStaleSequence: a session request's seq was below the session's
	// lowest unacknowledged seq: its client had already acknowledged its
	// result, which is forgotten. Not executed.
	ErrStaleSequence = &Error{Code: kvpb.ErrorCode_STALE_SEQUENCE, Message: "sequence number already acknowledged"}
	// ErrSessionExpired: the session is unknown, expired or closed. Not
	// executed.
	ErrSessionExpired = &Error{Code: kvpb.ErrorCode_SESSION_EXPIRED, Message: "session unknown, expired or closed"}
	// ErrTooManySessions: OpenSession found Limits.MaxSessions live sessions.
	ErrTooManySessions = &Error{Code: kvpb.ErrorCode_TOO_MANY_SESSIONS, Message: "too many sessions"}
	// ErrTooManyPending: the session already keeps
	// Limits.MaxPendingPerSession unacknowledged results. Not executed (and
	// not cached): retry with the same seq after acknowledging results.
	ErrTooManyPending = &Error{Code: kvpb.ErrorCode_TOO_MANY_PENDING, Message: "too many unacknowledged requests in session"}
	// ErrUnavailable: the state machine cannot serve a read now (it is
	// being restored from a snapshot, or is closed). Retry.
	ErrUnavailable = &Error{Code: kvpb.ErrorCode_UNAVAILABLE, Message: "state machine unavailable"}
)

// errf returns a copy of sentinel with a specific message.
func errf(sentinel *Error, format string, args ...any) *Error {
	e := *sentinel
	e.Message = fmt.Sprintf(format, args...)
	return &e
}

// limitErr is sentinel for a limit exceeded: "what: size > limit (name)".
func limitErr(sentinel *Error, what, limit string, limitValue, actual uint64) *Error {
	return &Error{
		Code:       sentinel.Code,
		Message:    fmt.Sprintf("%s is %d bytes, over the limit %s = %d", what, actual, limit, limitValue),
		Limit:      limit,
		LimitValue: limitValue,
		Actual:     actual,
	}
}

// Errors about the engine itself, not a command.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("kv: state machine closed")
	// ErrCorruptSnapshot is returned (wrapped) by Restore for a stream that
	// is not one Snapshot wrote: bad magic, bad checksum, truncated, bad
	// keys. The engine is left empty.
	ErrCorruptSnapshot = errors.New("kv: corrupt snapshot stream")
	// ErrCorruptEngine is returned (wrapped) for engine contents the state
	// machine did not write; it is a bug or a disk fault.
	ErrCorruptEngine = errors.New("kv: corrupt engine state")
)

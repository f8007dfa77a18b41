package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
)

// Sentinels for errors.Is. Every error a Client returns wraps one of
// these, or a context error, or a *InvalidArgumentError, *CASFailedError
// or *OutcomeUnknownError (which themselves match sentinels here).
var (
	// ErrClosed: the Client was closed (before or during the call). Calls
	// in flight at Close fail with an error matching both ErrClosed and
	// ErrUnavailable (and, for a write that may have executed,
	// ErrOutcomeUnknown).
	ErrClosed = errors.New("client: closed")

	// ErrKeyNotFound: Get found no such key.
	ErrKeyNotFound = errors.New("client: key not found")

	// ErrCASFailed: a CompareAndSwap's (or CompareAndDelete's, or a
	// Batch's) condition did not hold; nothing was written. The error is a
	// *CASFailedError holding the key's current state.
	ErrCASFailed = errors.New("client: compare-and-swap condition failed")

	// ErrSessionExpired: the server no longer knows the client's session
	// (it expired, or was closed), and the request was not executed. The
	// client opens a new session by itself and normally retries there; a
	// caller sees this only inside an *OutcomeUnknownError (when an
	// earlier attempt of the same request may have executed), or when the
	// request met expired sessions several times in a row.
	ErrSessionExpired = errors.New("client: session expired")

	// ErrOutcomeUnknown: a write may or may not have been applied, and
	// the client cannot find out. It is always a *OutcomeUnknownError.
	// See the package documentation for when this happens.
	ErrOutcomeUnknown = errors.New("client: write outcome unknown")

	// ErrUnavailable: the call gave up before the cluster answered it:
	// its context ended (the chain then also holds context.DeadlineExceeded
	// or context.Canceled), the Client was closed (ErrClosed), or
	// RetryPolicy.MaxAttempts attempts failed (the chain holds the last
	// attempt's error). A write that gave up after an attempt that may
	// have executed fails with a *OutcomeUnknownError wrapping this.
	ErrUnavailable = errors.New("client: cluster unavailable")
)

// Sentinels matching *InvalidArgumentError by its Code. The server applied
// nothing.
var (
	// ErrInvalidArgument matches every *InvalidArgumentError.
	ErrInvalidArgument = &InvalidArgumentError{Code: kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED, Message: "invalid argument"}
	// ErrEmptyKey: a key was empty.
	ErrEmptyKey = &InvalidArgumentError{Code: kvpb.ErrorCode_EMPTY_KEY, Message: "empty key"}
	// ErrKeyTooLarge: a key exceeded the group's max_key_size.
	ErrKeyTooLarge = &InvalidArgumentError{Code: kvpb.ErrorCode_KEY_TOO_LARGE, Message: "key too large"}
	// ErrValueTooLarge: a value, or a value after an Append, would exceed
	// the group's max_value_size.
	ErrValueTooLarge = &InvalidArgumentError{Code: kvpb.ErrorCode_VALUE_TOO_LARGE, Message: "value too large"}
	// ErrRequestTooLarge: a request exceeded the group's max_request_size.
	ErrRequestTooLarge = &InvalidArgumentError{Code: kvpb.ErrorCode_REQUEST_TOO_LARGE, Message: "request too large"}
	// ErrMalformed: the server found the request malformed.
	ErrMalformed = &InvalidArgumentError{Code: kvpb.ErrorCode_MALFORMED, Message: "malformed request"}
)

// InvalidArgumentError is the server's INVALID_ARGUMENT answer: an empty
// key, a limit exceeded, a malformed request. Nothing was applied, and
// retrying cannot help.
//
// errors.Is(err, ErrKeyTooLarge) and the like match by Code;
// errors.Is(err, ErrInvalidArgument) matches any.
type InvalidArgumentError struct {
	Code    kvpb.ErrorCode
	Message string
	// Limit names the limit exceeded, as in the server's Limits (for
	// example "max_key_size"), with its value and the size found. Empty
	// when no limit is involved.
	Limit      string
	LimitValue uint64
	Actual     uint64
}

func (e *InvalidArgumentError) Error() string {
	return "invalid argument: " + e.Message
}

// Is matches ErrInvalidArgument, and the sentinel with e's Code.
func (e *InvalidArgumentError) Is(target error) bool {
	t, ok := target.(*InvalidArgumentError)
	if !ok {
		return false
	}
	return t == ErrInvalidArgument || t.Code == e.Code
}

// CASFailedError is a compare-and-swap whose condition did not hold, alone
// or in a Batch (then the whole batch applied nothing). It matches
// ErrCASFailed.
type CASFailedError struct {
	// Key is the key whose condition failed.
	Key []byte
	// Current is the key's state when the condition was checked (within a
	// batch: as the batch's earlier ops left it); nil if it was absent.
	Current *KeyValue
	// Op is the failed op's index in a Batch; 0 for a CompareAndSwap.
	Op     int
	Header Header
}

func (e *CASFailedError) Error() string {
	state := "absent"
	if e.Current != nil {
		state = fmt.Sprintf("at version %d", e.Current.Version)
	}
	if e.Op > 0 {
		return fmt.Sprintf("client: batch op %d: compare-and-swap on %q failed: key is %s", e.Op, e.Key, state)
	}
	return fmt.Sprintf("client: compare-and-swap on %q failed: key is %s", e.Key, state)
}

// Is matches ErrCASFailed.
func (e *CASFailedError) Is(target error) bool { return target == ErrCASFailed }

// OutcomeUnknownError is a write that may or may not have been applied.
// The client gave up on it (Err says why: a context ended, the client
// closed, retries ran out, or the session expired) after an attempt whose
// fate it never learned, and the server can no longer tell. It matches
// ErrOutcomeUnknown and, through Err, the cause (ErrUnavailable,
// ErrSessionExpired, context.DeadlineExceeded, ...).
//
// The client will not send the write's seq again. A copy already on its
// way may still apply until the server learns that the seq is finished
// (from the session's next request; at once if the session expired): see
// the package documentation, "When a write's outcome is unknown". To find
// out what happened, read the key; to make the write happen, issue it
// again (a new write, with a new seq), ideally as a CompareAndSwap that
// checks what you read.
type OutcomeUnknownError struct {
	// Op names the call ("put", "append", ...).
	Op      string
	Session SessionID
	Seq     Seq
	Err     error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("client: %s: outcome unknown (session %d seq %d): %v", e.Op, e.Session, e.Seq, e.Err)
}

// Is matches ErrOutcomeUnknown.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// taggedError reads "what: err (note)" and matches tag and err: a
// sentinel attached to a cause without repeating the sentinel's text.
type taggedError struct {
	what string
	tag  error
	err  error
	note string
}

func (e *taggedError) Error() string {
	msg := e.what
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	if e.note != "" {
		msg += " (" + e.note + ")"
	}
	return msg
}

func (e *taggedError) Unwrap() []error {
	if e.err == nil {
		return []error{e.tag}
	}
	return []error{e.tag, e.err}
}

// unavailable is a gave-up error: ErrUnavailable, with cause, and the
// last attempt's error (if other than cause) for the message.
func unavailable(cause, last error) error {
	e := &taggedError{what: "cluster unavailable", tag: ErrUnavailable, err: cause}
	if last != nil && last != cause {
		e.note = "last attempt: " + last.Error()
	}
	return e
}

// answerError maps a definitive server answer (a gRPC status error, as
// received) to the client's typed errors, keeping the status in the
// chain. The result is to be wrapped with the call's name.
func answerError(err error) error {
	d := kvpb.DetailOf(err)
	switch {
	case status.Code(err) == codes.InvalidArgument:
		ia := &InvalidArgumentError{Code: d.GetCode(), Message: d.GetMessage()}
		if d != nil {
			ia.Limit, ia.LimitValue, ia.Actual = d.GetLimit(), d.GetLimitValue(), d.GetActual()
		}
		if ia.Message == "" {
			ia.Message = status.Convert(err).Message()
		}
		return ia
	case d.GetCode() == kvpb.ErrorCode_SESSION_EXPIRED:
		return &taggedError{what: "session expired", tag: ErrSessionExpired, err: err}
	}
	return err
}

// callError is err as a call named op returns it.
func callError(op string, err error) error {
	return fmt.Errorf("client: %s: %w", op, err)
}

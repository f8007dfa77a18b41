package kv

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairnkv/cairn/api/kvpb"
)

// Limits are a group's replicated limits. They are state machine state:
// they change only through the log (a SetLimits command), are saved with
// the data and travel in snapshots, so that every replica judges every
// command by the same limits. A server checks requests against its
// replica's current Limits before proposing them (so that an oversized
// request never reaches the log), and Apply checks again: whatever the
// proposer did, every replica accepts or refuses a command alike.
type Limits struct {
	// MaxKeySize bounds a key, in bytes.
	MaxKeySize uint64
	// MaxValueSize bounds a value, in bytes, including one that an Append
	// would grow.
	MaxValueSize uint64
	// MaxRequestSize bounds an encoded command (a log entry's data), and
	// the encoded size of a read's response.
	MaxRequestSize uint64
	// SessionTTL is how long a session lives without a request, in log
	// time (see the package doc).
	SessionTTL time.Duration
	// MaxSessions bounds the live sessions: OpenSession beyond it fails
	// with ErrTooManySessions.
	MaxSessions uint64
	// MaxPendingPerSession bounds the results one session keeps for its
	// client until acknowledged: a new request beyond it fails with
	// ErrTooManyPending, unexecuted and uncached.
	MaxPendingPerSession uint64
}

// DefaultLimits are a new group's limits.
var DefaultLimits = Limits{
	MaxKeySize:           4 << 10,
	MaxValueSize:         1 << 20,
	MaxRequestSize:       4 << 20,
	SessionTTL:           60 * time.Second,
	MaxSessions:          10000,
	MaxPendingPerSession: 1024,
}

// Hard ceilings, so that no setting can make a log entry, a snapshot frame
// or the session table unreasonable.
const (
	maxMaxKeySize     = 64 << 10
	maxMaxRequestSize = 64 << 20
	maxMaxSessions    = 1 << 20
	maxMaxPending     = 1 << 16
)

// Validate reports every problem with l in one error matching
// ErrMalformed.
func (l Limits) Validate() error {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if l.MaxKeySize == 0 || l.MaxKeySize > maxMaxKeySize {
		bad("max_key_size %d not in [1, %d]", l.MaxKeySize, maxMaxKeySize)
	}
	if l.MaxRequestSize == 0 || l.MaxRequestSize > maxMaxRequestSize {
		bad("max_request_size %d not in [1, %d]", l.MaxRequestSize, maxMaxRequestSize)
	}
	if l.MaxValueSize == 0 || l.MaxValueSize > l.MaxRequestSize {
		bad("max_value_size %d not in [1, max_request_size %d]", l.MaxValueSize, l.MaxRequestSize)
	}
	if l.MaxKeySize > l.MaxRequestSize {
		bad("max_key_size %d over max_request_size %d", l.MaxKeySize, l.MaxRequestSize)
	}
	if l.SessionTTL < time.Millisecond {
		bad("session_ttl %v under 1ms", l.SessionTTL)
	}
	if l.MaxSessions == 0 || l.MaxSessions > maxMaxSessions {
		bad("max_sessions %d not in [1, %d]", l.MaxSessions, maxMaxSessions)
	}
	if l.MaxPendingPerSession == 0 || l.MaxPendingPerSession > maxMaxPending {
		bad("max_pending_per_session %d not in [1, %d]", l.MaxPendingPerSession, maxMaxPending)
	}
	if len(problems) == 0 {
		return nil
	}
	return errf(ErrMalformed, "invalid limits: %s", strings.Join(problems, "; "))
}

// Proto is l on the wire.
func (l Limits) Proto() *kvpb.Limits {
	return &kvpb.Limits{
		MaxKeySize:           l.MaxKeySize,
		MaxValueSize:         l.MaxValueSize,
		MaxRequestSize:       l.MaxRequestSize,
		SessionTtlMs:         l.SessionTTL.Milliseconds(),
		MaxSessions:          l.MaxSessions,
		MaxPendingPerSession: l.MaxPendingPerSession,
	}
}

// LimitsFromProto is the inverse of Limits.Proto, with every zero field
// taking its value from DefaultLimits (constants, so every replica fills in
// the same).
func LimitsFromProto(p *kvpb.Limits) Limits {
	l := Limits{
		MaxKeySize:           p.GetMaxKeySize(),
		MaxValueSize:         p.GetMaxValueSize(),
		MaxRequestSize:       p.GetMaxRequestSize(),
		SessionTTL:           time.Duration(p.GetSessionTtlMs()) * time.Millisecond,
		MaxSessions:          p.GetMaxSessions(),
		MaxPendingPerSession: p.GetMaxPendingPerSession(),
	}
	d := DefaultLimits
	if l.MaxKeySize == 0 {
		l.MaxKeySize = d.MaxKeySize
	}
	if l.MaxValueSize == 0 {
		l.MaxValueSize = d.MaxValueSize
	}
	if l.MaxRequestSize == 0 {
		l.MaxRequestSize = d.MaxRequestSize
	}
	if p.GetSessionTtlMs() == 0 {
		l.SessionTTL = d.SessionTTL
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = d.MaxSessions
	}
	if l.MaxPendingPerSession == 0 {
		l.MaxPendingPerSession = d.MaxPendingPerSession
	}
	return l
}

// CheckKey checks a key that a request reads or writes.
func (l Limits) CheckKey(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if uint64(len(key)) > l.MaxKeySize {
		return limitErr(ErrKeyTooLarge, "key", "max_key_size", l.MaxKeySize, uint64(len(key)))
	}
	return nil
}

// checkBound checks a scan bound (which may be empty).
func (l Limits) checkBound(what string, key []byte) error {
	if uint64(len(key)) > l.MaxKeySize {
		return limitErr(ErrKeyTooLarge, what, "max_key_size", l.MaxKeySize, uint64(len(key)))
	}
	return nil
}

func (l Limits) checkValue(what string, v []byte) error {
	if uint64(len(v)) > l.MaxValueSize {
		return limitErr(ErrValueTooLarge, what, "max_value_size", l.MaxValueSize, uint64(len(v)))
	}
	return nil
}

// CheckSize checks an encoded request's (or command's) size.
func (l Limits) CheckSize(n int) error {
	if uint64(n) > l.MaxRequestSize {
		return limitErr(ErrRequestTooLarge, "request", "max_request_size", l.MaxRequestSize, uint64(n))
	}
	return nil
}

// CheckGet checks a Get request.
func (l Limits) CheckGet(req *kvpb.GetRequest) error { return l.CheckKey(req.GetKey()) }

// CheckScan checks a Scan request.
func (l Limits) CheckScan(req *kvpb.ScanRequest) error {
	if err := l.checkBound("scan start", req.GetStart()); err != nil {
		return err
	}
	if err := l.checkBound("scan end", req.GetEnd()); err != nil {
		return err
	}
	if c := req.GetContinuation(); len(c) > 0 {
		if _, err := decodeContinuation(c, req.GetStart(), req.GetEnd()); err != nil {
			return err
		}
	}
	return nil
}

// CheckCommand checks a command's shape and sizes against l, as Apply
// does before executing it; a server calls it (with the command's encoded
// size) before proposing. It does not check the session, which only the
// state machine knows.
func (l Limits) CheckCommand(cmd *kvpb.Command, encodedSize int) error {
	if err := l.CheckSize(encodedSize); err != nil {
		return err
	}
	return l.checkCommand(cmd)
}

func (l Limits) checkCommand(cmd *kvpb.Command) error {
	switch op := cmd.GetOp().(type) {
	case *kvpb.Command_OpenSession, *kvpb.Command_KeepAlive, *kvpb.Command_CloseSession:
		if cmd.GetSessionId() != 0 || cmd.GetSeq() != 0 || cmd.GetLowestUnackedSeq() != 0 {
			return errf(ErrMalformed, "session operation with a command session header")
		}
		switch op := op.(type) {
		case *kvpb.Command_KeepAlive:
			if op.KeepAlive.GetSessionId() == 0 {
				return errf(ErrMalformed, "keep-alive without a session id")
			}
		case *kvpb.Command_CloseSession:
			if op.CloseSession.GetSessionId() == 0 {
				return errf(ErrMalformed, "close without a session id")
			}
		}
		return nil
	case *kvpb.Command_SetLimits:
		if cmd.GetSessionId() != 0 || cmd.GetSeq() != 0 || cmd.GetLowestUnackedSeq() != 0 {
			return errf(ErrMalformed, "set-limits with a command session header")
		}
		return LimitsFromProto(op.SetLimits).Validate()
	case nil:
		return errf(ErrMalformed, "command has no operation (or one this replica does not know)")
	}
	if err := checkWriteHeader(cmd); err != nil {
		return err
	}
	switch op := cmd.GetOp().(type) {
	case *kvpb.Command_Put:
		return l.checkPut(op.Put)
	case *kvpb.Command_Delete:
		return l.checkDelete(op.Delete)
	case *kvpb.Command_CompareAndSwap:
		return l.checkCAS(op.CompareAndSwap)
	case *kvpb.Command_Append:
		return l.checkAppend(op.Append)
	case *kvpb.Command_Batch:
		return l.checkBatch(op.Batch)
	}
	return errf(ErrMalformed, "unknown operation %T", cmd.GetOp())
}

// checkWriteHeader checks a write command's session fields: no session
// and no numbers, or a session with seq >= 1.
func checkWriteHeader(cmd *kvpb.Command) error {
	if cmd.GetSessionId() == 0 {
		if cmd.GetSeq() != 0 || cmd.GetLowestUnackedSeq() != 0 {
			return errf(ErrMalformed, "seq %d and lowest_unacked_seq %d without a session", cmd.GetSeq(), cmd.GetLowestUnackedSeq())
		}
		return nil
	}
	if cmd.GetSeq() == 0 {
		return errf(ErrMalformed, "session %d request without a seq (seqs start at 1)", cmd.GetSessionId())
	}
	return nil
}

func (l Limits) checkPut(r *kvpb.PutRequest) error {
	if r.GetHeader() != nil {
		return errf(ErrMalformed, "put: header inside a command")
	}
	if err := l.CheckKey(r.GetKey()); err != nil {
		return err
	}
	return l.checkValue("value", r.GetValue())
}

func (l Limits) checkDelete(r *kvpb.DeleteRequest) error {
	if r.GetHeader() != nil {
		return errf(ErrMalformed, "delete: header inside a command")
	}
	return l.CheckKey(r.GetKey())
}

func (l Limits) checkCAS(r *kvpb.CompareAndSwapRequest) error {
	if r.GetHeader() != nil {
		return errf(ErrMalformed, "compare-and-swap: header inside a command")
	}
	if err := l.CheckKey(r.GetKey()); err != nil {
		return err
	}
	switch e := r.GetExpected().(type) {
	case nil:
		return errf(ErrMalformed, "compare-and-swap without an expected value or version")
	case *kvpb.CompareAndSwapRequest_ExpectedValue:
		if err := l.checkValue("expected value", e.ExpectedValue); err != nil {
			return err
		}
	}
	if r.GetDelete() && len(r.GetNewValue()) > 0 {
		return errf(ErrMalformed, "compare-and-swap with both delete and a new value")
	}
	return l.checkValue("new value", r.GetNewValue())
}

func (l Limits) checkAppend(r *kvpb.AppendRequest) error {
	if r.GetHeader() != nil {
		return errf(ErrMalformed, "append: header inside a command")
	}
	if err := l.CheckKey(r.GetKey()); err != nil {
		return err
	}
	return l.checkValue("suffix", r.GetSuffix())
}

func (l Limits) checkBatch(r *kvpb.BatchRequest) error {
	if r.GetHeader() != nil {
		return errf(ErrMalformed, "batch: header inside a command")
	}
	if len(r.GetOps()) == 0 {
		return errf(ErrMalformed, "empty batch")
	}
	for i, op := range r.GetOps() {
		var err error
		switch o := op.GetOp().(type) {
		case *kvpb.BatchOp_Put:
			err = l.checkPut(o.Put)
		case *kvpb.BatchOp_Delete:
			err = l.checkDelete(o.Delete)
		case *kvpb.BatchOp_CompareAndSwap:
			err = l.checkCAS(o.CompareAndSwap)
		case *kvpb.BatchOp_Append:
			err = l.checkAppend(o.Append)
		default:
			err = errf(ErrMalformed, "op has no operation (or one this replica does not know)")
		}
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e2 := *e
				e2.Message = fmt.Sprintf("batch op %d: %s", i, e.Message)
				return &e2
			}
			return err
		}
	}
	return nil
}

package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// applier applies the entries of one Apply call into one engine batch,
// keeping the state machine's in-memory state (meta, limits, sessions) in
// step with what the batch holds.
type applier struct {
	s *StateMachine
	b *pebble.Batch // indexed: reads see the writes of earlier entries
}

// apply applies one entry. Everything it decides depends only on the
// entry and the state before it, never on a local clock or configuration,
// so every replica computes the same state and the same result. A non-nil
// error is an engine failure.
func (a *applier) apply(e *raft.Entry) (*Result, error) {
	s := a.s
	if err := s.lim.CheckSize(len(e.Data)); err != nil {
		return &Result{Err: err}, nil
	}
	cmd, err := DecodeCommand(e.Data)
	if err != nil {
		return &Result{Err: err}, nil
	}

	// The log clock: the largest stamp applied. Sessions idle longer than
	// the TTL by this clock expire, before the command looks its own up.
	if t := cmd.GetTimeUnixNano(); t > s.meta.GetClockUnixNano() {
		s.meta.ClockUnixNano = t
	}
	if err := a.expireSessions(); err != nil {
		return nil, err
	}

	idx := uint64(e.Index)
	switch op := cmd.GetOp().(type) {
	case *kvpb.Command_OpenSession, *kvpb.Command_KeepAlive, *kvpb.Command_CloseSession, *kvpb.Command_SetLimits:
		if err := s.lim.checkCommand(cmd); err != nil {
			return &Result{Err: err}, nil
		}
		switch op := op.(type) {
		case *kvpb.Command_OpenSession:
			return a.openSession(idx)
		case *kvpb.Command_KeepAlive:
			return a.keepAlive(idx, op.KeepAlive)
		case *kvpb.Command_CloseSession:
			return a.closeSession(idx, op.CloseSession)
		case *kvpb.Command_SetLimits:
			return a.setLimits(op.SetLimits)
		}
	case nil:
		return &Result{Err: errf(ErrMalformed, "command has no operation (or one this replica does not know)")}, nil
	}
	return a.write(idx, cmd)
}

// write applies a write command, exactly once per (session, seq).
func (a *applier) write(idx uint64, cmd *kvpb.Command) (*Result, error) {
	s := a.s
	if err := checkWriteHeader(cmd); err != nil {
		return &Result{Err: err}, nil
	}
	if cmd.GetSessionId() == 0 {
		return a.execute(idx, cmd)
	}

	rec := s.sessions.get(cmd.GetSessionId())
	if rec == nil {
		return &Result{Err: errf(ErrSessionExpired, "session %d is unknown, expired or closed", cmd.GetSessionId())}, nil
	}
	if err := a.ack(rec, cmd.GetLowestUnackedSeq()); err != nil {
		return nil, err
	}
	s.sessions.touch(rec, s.meta.GetClockUnixNano())
	res, err := a.sessionWrite(idx, rec, cmd)
	if err != nil {
		return nil, err
	}
	return res, a.setProto(sessionKey(rec.GetId()), rec)
}

func (a *applier) sessionWrite(idx uint64, rec *kvpb.SessionRecord, cmd *kvpb.Command) (*Result, error) {
	s := a.s
	id, seq := rec.GetId(), cmd.GetSeq()
	if seq < rec.GetLowestUnackedSeq() {
		return &Result{Err: errf(ErrStaleSequence, "session %d seq %d is below its lowest unacknowledged seq %d", id, seq, rec.GetLowestUnackedSeq())}, nil
	}
	cached, err := a.cachedResult(id, seq)
	if err != nil || (cached != nil && !controlNoDedup) {
		return cached, err
	}
	if rec.GetPending() >= s.lim.MaxPendingPerSession {
		return &Result{Err: &Error{
			Code: ErrTooManyPending.Code,
			Message: fmt.Sprintf("session %d keeps %d unacknowledged results, the limit max_pending_per_session = %d",
				id, rec.GetPending(), s.lim.MaxPendingPerSession),
			Limit:      "max_pending_per_session",
			LimitValue: s.lim.MaxPendingPerSession,
			Actual:     rec.GetPending(),
		}}, nil
	}
	// From here on the outcome, failure included, is this seq's for good.
	res, err := a.execute(idx, cmd)
	if err != nil {
		return nil, err
	}
	if err := a.setProto(resultKey(id, seq), encodeResult(res)); err != nil {
		return nil, err
	}
	rec.Pending++
	return res, nil
}

// execute validates and executes a write command.
func (a *applier) execute(idx uint64, cmd *kvpb.Command) (*Result, error) {
	if err := a.s.lim.checkCommand(cmd); err != nil {
		return &Result{Err: err}, nil
	}
	t := a.newTxn(idx)
	var resp proto.Message
	var err error
	switch op := cmd.GetOp().(type) {
	case *kvpb.Command_Put:
		resp, err = t.put(op.Put)
	case *kvpb.Command_Delete:
		resp, err = t.delete(op.Delete)
	case *kvpb.Command_CompareAndSwap:
		resp, err = t.compareAndSwap(op.CompareAndSwap)
	case *kvpb.Command_Append:
		resp, err = t.append(op.Append)
	case *kvpb.Command_Batch:
		resp, err = t.batch(op.Batch)
	default:
		return nil, fmt.Errorf("kv: bug: execute %T", op)
	}
	var cerr *Error
	if errors.As(err, &cerr) {
		return &Result{Err: cerr}, nil // the transaction is dropped: nothing applied
	}
	if err != nil {
		return nil, err
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	setHeader(resp, idx)
	return &Result{Response: resp}, nil
}

// setHeader sets a top-level response's header.
func setHeader(m proto.Message, idx uint64) {
	kvpb.SetHeader(m, &kvpb.ResponseHeader{AppliedIndex: idx})
}

// ack forgets the session's results below lowestUnacked, which its client
// holds.
func (a *applier) ack(rec *kvpb.SessionRecord, lowestUnacked uint64) error {
	from := rec.GetLowestUnackedSeq()
	if lowestUnacked <= from {
		return nil
	}
	rec.LowestUnackedSeq = lowestUnacked
	if rec.GetPending() == 0 {
		return nil
	}
	forget := func(key []byte) error {
		if rec.Pending == 0 {
			return fmt.Errorf("%w: session %d has more results than it counts", ErrCorruptEngine, rec.GetId())
		}
		rec.Pending--
		if err := a.b.Delete(key, nil); err != nil {
			return fmt.Errorf("kv: prune results: %w", err)
		}
		return nil
	}
	// A client acknowledging as it goes advances by a few seqs at a time:
	// point reads are cheaper than an iterator then.
	if lowestUnacked-from <= 16 {
		for seq := from; seq < lowestUnacked && rec.GetPending() > 0; seq++ {
			key := resultKey(rec.GetId(), seq)
			_, closer, err := a.b.Get(key)
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("kv: prune results: %w", err)
			}
			_ = closer.Close()
			if err := forget(key); err != nil {
				return err
			}
		}
		return nil
	}
	lo, hi := resultSpan(rec.GetId(), from, lowestUnacked)
	it, err := a.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("kv: prune results: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := forget(bytes.Clone(it.Key())); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kv: prune results: %w", err)
	}
	return nil
}

// cachedResult returns the result a session kept for seq, or nil.
func (a *applier) cachedResult(id, seq uint64) (*Result, error) {
	v, closer, err := a.b.Get(resultKey(id, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: read result: %w", err)
	}
	defer closer.Close()
	var pr kvpb.Result
	if err := proto.Unmarshal(v, &pr); err != nil {
		return nil, fmt.Errorf("%w: result of session %d seq %d: %v", ErrCorruptEngine, id, seq, err)
	}
	res, err := decodeResult(&pr)
	if err != nil {
		return nil, fmt.Errorf("%w: result of session %d seq %d: %v", ErrCorruptEngine, id, seq, err)
	}
	res.Duplicate = true
	return res, nil
}

// expireSessions drops every session idle longer than the TTL by the log
// clock, with its cached results.
func (a *applier) expireSessions() error {
	s := a.s
	ttl := s.lim.SessionTTL.Nanoseconds()
	now := s.meta.GetClockUnixNano()
	for rec := s.sessions.oldest(); rec != nil && now-rec.GetLastActiveUnixNano() > ttl; rec = s.sessions.oldest() {
		if err := a.dropSession(rec.GetId()); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) dropSession(id uint64) error {
	lo, hi := resultSpan(id, 0, 0)
	if err := a.b.DeleteRange(lo, hi, nil); err != nil {
		return fmt.Errorf("kv: drop session %d: %w", id, err)
	}
	if err := a.b.Delete(sessionKey(id), nil); err != nil {
		return fmt.Errorf("kv: drop session %d: %w", id, err)
	}
	a.s.sessions.remove(id)
	return nil
}

func (a *applier) openSession(idx uint64) (*Result, error) {
	s := a.s
	if n := uint64(s.sessions.len()); n >= s.lim.MaxSessions {
		return &Result{Err: &Error{
			Code:       ErrTooManySessions.Code,
			Message:    fmt.Sprintf("%d live sessions, the limit max_sessions = %d", n, s.lim.MaxSessions),
			Limit:      "max_sessions",
			LimitValue: s.lim.MaxSessions,
			Actual:     n,
		}}, nil
	}
	rec := &kvpb.SessionRecord{Id: idx, LastActiveUnixNano: s.meta.GetClockUnixNano()}
	if s.sessions.get(idx) != nil {
		return nil, fmt.Errorf("%w: session %d opened twice", ErrCorruptEngine, idx)
	}
	s.sessions.add(rec)
	if err := a.setProto(sessionKey(idx), rec); err != nil {
		return nil, err
	}
	return &Result{Response: &kvpb.OpenSessionResponse{
		Header:    &kvpb.ResponseHeader{AppliedIndex: idx},
		SessionId: idx,
		TtlMs:     s.lim.SessionTTL.Milliseconds(),
	}}, nil
}

func (a *applier) keepAlive(idx uint64, r *kvpb.KeepAliveRequest) (*Result, error) {
	s := a.s
	rec := s.sessions.get(r.GetSessionId())
	if rec == nil {
		return &Result{Err: errf(ErrSessionExpired, "session %d is unknown, expired or closed", r.GetSessionId())}, nil
	}
	if err := a.ack(rec, r.GetLowestUnackedSeq()); err != nil {
		return nil, err
	}
	s.sessions.touch(rec, s.meta.GetClockUnixNano())
	if err := a.setProto(sessionKey(rec.GetId()), rec); err != nil {
		return nil, err
	}
	return &Result{Response: &kvpb.KeepAliveResponse{
		Header: &kvpb.ResponseHeader{AppliedIndex: idx},
		TtlMs:  s.lim.SessionTTL.Milliseconds(),
	}}, nil
}

// closeSession is idempotent: closing an unknown session succeeds.
func (a *applier) closeSession(idx uint64, r *kvpb.CloseSessionRequest) (*Result, error) {
	if a.s.sessions.get(r.GetSessionId()) != nil {
		if err := a.dropSession(r.GetSessionId()); err != nil {
			return nil, err
		}
	}
	return &Result{Response: &kvpb.CloseSessionResponse{Header: &kvpb.ResponseHeader{AppliedIndex: idx}}}, nil
}

func (a *applier) setLimits(p *kvpb.Limits) (*Result, error) {
	l := LimitsFromProto(p)
	a.s.lim = l
	a.s.meta.Limits = l.Proto()
	return &Result{Response: l.Proto()}, nil
}

func (a *applier) setProto(key []byte, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("kv: encode %T: %w", m, err)
	}
	if err := a.b.Set(key, v, nil); err != nil {
		return fmt.Errorf("kv: write: %w", err)
	}
	return nil
}

// encodeResult is a Result as a session caches it.
func encodeResult(r *Result) *kvpb.Result {
	var e *Error
	if errors.As(r.Err, &e) {
		return &kvpb.Result{Result: &kvpb.Result_Error{Error: e.Detail()}}
	}
	switch m := r.Response.(type) {
	case *kvpb.PutResponse:
		return &kvpb.Result{Result: &kvpb.Result_Put{Put: m}}
	case *kvpb.DeleteResponse:
		return &kvpb.Result{Result: &kvpb.Result_Delete{Delete: m}}
	case *kvpb.CompareAndSwapResponse:
		return &kvpb.Result{Result: &kvpb.Result_CompareAndSwap{CompareAndSwap: m}}
	case *kvpb.AppendResponse:
		return &kvpb.Result{Result: &kvpb.Result_Append{Append: m}}
	case *kvpb.BatchResponse:
		return &kvpb.Result{Result: &kvpb.Result_Batch{Batch: m}}
	}
	panic(fmt.Sprintf("kv: bug: caching a %T result", r.Response))
}

func decodeResult(p *kvpb.Result) (*Result, error) {
	switch r := p.GetResult().(type) {
	case *kvpb.Result_Error:
		return &Result{Err: ErrorFromDetail(r.Error)}, nil
	case *kvpb.Result_Put:
		return &Result{Response: r.Put}, nil
	case *kvpb.Result_Delete:
		return &Result{Response: r.Delete}, nil
	case *kvpb.Result_CompareAndSwap:
		return &Result{Response: r.CompareAndSwap}, nil
	case *kvpb.Result_Append:
		return &Result{Response: r.Append}, nil
	case *kvpb.Result_Batch:
		return &Result{Response: r.Batch}, nil
	}
	return nil, fmt.Errorf("unexpected result %T", p.GetResult())
}

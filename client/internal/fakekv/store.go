package fakekv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// store is the fake's state machine: a map of keys, and sessions with
// their cached results, with kv's exactly-once rules (kv/doc.go,
// "Sessions: exactly-once"). Every write and session operation takes the
// next "log index", which is also the version of the keys it writes and
// the id of the session it opens. Guarded by Cluster.mu.
type store struct {
	lim   Limits
	index uint64
	data  map[string]*kvpb.KeyValue
	// sessions by id.
	sessions map[uint64]*session
	// executions lists every write executed (not the cached replies).
	executions []Execution
}

type session struct {
	lowestUnacked uint64
	results       map[uint64]result
}

// result is one executed seq's outcome, kept until acknowledged.
type result struct {
	resp proto.Message
	err  *kvpb.ErrorDetail
}

func newStore(lim Limits) *store {
	return &store{lim: lim, data: make(map[string]*kvpb.KeyValue), sessions: make(map[uint64]*session)}
}

func fail(code kvpb.ErrorCode, format string, args ...any) *kvpb.ErrorDetail {
	return &kvpb.ErrorDetail{Code: code, Message: fmt.Sprintf(format, args...)}
}

func limitFail(code kvpb.ErrorCode, what, limit string, limitValue, actual uint64) *kvpb.ErrorDetail {
	return &kvpb.ErrorDetail{
		Code:       code,
		Message:    fmt.Sprintf("%s is %d bytes, over the limit %s = %d", what, actual, limit, limitValue),
		Limit:      limit,
		LimitValue: limitValue,
		Actual:     actual,
	}
}

func (s *store) checkKey(key []byte) *kvpb.ErrorDetail {
	if len(key) == 0 {
		return fail(kvpb.ErrorCode_EMPTY_KEY, "empty key")
	}
	if uint64(len(key)) > s.lim.MaxKeySize {
		return limitFail(kvpb.ErrorCode_KEY_TOO_LARGE, "key", "max_key_size", s.lim.MaxKeySize, uint64(len(key)))
	}
	return nil
}

func (s *store) checkValue(v []byte) *kvpb.ErrorDetail {
	if uint64(len(v)) > s.lim.MaxValueSize {
		return limitFail(kvpb.ErrorCode_VALUE_TOO_LARGE, "value", "max_value_size", s.lim.MaxValueSize, uint64(len(v)))
	}
	return nil
}

func (s *store) header(node uint64) *kvpb.ResponseHeader {
	return &kvpb.ResponseHeader{NodeId: node, GroupId: 1, AppliedIndex: s.index, Term: 1}
}

// write applies one write exactly once per (session, seq), as kv.Apply
// does: refuse an unknown session; acknowledge; refuse a stale seq; return
// a cached result; refuse beyond the pending limit; else execute (exec
// gets the new index and a scratch copy of the data, which it may change
// freely; it is committed unless exec fails) and cache the outcome.
func (s *store) write(h *kvpb.WriteHeader, method string, key []byte,
	exec func(idx uint64, data map[string]*kvpb.KeyValue) (proto.Message, *kvpb.ErrorDetail),
) (proto.Message, *kvpb.ErrorDetail) {
	sid, seq := h.GetSessionId(), h.GetSeq()
	if sid == 0 {
		if seq != 0 || h.GetLowestUnackedSeq() != 0 {
			return nil, fail(kvpb.ErrorCode_MALFORMED, "seq without a session")
		}
		return s.execute(0, 0, method, key, exec)
	}
	if seq == 0 {
		return nil, fail(kvpb.ErrorCode_MALFORMED, "session %d request without a seq", sid)
	}
	ss := s.sessions[sid]
	if ss == nil {
		return nil, fail(kvpb.ErrorCode_SESSION_EXPIRED, "session %d is unknown, expired or closed", sid)
	}
	if low := h.GetLowestUnackedSeq(); low > ss.lowestUnacked {
		for q := range ss.results {
			if q < low {
				delete(ss.results, q)
			}
		}
		ss.lowestUnacked = low
	}
	if seq < ss.lowestUnacked {
		return nil, fail(kvpb.ErrorCode_STALE_SEQUENCE, "session %d seq %d is below its lowest unacknowledged seq %d", sid, seq, ss.lowestUnacked)
	}
	if r, ok := ss.results[seq]; ok {
		return r.resp, r.err
	}
	if uint64(len(ss.results)) >= s.lim.MaxPendingPerSession {
		d := limitFail(kvpb.ErrorCode_TOO_MANY_PENDING, "pending results", "max_pending_per_session", s.lim.MaxPendingPerSession, uint64(len(ss.results)))
		return nil, d
	}
	resp, err := s.execute(sid, seq, method, key, exec)
	ss.results[seq] = result{resp: resp, err: err}
	return resp, err
}

func (s *store) execute(sid, seq uint64, method string, key []byte,
	exec func(idx uint64, data map[string]*kvpb.KeyValue) (proto.Message, *kvpb.ErrorDetail),
) (proto.Message, *kvpb.ErrorDetail) {
	s.index++
	s.executions = append(s.executions, Execution{Index: s.index, Session: sid, Seq: seq, Method: method, Key: string(key)})
	scratch := maps.Clone(s.data)
	resp, err := exec(s.index, scratch)
	if err != nil {
		return nil, err
	}
	if b, ok := resp.(*kvpb.BatchResponse); ok && !b.GetSucceeded() {
		setHeader(resp, &kvpb.ResponseHeader{AppliedIndex: s.index})
		return resp, nil // a failed condition: nothing applied
	}
	setHeader(resp, &kvpb.ResponseHeader{AppliedIndex: s.index})
	s.data = scratch
	return resp, nil
}

// The operations, on a scratch copy of the data (see write).

func (s *store) put(idx uint64, data map[string]*kvpb.KeyValue, r *kvpb.PutRequest) (*kvpb.PutResponse, *kvpb.ErrorDetail) {
	if d := s.checkKey(r.GetKey()); d != nil {
		return nil, d
	}
	if d := s.checkValue(r.GetValue()); d != nil {
		return nil, d
	}
	prev := data[string(r.GetKey())].GetVersion()
	data[string(r.GetKey())] = &kvpb.KeyValue{Key: bytes.Clone(r.GetKey()), Value: bytes.Clone(r.GetValue()), Version: idx}
	return &kvpb.PutResponse{Version: idx, PrevVersion: prev}, nil
}

func (s *store) delete(data map[string]*kvpb.KeyValue, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, *kvpb.ErrorDetail) {
	if d := s.checkKey(r.GetKey()); d != nil {
		return nil, d
	}
	prev, ok := data[string(r.GetKey())]
	delete(data, string(r.GetKey()))
	return &kvpb.DeleteResponse{Deleted: ok, PrevVersion: prev.GetVersion()}, nil
}

func (s *store) cas(idx uint64, data map[string]*kvpb.KeyValue, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, *kvpb.ErrorDetail) {
	if d := s.checkKey(r.GetKey()); d != nil {
		return nil, d
	}
	if d := s.checkValue(r.GetNewValue()); d != nil {
		return nil, d
	}
	cur := data[string(r.GetKey())]
	var holds bool
	switch e := r.GetExpected().(type) {
	case *kvpb.CompareAndSwapRequest_ExpectedValue:
		holds = cur != nil && bytes.Equal(cur.GetValue(), e.ExpectedValue)
	case *kvpb.CompareAndSwapRequest_ExpectedVersion:
		holds = cur.GetVersion() == e.ExpectedVersion
	default:
		return nil, fail(kvpb.ErrorCode_MALFORMED, "compare-and-swap without a condition")
	}
	if !holds {
		return &kvpb.CompareAndSwapResponse{Current: proto.CloneOf(cur)}, nil
	}
	if r.GetDelete() {
		delete(data, string(r.GetKey()))
		return &kvpb.CompareAndSwapResponse{Succeeded: true}, nil
	}
	data[string(r.GetKey())] = &kvpb.KeyValue{Key: bytes.Clone(r.GetKey()), Value: bytes.Clone(r.GetNewValue()), Version: idx}
	return &kvpb.CompareAndSwapResponse{Succeeded: true, Version: idx}, nil
}

func (s *store) append(idx uint64, data map[string]*kvpb.KeyValue, r *kvpb.AppendRequest) (*kvpb.AppendResponse, *kvpb.ErrorDetail) {
	if d := s.checkKey(r.GetKey()); d != nil {
		return nil, d
	}
	v := append(bytes.Clone(data[string(r.GetKey())].GetValue()), r.GetSuffix()...)
	if d := s.checkValue(v); d != nil {
		return nil, d
	}
	data[string(r.GetKey())] = &kvpb.KeyValue{Key: bytes.Clone(r.GetKey()), Value: v, Version: idx}
	return &kvpb.AppendResponse{Version: idx, Length: uint64(len(v))}, nil
}

func (s *store) batch(idx uint64, data map[string]*kvpb.KeyValue, r *kvpb.BatchRequest) (*kvpb.BatchResponse, *kvpb.ErrorDetail) {
	resp := &kvpb.BatchResponse{Succeeded: true}
	for i, op := range r.GetOps() {
		var res *kvpb.BatchResult
		var d *kvpb.ErrorDetail
		switch o := op.GetOp().(type) {
		case *kvpb.BatchOp_Put:
			var pr *kvpb.PutResponse
			pr, d = s.put(idx, data, o.Put)
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Put{Put: pr}}
		case *kvpb.BatchOp_Delete:
			var dr *kvpb.DeleteResponse
			dr, d = s.delete(data, o.Delete)
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Delete{Delete: dr}}
		case *kvpb.BatchOp_CompareAndSwap:
			var cr *kvpb.CompareAndSwapResponse
			cr, d = s.cas(idx, data, o.CompareAndSwap)
			if d == nil && !cr.GetSucceeded() {
				// None of the batch applies (execute drops the scratch).
				return &kvpb.BatchResponse{FailedOp: uint32(i), Failed: cr}, nil
			}
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_CompareAndSwap{CompareAndSwap: cr}}
		case *kvpb.BatchOp_Append:
			var ar *kvpb.AppendResponse
			ar, d = s.append(idx, data, o.Append)
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Append{Append: ar}}
		default:
			d = fail(kvpb.ErrorCode_MALFORMED, "batch op %d has no operation", i)
		}
		if d != nil {
			return nil, d
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

// get reads key.
func (s *store) get(key []byte) (*kvpb.GetResponse, *kvpb.ErrorDetail) {
	if d := s.checkKey(key); d != nil {
		return nil, d
	}
	kv, ok := s.data[string(key)]
	if !ok {
		return &kvpb.GetResponse{}, nil
	}
	return &kvpb.GetResponse{Found: true, Kv: proto.CloneOf(kv)}, nil
}

// scan reads [start, end) from the continuation's key on, at most limit
// pairs (0 or more than maxScan: maxScan).
func (s *store) scan(r *kvpb.ScanRequest, maxScan uint32) (*kvpb.ScanResponse, *kvpb.ErrorDetail) {
	from := r.GetStart()
	if c := r.GetContinuation(); len(c) > 0 {
		if c[0] != 1 || len(c) < 2 {
			return nil, fail(kvpb.ErrorCode_MALFORMED, "scan continuation token is not one a scan returned")
		}
		from = c[1:]
	}
	limit := r.GetLimit()
	if limit == 0 || limit > maxScan {
		limit = maxScan
	}
	keys := slices.Sorted(maps.Keys(s.data))
	resp := &kvpb.ScanResponse{}
	for _, k := range keys {
		if k < string(from) || (len(r.GetEnd()) > 0 && k >= string(r.GetEnd())) {
			continue
		}
		if uint32(len(resp.Kvs)) == limit {
			resp.Continuation = append([]byte{1}, k...)
			break
		}
		kv := proto.CloneOf(s.data[k])
		if r.GetKeysOnly() {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp, nil
}

func (s *store) openSession() *kvpb.OpenSessionResponse {
	s.index++
	s.sessions[s.index] = &session{results: make(map[uint64]result)}
	return &kvpb.OpenSessionResponse{
		Header:    &kvpb.ResponseHeader{AppliedIndex: s.index},
		SessionId: s.index,
		TtlMs:     s.lim.SessionTTL.Milliseconds(),
	}
}

func (s *store) keepAlive(r *kvpb.KeepAliveRequest) (*kvpb.KeepAliveResponse, *kvpb.ErrorDetail) {
	ss := s.sessions[r.GetSessionId()]
	if ss == nil {
		return nil, fail(kvpb.ErrorCode_SESSION_EXPIRED, "session %d is unknown, expired or closed", r.GetSessionId())
	}
	s.index++
	if low := r.GetLowestUnackedSeq(); low > ss.lowestUnacked {
		for q := range ss.results {
			if q < low {
				delete(ss.results, q)
			}
		}
		ss.lowestUnacked = low
	}
	return &kvpb.KeepAliveResponse{TtlMs: s.lim.SessionTTL.Milliseconds()}, nil
}

func (s *store) closeSession(r *kvpb.CloseSessionRequest) *kvpb.CloseSessionResponse {
	s.index++
	delete(s.sessions, r.GetSessionId())
	return &kvpb.CloseSessionResponse{}
}

package client

import (
	"bytes"
	"context"
	"errors"

	"github.com/cairnkv/cairn/api/kvpb"
)

// writeRPC sends one attempt of a write with header h.
type writeRPC func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error)

// maxSessionRenewals bounds how many sessions one write tries when each
// in turn turns out to have expired before the write executed.
const maxSessionRenewals = 3

// write runs a write exactly once: on the live session, with one seq
// for all its attempts. See the package documentation, "Writes, sessions
// and exactly-once", for the contract; in short:
//
//   - Success, or a definitive server answer (a failed condition, an
//     invalid argument, a result cached from an earlier attempt): returned.
//   - SESSION_EXPIRED when no attempt may have executed: the session is
//     dropped and the write starts over on a new session with a new seq;
//     it had never been applied, so this cannot apply it twice.
//   - SESSION_EXPIRED (or STALE_SEQUENCE, or a non-definitive final
//     error) after an attempt that may have executed, or giving up after
//     one: *OutcomeUnknownError. Retrying on a new session could apply
//     the write a second time, so the client does not.
//   - Giving up when no attempt may have executed: ErrUnavailable.
//
// The seq is released (the caller "has its result") when write returns,
// whatever the outcome; later requests then acknowledge it.
func (c *Client) write(ctx context.Context, op string, send writeRPC) error {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var expired error
	for range maxSessionRenewals {
		s, err := c.sessions.get(ctx)
		if err != nil {
			return callError(op, err)
		}
		seq, err := s.win.acquire(ctx)
		if errors.Is(err, errWindowClosed) {
			continue // the session ended while we waited; take the next
		}
		if err != nil {
			return callError(op, giveUp(ctx, nil))
		}
		out := c.do(ctx, call{op: op, route: toLeader}, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
			return send(ctx, kv, &kvpb.WriteHeader{
				GroupId:          uint64(c.cfg.Group),
				SessionId:        uint64(s.id),
				Seq:              uint64(seq),
				LowestUnackedSeq: uint64(s.win.lowestUnacked()),
			})
		})
		s.win.release(seq)

		unknown := func(err error) error {
			return &OutcomeUnknownError{Op: op, Session: s.id, Seq: seq, Err: err}
		}
		switch {
		case out.err == nil:
			return nil
		case out.gaveUp:
			if out.maybeExecuted {
				return unknown(out.err)
			}
			return callError(op, out.err)
		case isSessionExpired(out.err):
			c.sessions.expire(s, op)
			if out.maybeExecuted {
				return unknown(answerError(out.err))
			}
			expired = out.err
			continue
		case !notExecuted(out.err):
			// STALE_SEQUENCE, or an error that is no answer (INTERNAL,
			// UNKNOWN...): the write may have applied, by this attempt or
			// an earlier one.
			return unknown(answerError(out.err))
		default:
			return callError(op, answerError(out.err))
		}
	}
	if expired == nil {
		return callError(op, &taggedError{what: "session expired", tag: ErrSessionExpired})
	}
	return callError(op, answerError(expired))
}

// Put sets key's value. It does not retain key or value after it returns.
func (c *Client) Put(ctx context.Context, key, value []byte) (*PutResult, error) {
	var resp *kvpb.PutResponse
	err := c.write(ctx, "put", func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error) {
		r, err := kv.Put(ctx, &kvpb.PutRequest{Header: h, Key: key, Value: value})
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	return &PutResult{
		Version:     Version(resp.GetVersion()),
		PrevVersion: Version(resp.GetPrevVersion()),
		Header:      headerOf(resp.GetHeader()),
	}, nil
}

// Delete removes key; deleting an absent key succeeds with Deleted false.
func (c *Client) Delete(ctx context.Context, key []byte) (*DeleteResult, error) {
	var resp *kvpb.DeleteResponse
	err := c.write(ctx, "delete", func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error) {
		r, err := kv.Delete(ctx, &kvpb.DeleteRequest{Header: h, Key: key})
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	return &DeleteResult{
		Deleted:     resp.GetDeleted(),
		PrevVersion: Version(resp.GetPrevVersion()),
		Header:      headerOf(resp.GetHeader()),
	}, nil
}

// CompareAndSwap sets key to value if expect holds. If it does not, it
// writes nothing and returns a *CASFailedError (matching ErrCASFailed)
// with the key's current state.
func (c *Client) CompareAndSwap(ctx context.Context, key []byte, expect Expect, value []byte) (*CASResult, error) {
	return c.cas(ctx, "compare-and-swap", expect.request(key, value, false))
}

// CompareAndDelete deletes key if expect holds, as CompareAndSwap.
func (c *Client) CompareAndDelete(ctx context.Context, key []byte, expect Expect) (*CASResult, error) {
	return c.cas(ctx, "compare-and-delete", expect.request(key, nil, true))
}

func (c *Client) cas(ctx context.Context, op string, req *kvpb.CompareAndSwapRequest) (*CASResult, error) {
	var resp *kvpb.CompareAndSwapResponse
	err := c.write(ctx, op, func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error) {
		req.Header = h
		r, err := kv.CompareAndSwap(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetSucceeded() {
		return nil, casFailed(req.GetKey(), 0, resp)
	}
	return &CASResult{Version: Version(resp.GetVersion()), Header: headerOf(resp.GetHeader())}, nil
}

func casFailed(key []byte, op int, resp *kvpb.CompareAndSwapResponse) *CASFailedError {
	e := &CASFailedError{Key: bytes.Clone(key), Op: op, Header: headerOf(resp.GetHeader())}
	if cur := resp.GetCurrent(); cur != nil {
		kv := keyValueOf(cur)
		e.Current = &kv
	}
	return e
}

// Append appends suffix to key's value, creating the key if absent.
func (c *Client) Append(ctx context.Context, key, suffix []byte) (*AppendResult, error) {
	var resp *kvpb.AppendResponse
	err := c.write(ctx, "append", func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error) {
		r, err := kv.Append(ctx, &kvpb.AppendRequest{Header: h, Key: key, Suffix: suffix})
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	return &AppendResult{
		Version: Version(resp.GetVersion()),
		Length:  resp.GetLength(),
		Header:  headerOf(resp.GetHeader()),
	}, nil
}

// Batch applies b's ops in order, atomically: each sees the effect of
// those before it, and if a compare-and-swap's condition fails, none is
// applied and Batch returns a *CASFailedError (matching ErrCASFailed)
// whose Op is that op's index. All keys must belong to one group.
func (c *Client) Batch(ctx context.Context, b *Batch) (*BatchResult, error) {
	req := &kvpb.BatchRequest{Ops: b.ops}
	var resp *kvpb.BatchResponse
	err := c.write(ctx, "batch", func(ctx context.Context, kv kvpb.KVClient, h *kvpb.WriteHeader) (*kvpb.ResponseHeader, error) {
		req.Header = h
		r, err := kv.Batch(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetSucceeded() {
		i := int(resp.GetFailedOp())
		var key []byte
		if i < len(b.ops) {
			key = b.ops[i].GetCompareAndSwap().GetKey()
		}
		e := casFailed(key, i, resp.GetFailed())
		e.Header = headerOf(resp.GetHeader())
		return nil, e
	}
	res := &BatchResult{Header: headerOf(resp.GetHeader()), Results: make([]OpResult, 0, len(resp.GetResults()))}
	for _, r := range resp.GetResults() {
		res.Results = append(res.Results, opResultOf(r))
	}
	return res, nil
}

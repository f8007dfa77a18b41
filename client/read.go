package client

import (
	"context"
	"iter"

	"github.com/cairnkv/cairn/api/kvpb"
)

// ReadOption adjusts a read (Get, Scan, ScanAll). Options that do not
// apply to a call are ignored.
type ReadOption func(*readOptions)

type readOptions struct {
	consistency  Consistency
	continuation []byte
	keysOnly     bool
	pageSize     int
}

func collect(opts []ReadOption) readOptions {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithConsistency sets the read's consistency (default Linearizable).
func WithConsistency(c Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// WithContinuation resumes a Scan where an earlier one stopped: pass that
// ScanResult's Continuation, with the same start and end.
func WithContinuation(token []byte) ReadOption {
	return func(o *readOptions) { o.continuation = token }
}

// WithKeysOnly leaves values out of a Scan's or ScanAll's results.
func WithKeysOnly() ReadOption {
	return func(o *readOptions) { o.keysOnly = true }
}

// WithPageSize sets how many keys each of ScanAll's requests asks for; 0
// (the default) means the server's maximum.
func WithPageSize(n int) ReadOption {
	return func(o *readOptions) { o.pageSize = n }
}

// read runs an idempotent read: any failure that is not a definitive
// answer is retried, at the leader (Linearizable, Lease) or at any node
// (Serializable).
func (c *Client) read(ctx context.Context, op string, cons Consistency, send rpc) error {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	rt := toLeader
	if cons == Serializable {
		rt = toAny
	}
	out := c.do(ctx, call{op: op, route: rt}, send)
	switch {
	case out.err == nil:
		return nil
	case out.gaveUp:
		return callError(op, out.err)
	}
	return callError(op, answerError(out.err))
}

// Get reads key. If it is absent, Get returns ErrKeyNotFound itself.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (*GetResult, error) {
	o := collect(opts)
	req := &kvpb.GetRequest{
		Header: &kvpb.ReadHeader{GroupId: uint64(c.cfg.Group), Consistency: o.consistency.wire()},
		Key:    key,
	}
	var resp *kvpb.GetResponse
	err := c.read(ctx, "get", o.consistency, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
		r, err := kv.Get(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetFound() {
		return nil, ErrKeyNotFound // as is: a miss should cost no allocation
	}
	return &GetResult{KeyValue: keyValueOf(resp.GetKv()), Header: headerOf(resp.GetHeader())}, nil
}

// Scan reads one page of the keys in [start, end), in ascending byte
// order: at most limit pairs (0 means the server's maximum), and fewer if
// they would not fit in one response. An empty start means the first key;
// an empty end means no bound. If the result's Continuation is set, more
// keys may follow: call Scan again with WithContinuation. ScanAll does
// that for you.
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int, opts ...ReadOption) (*ScanResult, error) {
	o := collect(opts)
	if limit < 0 {
		limit = 0
	}
	return c.scan(ctx, start, end, uint32(min(limit, 1<<31)), o, o.continuation)
}

func (c *Client) scan(ctx context.Context, start, end []byte, limit uint32, o readOptions, cont []byte) (*ScanResult, error) {
	req := &kvpb.ScanRequest{
		Header:       &kvpb.ReadHeader{GroupId: uint64(c.cfg.Group), Consistency: o.consistency.wire()},
		Start:        start,
		End:          end,
		Limit:        limit,
		Continuation: cont,
		KeysOnly:     o.keysOnly,
	}
	var resp *kvpb.ScanResponse
	err := c.read(ctx, "scan", o.consistency, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
		r, err := kv.Scan(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})
	if err != nil {
		return nil, err
	}
	res := &ScanResult{
		KVs:          make([]KeyValue, 0, len(resp.GetKvs())),
		Continuation: resp.GetContinuation(),
		Header:       headerOf(resp.GetHeader()),
	}
	for _, kv := range resp.GetKvs() {
		res.KVs = append(res.KVs, keyValueOf(kv))
	}
	return res, nil
}

// ScanAll iterates over every key in [start, end), in ascending byte
// order, reading page after page (WithPageSize) and following the
// continuations. Each page is one read at the chosen consistency; the
// iteration as a whole is not a snapshot: a key written while it runs
// may or may not be seen, but no key is seen twice or out of order.
// Each page gets the call's own RequestTimeout; ctx bounds the whole
// iteration.
//
// On an error it yields (KeyValue{}, err) once and stops. Breaking out of
// the loop stops it early.
//
//	for kv, err := range c.ScanAll(ctx, []byte("a"), []byte("b")) {
//		if err != nil {
//			return err
//		}
//		use(kv)
//	}
func (c *Client) ScanAll(ctx context.Context, start, end []byte, opts ...ReadOption) iter.Seq2[KeyValue, error] {
	o := collect(opts)
	limit := uint32(0)
	if o.pageSize > 0 {
		limit = uint32(min(o.pageSize, 1<<31))
	}
	return func(yield func(KeyValue, error) bool) {
		cont := o.continuation
		for {
			page, err := c.scan(ctx, start, end, limit, o, cont)
			if err != nil {
				yield(KeyValue{}, err)
				return
			}
			for _, kv := range page.KVs {
				if !yield(kv, nil) {
					return
				}
			}
			if len(page.Continuation) == 0 {
				return
			}
			cont = page.Continuation
		}
	}
}

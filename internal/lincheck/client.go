package lincheck

import (
	"context"
	"errors"

	"github.com/cairnkv/cairn/client"
)

// KV runs operations through a cairn client and records each of them:
// one KV per worker goroutine (operations of one Client id must not
// overlap), any number of them sharing a client.Client and a Recorder.
type KV struct {
	rec    *Recorder
	cl     *client.Client
	client int
}

// NewKV returns a KV that records as client id (zero-based, unique per
// worker).
func NewKV(rec *Recorder, cl *client.Client, id int) *KV {
	return &KV{rec: rec, cl: cl, client: id}
}

// ID is the worker's client id in the history.
func (kv *KV) ID() int { return kv.client }

// Get reads key (linearizable, unless opts say otherwise: record only
// linearizable and lease reads, never serializable ones).
func (kv *KV) Get(ctx context.Context, key string, opts ...client.ReadOption) (Output, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: Get, Key: key})
	res, err := kv.cl.Get(ctx, []byte(key), opts...)
	out := Classify(Get, err)
	if err == nil {
		out.Found, out.Value = true, string(res.Value)
	}
	p.End(out)
	return out, err
}

// Put sets key to value.
func (kv *KV) Put(ctx context.Context, key, value string) (Output, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: Put, Key: key, Value: value})
	_, err := kv.cl.Put(ctx, []byte(key), []byte(value))
	out := Classify(Put, err)
	p.End(out)
	return out, err
}

// Delete removes key.
func (kv *KV) Delete(ctx context.Context, key string) (Output, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: Delete, Key: key})
	res, err := kv.cl.Delete(ctx, []byte(key))
	out := Classify(Delete, err)
	if err == nil {
		out.Deleted = res.Deleted
	}
	p.End(out)
	return out, err
}

// CompareAndSwap sets key to value if it holds expect.
func (kv *KV) CompareAndSwap(ctx context.Context, key, expect, value string) (Output, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: CompareAndSwap, Key: key, Expect: expect, Value: value})
	_, err := kv.cl.CompareAndSwap(ctx, []byte(key), client.IfValue([]byte(expect)), []byte(value))
	out := Classify(CompareAndSwap, err)
	p.End(out)
	return out, err
}

// CreateIfAbsent sets key to value if it is absent (a CompareAndSwap on
// absence).
func (kv *KV) CreateIfAbsent(ctx context.Context, key, value string) (Output, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: CompareAndSwap, Key: key, ExpectAbsent: true, Value: value})
	_, err := kv.cl.CompareAndSwap(ctx, []byte(key), client.IfAbsent(), []byte(value))
	out := Classify(CompareAndSwap, err)
	p.End(out)
	return out, err
}

// Append appends suffix to key's value. Suffix should be a token unique
// in the whole run, ending with AppendSep (see CheckAppends).
func (kv *KV) Append(ctx context.Context, key, suffix string) (Output, *client.AppendResult, error) {
	p := kv.rec.Begin(kv.client, Input{Kind: Append, Key: key, Value: suffix})
	res, err := kv.cl.Append(ctx, []byte(key), []byte(suffix))
	out := Classify(Append, err)
	if err == nil {
		out.Length = res.Length
	}
	p.End(out)
	return out, res, err
}

// Classify maps what a client call of kind k returned to its Outcome, per
// the client's contract (package client, "When a write's outcome is
// unknown"); for a successful call the caller fills in the result.
//
//	nil                          OK
//	ErrKeyNotFound (Get)         OK, not found
//	ErrCASFailed                 CASFailed, with the current state
//	ErrOutcomeUnknown            Unknown: may have applied, or may yet
//	ErrInvalidArgument           NotApplied
//	ErrSessionExpired, alone     NotApplied (the client says: not executed)
//	ErrUnavailable, alone        NotApplied for a write (the client gave up
//	                             before any attempt could execute), Unknown
//	                             for a read
//	anything else                Unknown
//
// Treating the client's "not applied" answers as NotApplied makes the
// check test those claims too: a write that applied after all would show
// up as a value nobody wrote.
func Classify(k Kind, err error) Output {
	if err == nil {
		return Output{Outcome: OK}
	}
	out := Output{Outcome: Unknown, Err: err.Error()}
	var cf *client.CASFailedError
	switch {
	case k == Get && errors.Is(err, client.ErrKeyNotFound):
		return Output{Outcome: OK}
	case k == Get:
		// A failed read has no effect; it is open-ended (and pruned).
	case errors.Is(err, client.ErrOutcomeUnknown):
	case errors.As(err, &cf):
		out.Outcome = CASFailed
		if cf.Current != nil {
			out.Found, out.Value = true, string(cf.Current.Value)
		}
	case errors.Is(err, client.ErrInvalidArgument),
		errors.Is(err, client.ErrSessionExpired),
		errors.Is(err, client.ErrUnavailable):
		out.Outcome = NotApplied
	}
	return out
}

package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnkv/cairn/api/kvpb"
)

// txn executes one write command's operations against the engine batch
// through a staging layer: each operation sees the writes of the ones
// before it, and nothing reaches the batch until commit. A command that
// fails (a batch whose compare-and-swap fails, an Append that would grow a
// value past the limit) is dropped whole, so a command applies all or
// nothing.
type txn struct {
	a     *applier
	index uint64 // the entry's index: the version of every key it writes

	staged map[string]*stagedWrite
	order  []string // staged keys in first-write order, for commit
}

type stagedWrite struct {
	deleted bool
	version uint64
	value   []byte
}

func (a *applier) newTxn(index uint64) *txn {
	return &txn{a: a, index: index, staged: make(map[string]*stagedWrite)}
}

// get reads key as the transaction sees it.
func (t *txn) get(key []byte) (value []byte, version uint64, found bool, err error) {
	if w, ok := t.staged[string(key)]; ok {
		if w.deleted {
			return nil, 0, false, nil
		}
		return w.value, w.version, true, nil
	}
	v, closer, err := t.a.b.Get(dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("kv: read %q: %w", key, err)
	}
	defer closer.Close()
	version, value, ok := decodeData(v)
	if !ok {
		return nil, 0, false, fmt.Errorf("%w: data record of %q", ErrCorruptEngine, key)
	}
	return bytes.Clone(value), version, true, nil
}

func (t *txn) stage(key []byte, w *stagedWrite) {
	k := string(key)
	if _, ok := t.staged[k]; !ok {
		t.order = append(t.order, k)
	}
	t.staged[k] = w
}

func (t *txn) set(key, value []byte) {
	t.stage(key, &stagedWrite{version: t.index, value: value})
}

func (t *txn) del(key []byte) { t.stage(key, &stagedWrite{deleted: true}) }

// commit writes the staged writes into the engine batch.
func (t *txn) commit() error {
	for _, k := range t.order {
		w := t.staged[k]
		var err error
		if w.deleted {
			err = t.a.b.Delete(dataKey([]byte(k)), nil)
		} else {
			err = t.a.b.Set(dataKey([]byte(k)), encodeData(w.version, w.value), nil)
		}
		if err != nil {
			return fmt.Errorf("kv: write: %w", err)
		}
	}
	return nil
}

func (t *txn) put(r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	_, prev, _, err := t.get(r.GetKey())
	if err != nil {
		return nil, err
	}
	t.set(r.GetKey(), r.GetValue())
	return &kvpb.PutResponse{Version: t.index, PrevVersion: prev}, nil
}

func (t *txn) delete(r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	_, prev, found, err := t.get(r.GetKey())
	if err != nil {
		return nil, err
	}
	if found {
		t.del(r.GetKey())
	}
	return &kvpb.DeleteResponse{Deleted: found, PrevVersion: prev}, nil
}

func (t *txn) compareAndSwap(r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	value, version, found, err := t.get(r.GetKey())
	if err != nil {
		return nil, err
	}
	var match bool
	switch e := r.GetExpected().(type) {
	case *kvpb.CompareAndSwapRequest_ExpectedValue:
		match = found && bytes.Equal(value, e.ExpectedValue)
	case *kvpb.CompareAndSwapRequest_ExpectedVersion:
		match = version == e.ExpectedVersion // an absent key's version is 0
	default:
		return nil, errf(ErrMalformed, "compare-and-swap without an expected value or version")
	}
	if !match {
		resp := &kvpb.CompareAndSwapResponse{}
		if found {
			resp.Current = &kvpb.KeyValue{Key: r.GetKey(), Value: value, Version: version}
		}
		return resp, nil
	}
	if r.GetDelete() {
		if found {
			t.del(r.GetKey())
		}
		return &kvpb.CompareAndSwapResponse{Succeeded: true}, nil
	}
	t.set(r.GetKey(), r.GetNewValue())
	return &kvpb.CompareAndSwapResponse{Succeeded: true, Version: t.index}, nil
}

func (t *txn) append(r *kvpb.AppendRequest) (*kvpb.AppendResponse, error) {
	value, _, _, err := t.get(r.GetKey())
	if err != nil {
		return nil, err
	}
	n := uint64(len(value)) + uint64(len(r.GetSuffix()))
	if limit := t.a.s.lim.MaxValueSize; n > limit {
		return nil, limitErr(ErrValueTooLarge, fmt.Sprintf("value of %q after append", r.GetKey()), "max_value_size", limit, n)
	}
	nv := make([]byte, 0, n)
	nv = append(append(nv, value...), r.GetSuffix()...)
	t.set(r.GetKey(), nv)
	return &kvpb.AppendResponse{Version: t.index, Length: n}, nil
}

// batch runs the ops in order. A compare-and-swap whose condition fails
// aborts the batch: the caller drops the transaction, nothing is applied,
// and the response names the op. An op's error fails the whole batch the
// same way.
func (t *txn) batch(r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	results := make([]*kvpb.BatchResult, 0, len(r.GetOps()))
	for i, op := range r.GetOps() {
		var res *kvpb.BatchResult
		switch o := op.GetOp().(type) {
		case *kvpb.BatchOp_Put:
			resp, err := t.put(o.Put)
			if err != nil {
				return nil, batchOpErr(i, err)
			}
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Put{Put: resp}}
		case *kvpb.BatchOp_Delete:
			resp, err := t.delete(o.Delete)
			if err != nil {
				return nil, batchOpErr(i, err)
			}
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Delete{Delete: resp}}
		case *kvpb.BatchOp_CompareAndSwap:
			resp, err := t.compareAndSwap(o.CompareAndSwap)
			if err != nil {
				return nil, batchOpErr(i, err)
			}
			if !resp.GetSucceeded() {
				t.staged, t.order = nil, nil
				return &kvpb.BatchResponse{FailedOp: uint32(i), Failed: resp}, nil
			}
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_CompareAndSwap{CompareAndSwap: resp}}
		case *kvpb.BatchOp_Append:
			resp, err := t.append(o.Append)
			if err != nil {
				return nil, batchOpErr(i, err)
			}
			res = &kvpb.BatchResult{Result: &kvpb.BatchResult_Append{Append: resp}}
		default:
			return nil, errf(ErrMalformed, "batch op %d has no operation", i)
		}
		results = append(results, res)
	}
	return &kvpb.BatchResponse{Succeeded: true, Results: results}, nil
}

// batchOpErr prefixes a command error with the op's position.
func batchOpErr(i int, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	e2 := *e
	e2.Message = fmt.Sprintf("batch op %d: %s", i, e.Message)
	return &e2
}

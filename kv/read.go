package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// Reads see the engine's committed state at one instant: each reads a
// Pebble snapshot, so its data and the applied index it reports belong
// together. Consistency (linearizable, lease, serializable) is the
// caller's business: it waits for the applied index a read needs, then
// reads here.

// Get reads key. The response's header carries the applied index of the
// state read.
func (s *StateMachine) Get(key []byte) (*kvpb.GetResponse, error) {
	if err := s.Limits().CheckKey(key); err != nil {
		return nil, err
	}
	unlock, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer unlock()
	snap := s.db.NewSnapshot()
	defer snap.Close()

	applied, err := readApplied(snap)
	if err != nil {
		return nil, err
	}
	resp := &kvpb.GetResponse{Header: &kvpb.ResponseHeader{AppliedIndex: applied}}
	v, closer, err := snap.Get(dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return resp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: get: %w", err)
	}
	defer closer.Close()
	version, value, ok := decodeData(v)
	if !ok {
		return nil, fmt.Errorf("%w: data record of %q", ErrCorruptEngine, key)
	}
	resp.Found = true
	resp.Kv = &kvpb.KeyValue{Key: bytes.Clone(key), Value: bytes.Clone(value), Version: version}
	return resp, nil
}

// Scan reads the keys of [start, end) in ascending order, at most limit
// of them (0 or more than Config.MaxScanLimit means MaxScanLimit) and no
// more than fit in Limits.MaxRequestSize (but always one, if there is
// one). When it stops before the range's end it sets the response's
// continuation, from which a Scan with the same start and end resumes.
func (s *StateMachine) Scan(req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	lim := s.Limits()
	if err := lim.CheckScan(req); err != nil {
		return nil, err
	}
	from := req.GetStart()
	if c := req.GetContinuation(); len(c) > 0 {
		var err error
		if from, err = decodeContinuation(c, req.GetStart(), req.GetEnd()); err != nil {
			return nil, err
		}
	}
	limit := req.GetLimit()
	if limit == 0 || limit > s.cfg.MaxScanLimit {
		limit = s.cfg.MaxScanLimit
	}

	unlock, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer unlock()
	snap := s.db.NewSnapshot()
	defer snap.Close()

	applied, err := readApplied(snap)
	if err != nil {
		return nil, err
	}
	resp := &kvpb.ScanResponse{Header: &kvpb.ResponseHeader{AppliedIndex: applied}}
	if end := req.GetEnd(); len(end) > 0 && bytes.Compare(from, end) >= 0 {
		return resp, nil
	}
	upper := dataUpperBound
	if len(req.GetEnd()) > 0 {
		upper = dataKey(req.GetEnd())
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: dataKey(from), UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	defer it.Close()

	size := uint64(proto.Size(resp)) + 16
	for it.First(); it.Valid(); it.Next() {
		key := it.Key()[1:]
		version, value, ok := decodeData(it.Value())
		if !ok {
			return nil, fmt.Errorf("%w: data record of %q", ErrCorruptEngine, key)
		}
		if req.GetKeysOnly() {
			value = nil
		}
		pair := uint64(len(key)+len(value)) + 24 // with the encoding's overhead
		if uint32(len(resp.Kvs)) == limit || (len(resp.Kvs) > 0 && size+pair > lim.MaxRequestSize) {
			resp.Continuation = encodeContinuation(key)
			break
		}
		size += pair
		resp.Kvs = append(resp.Kvs, &kvpb.KeyValue{Key: bytes.Clone(key), Value: bytes.Clone(value), Version: version})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	return resp, nil
}

// readApplied reads the applied index from a snapshot of the engine.
func readApplied(snap *pebble.Snapshot) (uint64, error) {
	v, closer, err := snap.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kv: read meta: %w", err)
	}
	defer closer.Close()
	var meta kvpb.Meta
	if err := proto.Unmarshal(v, &meta); err != nil {
		return 0, fmt.Errorf("%w: meta: %v", ErrCorruptEngine, err)
	}
	return meta.GetAppliedIndex(), nil
}

// A scan's continuation token is the key to resume at (inclusive):
//
//	+------------------+---------------+
//	| version 1 (byte) | resume key    |
//	+------------------+---------------+
//
// Clients treat it as opaque, so it may change with its version byte.
const continuationV1 byte = 1

func encodeContinuation(resume []byte) []byte {
	return append([]byte{continuationV1}, resume...)
}

// decodeContinuation returns the resume key of a token, which must lie in
// [start, end).
func decodeContinuation(c, start, end []byte) ([]byte, error) {
	if len(c) < 2 || c[0] != continuationV1 || len(c)-1 > maxMaxKeySize {
		return nil, errf(ErrMalformed, "scan continuation token is not one a scan returned")
	}
	resume := c[1:]
	if bytes.Compare(resume, start) < 0 || (len(end) > 0 && bytes.Compare(resume, end) >= 0) {
		return nil, errf(ErrMalformed, "scan continuation token is outside [start, end)")
	}
	return resume, nil
}

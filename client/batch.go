package client

import "github.com/cairnkv/cairn/api/kvpb"

// Expect is a compare-and-swap's condition on a key: its value, or its
// version. Make one with IfValue, IfVersion or IfAbsent. The zero Expect
// is IfAbsent.
type Expect struct {
	byValue bool
	value   []byte
	version Version
}

// IfValue holds when the key exists and its value is exactly v. An empty
// v is a value: it does not match an absent key.
func IfValue(v []byte) Expect {
	if v == nil {
		v = []byte{}
	}
	return Expect{byValue: true, value: v}
}

// IfVersion holds when the key's version is v; IfVersion(0) holds when
// the key is absent.
func IfVersion(v Version) Expect { return Expect{version: v} }

// IfAbsent holds when the key does not exist: IfVersion(0).
func IfAbsent() Expect { return Expect{} }

func (e Expect) request(key, value []byte, del bool) *kvpb.CompareAndSwapRequest {
	r := &kvpb.CompareAndSwapRequest{Key: key, NewValue: value, Delete: del}
	if e.byValue {
		r.Expected = &kvpb.CompareAndSwapRequest_ExpectedValue{ExpectedValue: e.value}
	} else {
		r.Expected = &kvpb.CompareAndSwapRequest_ExpectedVersion{ExpectedVersion: uint64(e.version)}
	}
	return r
}

// Batch builds an atomic batch of writes for Client.Batch. The zero Batch
// is empty and ready to use; each method adds one op and returns b, so
// calls chain:
//
//	b := new(client.Batch).
//		Put(k1, v1).
//		CompareAndSwap(k2, client.IfVersion(v), v2)
//
// A Batch keeps the slices it is given until it is sent: do not modify
// them before Client.Batch returns. It is not safe for concurrent
// building; once built it may be sent any number of times, from any
// goroutine (each send is a separate write).
type Batch struct {
	ops []*kvpb.BatchOp
}

// NewBatch returns an empty Batch.
func NewBatch() *Batch { return new(Batch) }

// Len is the number of ops in b.
func (b *Batch) Len() int { return len(b.ops) }

// Put adds a put of key to value.
func (b *Batch) Put(key, value []byte) *Batch {
	b.ops = append(b.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: key, Value: value}}})
	return b
}

// Delete adds a delete of key.
func (b *Batch) Delete(key []byte) *Batch {
	b.ops = append(b.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: key}}})
	return b
}

// CompareAndSwap adds a compare-and-swap: set key to value if expect
// holds, else fail the whole batch.
func (b *Batch) CompareAndSwap(key []byte, expect Expect, value []byte) *Batch {
	b.ops = append(b.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_CompareAndSwap{CompareAndSwap: expect.request(key, value, false)}})
	return b
}

// CompareAndDelete adds a compare-and-delete: delete key if expect
// holds, else fail the whole batch.
func (b *Batch) CompareAndDelete(key []byte, expect Expect) *Batch {
	b.ops = append(b.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_CompareAndSwap{CompareAndSwap: expect.request(key, nil, true)}})
	return b
}

// Append adds an append of suffix to key's value.
func (b *Batch) Append(key, suffix []byte) *Batch {
	b.ops = append(b.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Append{Append: &kvpb.AppendRequest{Key: key, Suffix: suffix}}})
	return b
}

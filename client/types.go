package client

import (
	"fmt"

	"github.com/cairnkv/cairn/api/kvpb"
)

// NodeID names a server node (a replica's node id).
type NodeID uint64

// GroupID names a Raft group (a shard). 0 lets the server route by key.
type GroupID uint64

// Index is a position in a group's Raft log.
type Index uint64

// Term is a Raft term.
type Term uint64

// Version is a key's version: the log index of the write that last set it.
// It is never 0 for a present key, and grows with every write, so a key
// deleted and re-created has a new version. IfVersion(0) means "absent".
type Version uint64

// SessionID names a client session: the log index of the entry that
// opened it.
type SessionID uint64

// Seq is a write's sequence number within its session, from 1 up.
type Seq uint64

// Header says who answered a request and at which state.
type Header struct {
	// Node is the replica that answered.
	Node  NodeID
	Group GroupID
	// AppliedIndex is the log index the answering replica's state
	// reflected: for a write, the entry that applied it (also when a retry
	// returns the original result); for a read, the applied index of the
	// state read.
	AppliedIndex Index
	// Term is the answering replica's term, if it said.
	Term Term
}

func headerOf(h *kvpb.ResponseHeader) Header {
	return Header{
		Node:         NodeID(h.GetNodeId()),
		Group:        GroupID(h.GetGroupId()),
		AppliedIndex: Index(h.GetAppliedIndex()),
		Term:         Term(h.GetTerm()),
	}
}

// KeyValue is one stored key.
type KeyValue struct {
	Key     []byte
	Value   []byte
	Version Version
}

func keyValueOf(kv *kvpb.KeyValue) KeyValue {
	return KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), Version: Version(kv.GetVersion())}
}

// Consistency is how fresh a read must be, chosen per read with
// WithConsistency.
type Consistency int

const (
	// Linearizable (the default): the read reflects every write that
	// completed before it was sent. The client sends it to the leader.
	Linearizable Consistency = iota
	// Lease: linearizable as long as the servers' clocks drift less than
	// the election timeout allows; served by the leader without a round
	// of heartbeats. The client sends it to the leader.
	Lease
	// Serializable: some replica's current state, possibly stale, never
	// torn. The client spreads these reads over all endpoints.
	Serializable
)

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Lease:
		return "lease"
	case Serializable:
		return "serializable"
	}
	return fmt.Sprintf("Consistency(%d)", int(c))
}

func (c Consistency) wire() kvpb.Consistency {
	switch c {
	case Lease:
		return kvpb.Consistency_LEASE
	case Serializable:
		return kvpb.Consistency_SERIALIZABLE
	}
	return kvpb.Consistency_LINEARIZABLE
}

// GetResult is what Get read.
type GetResult struct {
	KeyValue
	Header Header
}

// ScanResult is one page of a scan.
type ScanResult struct {
	// KVs are the keys found, in ascending byte order.
	KVs []KeyValue
	// Continuation is set when the range may hold more keys than
	// returned: pass it to Scan with WithContinuation, with the same start
	// and end, to read on. Empty means the scan is complete. Opaque.
	Continuation []byte
	Header       Header
}

// PutResult is what a Put did.
type PutResult struct {
	// Version is the key's new version.
	Version Version
	// PrevVersion is the version the key had before, 0 if it was absent.
	PrevVersion Version
	Header      Header
}

// DeleteResult is what a Delete did.
type DeleteResult struct {
	// Deleted says whether the key existed.
	Deleted     bool
	PrevVersion Version
	Header      Header
}

// CASResult is what a successful CompareAndSwap or CompareAndDelete did.
// (A failed one returns a *CASFailedError.)
type CASResult struct {
	// Version is the key's new version, 0 if the swap deleted it.
	Version Version
	Header  Header
}

// AppendResult is what an Append did.
type AppendResult struct {
	Version Version
	// Length is the value's length after the append: the suffix starts at
	// Length - len(suffix).
	Length uint64
	Header Header
}

// BatchResult is what a successful Batch did: one OpResult per op, in
// order. (A batch whose compare-and-swap failed applied nothing and
// returns a *CASFailedError.)
type BatchResult struct {
	Results []OpResult
	Header  Header
}

// OpKind is the kind of one op of a Batch.
type OpKind int

// The kinds of batch ops.
const (
	OpPut OpKind = iota + 1
	OpDelete
	OpCompareAndSwap
	OpAppend
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpCompareAndSwap:
		return "compare-and-swap"
	case OpAppend:
		return "append"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// OpResult is one op's result within a successful Batch. Fields that do
// not apply to Kind are zero.
type OpResult struct {
	Kind OpKind
	// Version is the key's new version (Put, CompareAndSwap, Append); 0
	// for a compare-and-swap that deleted the key.
	Version Version
	// PrevVersion is the key's version before the op (Put, Delete).
	PrevVersion Version
	// Deleted says whether a Delete found the key.
	Deleted bool
	// Length is the value's length after an Append.
	Length uint64
}

func opResultOf(r *kvpb.BatchResult) OpResult {
	switch x := r.GetResult().(type) {
	case *kvpb.BatchResult_Put:
		return OpResult{Kind: OpPut, Version: Version(x.Put.GetVersion()), PrevVersion: Version(x.Put.GetPrevVersion())}
	case *kvpb.BatchResult_Delete:
		return OpResult{Kind: OpDelete, Deleted: x.Delete.GetDeleted(), PrevVersion: Version(x.Delete.GetPrevVersion())}
	case *kvpb.BatchResult_CompareAndSwap:
		return OpResult{Kind: OpCompareAndSwap, Version: Version(x.CompareAndSwap.GetVersion())}
	case *kvpb.BatchResult_Append:
		return OpResult{Kind: OpAppend, Version: Version(x.Append.GetVersion()), Length: x.Append.GetLength()}
	}
	return OpResult{}
}

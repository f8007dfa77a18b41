package rafttest

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cairnkv/cairn/raft"
)

// chainHash folds entry e into h, the hash of the log prefix before e. Two
// logs whose chain hashes agree at an index hold, with overwhelming
// probability, identical entries at every index up to it. That turns the
// log matching and state machine safety properties, which speak of whole
// prefixes, into one comparison of two numbers.
//
// The hash is FNV-1a (64 bit), written out so that it is the same in every
// process: traces that print it can be compared across runs.
func chainHash(h uint64, e *raft.Entry) uint64 {
	const prime = 1099511628211
	mix := func(h, v uint64) uint64 {
		for range 8 {
			h ^= v & 0xff
			h *= prime
			v >>= 8
		}
		return h
	}
	h = mix(h, uint64(e.Index))
	h = mix(h, uint64(e.Term))
	h = mix(h, uint64(e.Type))
	h = mix(h, uint64(len(e.Data)))
	for _, b := range e.Data {
		h ^= uint64(b)
		h *= prime
	}
	return h
}

// emptyChain is the chain hash of the empty prefix (index 0), which every
// log shares.
const emptyChain uint64 = 14695981039346656037

// StateMachine is the simulator's application: it applies every committed
// entry in order and remembers enough to check the state machine safety
// property (§5.4.3) and to answer "was this value committed?".
//
// A snapshot of it is a copy; Values shares its backing array with the
// original, which is safe because Values is only ever appended to and a
// snapshot's copy is clipped (its next append reallocates).
type StateMachine struct {
	// Applied is the index of the last entry applied, AppliedTerm its term.
	Applied     raft.Index
	AppliedTerm raft.Term
	// Chain is the chain hash of the applied prefix [1, Applied].
	Chain uint64
	// Conf is the configuration of the last applied EntryConfChange.
	Conf raft.ConfState
	// Values holds every applied EntryNormal, in log order.
	Values []Value
}

// Value is one applied EntryNormal.
type Value struct {
	Index raft.Index
	Term  raft.Term
	Data  []byte
}

// valueAt returns the data of the EntryNormal applied at index i.
func (sm *StateMachine) valueAt(i raft.Index) ([]byte, bool) {
	k, ok := slices.BinarySearchFunc(sm.Values, i, func(v Value, i raft.Index) int { return cmp.Compare(v.Index, i) })
	if !ok {
		return nil, false
	}
	return sm.Values[k].Data, true
}

func newStateMachine() *StateMachine {
	return &StateMachine{Chain: emptyChain}
}

// apply applies e, which must be the entry right after Applied.
func (sm *StateMachine) apply(e *raft.Entry) error {
	if e.Index != sm.Applied+1 {
		return fmt.Errorf("applied entry %d/%d out of order: state machine is at %d", e.Term, e.Index, sm.Applied)
	}
	switch e.Type {
	case raft.EntryNormal:
		sm.Values = append(sm.Values, Value{Index: e.Index, Term: e.Term, Data: e.Data})
	case raft.EntryConfChange:
		cs, err := raft.UnmarshalConfState(e.Data)
		if err != nil {
			return fmt.Errorf("applied entry %d/%d: %w", e.Term, e.Index, err)
		}
		sm.Conf = cs
	}
	sm.Applied = e.Index
	sm.AppliedTerm = e.Term
	sm.Chain = chainHash(sm.Chain, e)
	return nil
}

// snapshot returns a copy of the state machine that later applies to sm
// do not change.
func (sm *StateMachine) snapshot() *StateMachine {
	c := *sm
	c.Values = c.Values[:len(c.Values):len(c.Values)]
	return &c
}

// The state machine's snapshot file format, as the WAL mode stores it in a
// snap.Store (which adds its own header, checksum and trailer):
//
//	+---------+---------+-------------+-------+-----------+------+----------+-----
//	| version | applied | appliedTerm | chain | conf len  | conf | values n | ...
//	| 1 byte  | uvarint | uvarint     | 8 LE  | uvarint   |      | uvarint  |
//	+---------+---------+-------------+-------+-----------+------+----------+-----
//	each value: index uvarint | term uvarint | len uvarint | data
const smFormatVersion = 1

// encode appends sm's snapshot encoding to b.
func (sm *StateMachine) encode(b []byte) []byte {
	b = append(b, smFormatVersion)
	b = binary.AppendUvarint(b, uint64(sm.Applied))
	b = binary.AppendUvarint(b, uint64(sm.AppliedTerm))
	b = binary.LittleEndian.AppendUint64(b, sm.Chain)
	conf := sm.Conf.Marshal()
	b = binary.AppendUvarint(b, uint64(len(conf)))
	b = append(b, conf...)
	b = binary.AppendUvarint(b, uint64(len(sm.Values)))
	for _, v := range sm.Values {
		b = binary.AppendUvarint(b, uint64(v.Index))
		b = binary.AppendUvarint(b, uint64(v.Term))
		b = binary.AppendUvarint(b, uint64(len(v.Data)))
		b = append(b, v.Data...)
	}
	return b
}

// errBadStateMachine is returned by decodeStateMachine for bytes that
// encode did not produce.
var errBadStateMachine = errors.New("rafttest: malformed state machine snapshot")

// decodeStateMachine decodes what encode produced.
func decodeStateMachine(b []byte) (*StateMachine, error) {
	bad := func(what string) (*StateMachine, error) {
		return nil, fmt.Errorf("%w: %s", errBadStateMachine, what)
	}
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytesN := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		d := b[:n:n]
		b = b[n:]
		return d, true
	}
	if len(b) == 0 || b[0] != smFormatVersion {
		return bad("bad version")
	}
	b = b[1:]
	sm := &StateMachine{}
	applied, ok1 := uv()
	term, ok2 := uv()
	if !ok1 || !ok2 || len(b) < 8 {
		return bad("truncated header")
	}
	sm.Applied, sm.AppliedTerm = raft.Index(applied), raft.Term(term)
	sm.Chain = binary.LittleEndian.Uint64(b)
	b = b[8:]
	conf, ok := bytesN()
	if !ok {
		return bad("truncated configuration")
	}
	if len(conf) > 0 {
		cs, err := raft.UnmarshalConfState(conf)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errBadStateMachine, err)
		}
		sm.Conf = cs
	}
	n, ok := uv()
	if !ok || n > uint64(len(b)) {
		return bad("bad value count")
	}
	sm.Values = make([]Value, 0, n)
	for range n {
		idx, ok1 := uv()
		t, ok2 := uv()
		data, ok3 := bytesN()
		if !ok1 || !ok2 || !ok3 {
			return bad("truncated value")
		}
		sm.Values = append(sm.Values, Value{Index: raft.Index(idx), Term: raft.Term(t), Data: data})
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return sm, nil
}

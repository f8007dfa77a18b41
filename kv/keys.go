package kv

import (
	"encoding/binary"
)

// The engine's key space. Every engine key starts with a one-byte prefix
// that says what it holds (do not change; add a prefix instead):
//
//	0x01 'r' 'e' 's' ...      restoring marker   (only while Restore runs)
//	'd' | user key             data               8-byte BE version | value
//	'm' | "meta"               Meta               protobuf
//	'r' | session BE8 | seq BE8  cached result    protobuf Result
//	's' | session BE8          SessionRecord      protobuf
//
// The prefixes sort as 0x01 < 'd' < 'm' < 'r' < 's', and every key the state
// machine keeps lies in [keyspaceStart, keyspaceEnd), which Restore wipes.
const (
	prefixRestoring byte = 0x01
	prefixData      byte = 'd'
	prefixMeta      byte = 'm'
	prefixResult    byte = 'r'
	prefixSession   byte = 's'
)

var (
	// restoringKey marks an engine whose contents are being replaced; an
	// engine opened with it set is wiped (see Open).
	restoringKey = []byte{prefixRestoring, 'r', 'e', 's', 't', 'o', 'r', 'i', 'n', 'g'}
	metaKey      = []byte{prefixMeta, 'm', 'e', 't', 'a'}

	// keyspaceStart and keyspaceEnd bound everything but the restoring marker.
	keyspaceStart = []byte{prefixRestoring + 1}
	keyspaceEnd   = []byte{0xff}
)

// validEngineKey reports whether k may appear in a snapshot stream.
func validEngineKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	switch k[0] {
	case prefixData:
		return len(k) > 1
	case prefixMeta:
		return string(k) == string(metaKey)
	case prefixResult:
		return len(k) == 17
	case prefixSession:
		return len(k) == 9
	}
	return false
}

func dataKey(userKey []byte) []byte {
	k := make([]byte, 1+len(userKey))
	k[0] = prefixData
	copy(k[1:], userKey)
	return k
}

// dataUpperBound is the exclusive upper bound of every data key.
var dataUpperBound = []byte{prefixData + 1}

func sessionKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixSession
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func resultKey(id, seq uint64) []byte {
	k := make([]byte, 17)
	k[0] = prefixResult
	binary.BigEndian.PutUint64(k[1:], id)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

// resultSpan returns the bounds of session id's results with seq in
// [from, to); to == 0 means no upper bound on seq.
func resultSpan(id, from, to uint64) (lo, hi []byte) {
	lo = resultKey(id, from)
	if to != 0 {
		return lo, resultKey(id, to)
	}
	if id == ^uint64(0) {
		return lo, []byte{prefixResult + 1}
	}
	return lo, resultKey(id+1, 0)
}

// Data records: the key's version (the index of the entry that wrote it)
// then the value.
//
//	+----------------+-----------------+
//	| version BE8    | value           |
//	+----------------+-----------------+
func encodeData(version uint64, value []byte) []byte {
	b := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(b, version)
	copy(b[8:], value)
	return b
}

// decodeData splits a data record; ok is false for a corrupt one.
func decodeData(b []byte) (version uint64, value []byte, ok bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(b), b[8:], true
}

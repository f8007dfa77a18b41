package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/cairnkv/cairn/raft"
)

// The on-disk format of a segment. Do not change any of it: a new format
// gets a new segmentVersion, and the reader keeps reading the old one.
//
// A segment is a file named "%016x-%016x.wal" (sequence number, first
// index), preallocated to Options.SegmentSize bytes of zeros, starting
// with a header:
//
//	 0        8        12       16                24               32       36      40
//	 +--------+--------+--------+-----------------+----------------+--------+-------+
//	 | magic  | version| zero   | sequence number | first index    | CRC32C | zero  |
//	 | 8 B    | u32    | u32    | u64             | u64            | u32    | u32   |
//	 +--------+--------+--------+-----------------+----------------+--------+-------+
//	magic "cairnWAL"; CRC32C (Castagnoli) of bytes [0, 32); the zero fields
//	must be zero. Little-endian.
//
// The first index is the log's last index + 1 when the segment was made:
// the index the segment's first appended entry would have. Records follow,
// back to back, then zeros to the end of the file:
//
//	 0        4        8      9                    9+n      13+n   14+n
//	 +--------+--------+------+====================+--------+------+
//	 | hcrc   | n      | kind | payload (n bytes)  | dcrc   | 0xC5 |
//	 | u32    | u32    | u8   |                    | u32    | u8   |
//	 +--------+--------+------+====================+--------+------+
//	hcrc = CRC32C(n ‖ kind)          protects the length before it is used
//	dcrc = CRC32C(payload) seeded with hcrc, so it binds the whole frame
//	0xC5 = end marker: a complete frame never ends in a zero byte
//
// The kind's high bit (kindBatchEnd) marks the last record of a batch: one
// Save, one Compact, or a segment's opening checkpoint. Replay applies a
// batch only once it has read its last record, so each batch is atomic.
//
// Payloads, all integers little-endian u64 unless marked; every payload
// starts with a uvarint group ID, 0 in a log of one Raft group (a log shared
// by many groups will name each record's group here):
//
//	kindEntry       group | term | index | type u8 | data (rest)
//	kindHardState   group | term | vote | commit
//	kindSnapshot    group | index | term | conf (rest)           the log is replaced by a snapshot
//	kindCompact     group | to | toTerm | index | term | conf     snapshot recorded, entries <= to dropped
//	kindTruncate    group | after                                 entries > after dropped
//	kindCheckpoint  group | prevIndex | prevTerm | compacted | compactedTerm |
//	                hs term | hs vote | hs commit | snap index | snap term | snap conf (rest)
//
// conf is raft.ConfState.Marshal's encoding. A checkpoint opens every
// segment, so that replay can start at any segment without the older ones.
const (
	segmentMagic      = "cairnWAL"
	segmentVersion    = 1
	segmentHeaderSize = 40

	frameHeaderSize  = 9
	frameTrailerSize = 5
	frameOverhead    = frameHeaderSize + frameTrailerSize
	frameEndMarker   = 0xC5

	kindBatchEnd = 0x80
	kindMask     = 0x7f

	// maxPayload bounds one record: 1 GiB. A longer one is refused by Save
	// and, read back, is corruption.
	maxPayload = 1 << 30
)

// recordKind says what a record holds. Do not renumber.
type recordKind uint8

const (
	kindEntry      recordKind = 1
	kindHardState  recordKind = 2
	kindSnapshot   recordKind = 3
	kindCompact    recordKind = 4
	kindTruncate   recordKind = 5
	kindCheckpoint recordKind = 6
)

func (k recordKind) String() string {
	switch k {
	case kindEntry:
		return "entry"
	case kindHardState:
		return "hardstate"
	case kindSnapshot:
		return "snapshot"
	case kindCompact:
		return "compact"
	case kindTruncate:
		return "truncate"
	case kindCheckpoint:
		return "checkpoint"
	}
	return fmt.Sprintf("recordKind(%d)", uint8(k))
}

func (k recordKind) valid() bool { return k >= kindEntry && k <= kindCheckpoint }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// --- segment header ----------------------------------------------------------

type segmentHeader struct {
	seq   uint64
	first raft.Index
}

func (h segmentHeader) encode() []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], segmentVersion)
	binary.LittleEndian.PutUint64(b[16:], h.seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.first))
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], crcTable))
	return b
}

// decodeSegmentHeader returns the header at the start of b, or a reason it
// is not one.
func decodeSegmentHeader(b []byte) (segmentHeader, string) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Sprintf("file of %d bytes is shorter than a header", len(b))
	}
	if string(b[:8]) != segmentMagic {
		return segmentHeader{}, "bad magic"
	}
	if got, want := binary.LittleEndian.Uint32(b[32:]), crc32.Checksum(b[:32], crcTable); got != want {
		return segmentHeader{}, fmt.Sprintf("header checksum %#08x, want %#08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != segmentVersion {
		return segmentHeader{}, fmt.Sprintf("unknown version %d", v)
	}
	if binary.LittleEndian.Uint32(b[12:]) != 0 || binary.LittleEndian.Uint32(b[36:]) != 0 {
		return segmentHeader{}, "reserved bytes are not zero"
	}
	return segmentHeader{
		seq:   binary.LittleEndian.Uint64(b[16:]),
		first: raft.Index(binary.LittleEndian.Uint64(b[24:])),
	}, ""
}

// --- frames ------------------------------------------------------------------

// appendFrame appends a record of the given kind whose payload is built by
// fill (which appends to its argument and returns it).
func appendFrame(b []byte, kind recordKind, end bool, fill func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeaderSize)...)
	b = fill(b)
	n := len(b) - start - frameHeaderSize
	k := uint8(kind)
	if end {
		k |= kindBatchEnd
	}
	binary.LittleEndian.PutUint32(b[start+4:], uint32(n))
	b[start+8] = k
	hcrc := crc32.Checksum(b[start+4:start+9], crcTable)
	binary.LittleEndian.PutUint32(b[start:], hcrc)
	dcrc := crc32.Update(hcrc, crcTable, b[start+frameHeaderSize:])
	b = binary.LittleEndian.AppendUint32(b, dcrc)
	return append(b, frameEndMarker)
}

// frame is one decoded frame: where it is and what it holds.
type frame struct {
	off      int64
	kind     recordKind
	batchEnd bool
	payload  []byte
}

// frameStatus is how decodeFrame judged the bytes at an offset.
type frameStatus uint8

const (
	frameOK frameStatus = iota
	// frameBad: the bytes are not a valid frame. end says where the frame
	// the header describes would end (just past the header when the header
	// itself is bad), which the caller needs to tell a torn write from
	// corruption.
	frameBad
)

// decodeFrame decodes the frame at b[off:]. It never panics: on any bad
// input it returns frameBad with a reason.
func decodeFrame(b []byte, off int64) (fr frame, status frameStatus, end int64, reason string) {
	if off < 0 || off > int64(len(b)) {
		return frame{}, frameBad, off, "offset outside the file"
	}
	rest := b[off:]
	if len(rest) < frameHeaderSize {
		return frame{}, frameBad, off + frameHeaderSize, "frame header cut off by the end of the file"
	}
	hcrc := binary.LittleEndian.Uint32(rest)
	if got := crc32.Checksum(rest[4:9], crcTable); got != hcrc {
		return frame{}, frameBad, off + frameHeaderSize, fmt.Sprintf("frame header checksum %#08x, want %#08x", hcrc, got)
	}
	n := int64(binary.LittleEndian.Uint32(rest[4:]))
	k := rest[8]
	kind := recordKind(k & kindMask)
	if !kind.valid() {
		return frame{}, frameBad, off + frameHeaderSize, fmt.Sprintf("unknown record kind %d", k&kindMask)
	}
	if n > maxPayload {
		return frame{}, frameBad, off + frameHeaderSize, fmt.Sprintf("record length %d exceeds the limit %d", n, maxPayload)
	}
	end = off + frameOverhead + n
	if int64(len(rest)) < frameOverhead+n {
		return frame{}, frameBad, end, fmt.Sprintf("record of %d bytes cut off by the end of the file", n)
	}
	payload := rest[frameHeaderSize : frameHeaderSize+n]
	dcrc := binary.LittleEndian.Uint32(rest[frameHeaderSize+n:])
	if got := crc32.Update(hcrc, crcTable, payload); got != dcrc {
		return frame{}, frameBad, end, fmt.Sprintf("record checksum %#08x, want %#08x", dcrc, got)
	}
	if rest[frameHeaderSize+n+4] != frameEndMarker {
		return frame{}, frameBad, end, fmt.Sprintf("end marker %#02x, want %#02x", rest[frameHeaderSize+n+4], frameEndMarker)
	}
	return frame{off: off, kind: kind, batchEnd: k&kindBatchEnd != 0, payload: payload}, frameOK, end, ""
}

// --- payloads ----------------------------------------------------------------

// record is a decoded payload. Which fields mean something depends on kind.
type record struct {
	kind recordKind
	// off is where the record's frame starts in its segment (set by
	// scanSegment, for error messages).
	off int64

	entry raft.Entry     // kindEntry
	hs    raft.HardState // kindHardState, kindCheckpoint
	snap  raft.SnapshotMeta
	// to/toTerm: kindCompact's compaction point, kindTruncate's "after"
	// (to), kindCheckpoint's compacted point.
	to     raft.Index
	toTerm raft.Term
	// prev/prevTerm: kindCheckpoint's last index and its term.
	prev     raft.Index
	prevTerm raft.Term
}

// encodeRecord appends r as a frame.
func appendRecord(b []byte, r *record, end bool) []byte {
	return appendFrame(b, r.kind, end, func(b []byte) []byte {
		b = append(b, 0) // group 0, uvarint
		le := binary.LittleEndian
		switch r.kind {
		case kindEntry:
			b = le.AppendUint64(b, uint64(r.entry.Term))
			b = le.AppendUint64(b, uint64(r.entry.Index))
			b = append(b, uint8(r.entry.Type))
			b = append(b, r.entry.Data...)
		case kindHardState:
			b = appendHardState(b, r.hs)
		case kindSnapshot:
			b = appendMeta(b, r.snap)
		case kindCompact:
			b = le.AppendUint64(b, uint64(r.to))
			b = le.AppendUint64(b, uint64(r.toTerm))
			b = appendMeta(b, r.snap)
		case kindTruncate:
			b = le.AppendUint64(b, uint64(r.to))
		case kindCheckpoint:
			b = le.AppendUint64(b, uint64(r.prev))
			b = le.AppendUint64(b, uint64(r.prevTerm))
			b = le.AppendUint64(b, uint64(r.to))
			b = le.AppendUint64(b, uint64(r.toTerm))
			b = appendHardState(b, r.hs)
			b = appendMeta(b, r.snap)
		default:
			panic(fmt.Sprintf("wal: encoding unknown record kind %v", r.kind))
		}
		return b
	})
}

func appendHardState(b []byte, hs raft.HardState) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(hs.Term))
	b = binary.LittleEndian.AppendUint64(b, uint64(hs.Vote))
	return binary.LittleEndian.AppendUint64(b, uint64(hs.Commit))
}

func appendMeta(b []byte, m raft.SnapshotMeta) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Index))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Term))
	if len(m.ConfState.Voters) == 0 {
		return b // an empty configuration is stored as nothing
	}
	return append(b, m.ConfState.Marshal()...)
}

// payloadReader decodes fixed fields, remembering the first failure.
type payloadReader struct {
	b   []byte
	bad bool
}

func (p *payloadReader) u64() uint64 {
	if len(p.b) < 8 {
		p.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint64(p.b)
	p.b = p.b[8:]
	return v
}

func (p *payloadReader) u8() uint8 {
	if len(p.b) < 1 {
		p.bad = true
		return 0
	}
	v := p.b[0]
	p.b = p.b[1:]
	return v
}

func (p *payloadReader) hardState() raft.HardState {
	return raft.HardState{Term: raft.Term(p.u64()), Vote: raft.NodeID(p.u64()), Commit: raft.Index(p.u64())}
}

// meta reads a SnapshotMeta whose ConfState is the rest of the payload.
func (p *payloadReader) meta() (raft.SnapshotMeta, error) {
	m := raft.SnapshotMeta{Index: raft.Index(p.u64()), Term: raft.Term(p.u64())}
	if p.bad || len(p.b) == 0 {
		return m, nil
	}
	cs, err := raft.UnmarshalConfState(p.b)
	if err != nil {
		return m, err
	}
	p.b = nil
	m.ConfState = cs
	return m, nil
}

// decodeRecord decodes a frame's payload. The returned entry's Data
// aliases fr.payload. It never panics.
func decodeRecord(fr frame) (record, error) {
	group, k := binary.Uvarint(fr.payload)
	if k <= 0 {
		return record{}, fmt.Errorf("%v record: bad group id", fr.kind)
	}
	if group != 0 {
		return record{}, fmt.Errorf("%v record for group %d in a single-group log", fr.kind, group)
	}
	p := payloadReader{b: fr.payload[k:]}
	r := record{kind: fr.kind}
	var err error
	switch fr.kind {
	case kindEntry:
		r.entry.Term = raft.Term(p.u64())
		r.entry.Index = raft.Index(p.u64())
		r.entry.Type = raft.EntryType(p.u8())
		if !p.bad && len(p.b) > 0 {
			r.entry.Data = p.b
		}
		p.b = nil
	case kindHardState:
		r.hs = p.hardState()
	case kindSnapshot:
		r.snap, err = p.meta()
	case kindCompact:
		r.to = raft.Index(p.u64())
		r.toTerm = raft.Term(p.u64())
		r.snap, err = p.meta()
	case kindTruncate:
		r.to = raft.Index(p.u64())
	case kindCheckpoint:
		r.prev = raft.Index(p.u64())
		r.prevTerm = raft.Term(p.u64())
		r.to = raft.Index(p.u64())
		r.toTerm = raft.Term(p.u64())
		r.hs = p.hardState()
		r.snap, err = p.meta()
	default:
		return record{}, fmt.Errorf("unknown record kind %d", fr.kind)
	}
	if err != nil {
		return record{}, fmt.Errorf("%v record: %w", fr.kind, err)
	}
	if p.bad {
		return record{}, fmt.Errorf("%v record: payload of %d bytes too short", fr.kind, len(fr.payload))
	}
	if len(p.b) != 0 {
		return record{}, fmt.Errorf("%v record: %d trailing bytes", fr.kind, len(p.b))
	}
	return r, nil
}

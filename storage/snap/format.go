package snap

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/cairnkv/cairn/raft"
)

// The on-disk format of a snapshot file. Do not change it: a new format
// gets a new version, and the reader keeps reading the old one.
//
// The file is named "%016x-%016x.snap" (index, term), so that names sort
// by index, and is written as "<name>.<n>.tmp" first.
//
//	 0        8        12       16                   16+m     20+m
//	 +--------+--------+--------+====================+--------+
//	 | magic  | version| m      | meta (m bytes)     | hcrc   |  header
//	 | 8 B    | u32    | u32    |                    | u32    |
//	 +--------+--------+--------+====================+--------+
//	 | data: whatever the state machine wrote, any length      |
//	 +--------------------+--------+--------+
//	 | data length        | dcrc   | magic2 |                     trailer
//	 | u64                | u32    | 8 B    |
//	 +--------------------+--------+--------+
//	magic "cairnSNP", magic2 "cairnEND"; little-endian.
//	meta  = index u64 | term u64 | conf (raft.ConfState.Marshal, the rest)
//	hcrc  = CRC32C (Castagnoli) of the header bytes before it
//	dcrc  = CRC32C of the data, seeded with hcrc
const (
	headerMagic   = "cairnSNP"
	trailerMagic  = "cairnEND"
	formatVersion = 1

	headerFixed  = 16 // magic, version, m
	trailerSize  = 20
	maxMetaBytes = 1 << 20

	fileSuffix = ".snap"
	tempSuffix = ".tmp"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// fileName is the final name of the snapshot meta describes.
func fileName(index raft.Index, term raft.Term) string {
	return fmt.Sprintf("%016x-%016x%s", uint64(index), uint64(term), fileSuffix)
}

// parseFileName parses what fileName makes.
func parseFileName(name string) (raft.Index, raft.Term, bool) {
	base, ok := strings.CutSuffix(name, fileSuffix)
	if !ok || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	var i, t uint64
	if n, err := fmt.Sscanf(base, "%016x-%016x", &i, &t); n != 2 || err != nil {
		return 0, 0, false
	}
	if fileName(raft.Index(i), raft.Term(t)) != name {
		return 0, 0, false
	}
	return raft.Index(i), raft.Term(t), true
}

// encodeHeader returns the header for meta.
func encodeHeader(meta raft.SnapshotMeta) []byte {
	var m []byte
	m = binary.LittleEndian.AppendUint64(m, uint64(meta.Index))
	m = binary.LittleEndian.AppendUint64(m, uint64(meta.Term))
	if len(meta.ConfState.Voters) > 0 {
		m = append(m, meta.ConfState.Marshal()...)
	}
	b := make([]byte, 0, headerFixed+len(m)+4)
	b = append(b, headerMagic...)
	b = binary.LittleEndian.AppendUint32(b, formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
	b = append(b, m...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeMeta decodes the meta bytes of a header.
func decodeMeta(m []byte) (raft.SnapshotMeta, error) {
	if len(m) < 16 {
		return raft.SnapshotMeta{}, fmt.Errorf("metadata of %d bytes is too short", len(m))
	}
	meta := raft.SnapshotMeta{
		Index: raft.Index(binary.LittleEndian.Uint64(m)),
		Term:  raft.Term(binary.LittleEndian.Uint64(m[8:])),
	}
	if len(m) > 16 {
		cs, err := raft.UnmarshalConfState(m[16:])
		if err != nil {
			return raft.SnapshotMeta{}, err
		}
		meta.ConfState = cs
	}
	return meta, nil
}

func encodeTrailer(n uint64, dcrc uint32) []byte {
	b := make([]byte, 0, trailerSize)
	b = binary.LittleEndian.AppendUint64(b, n)
	b = binary.LittleEndian.AppendUint32(b, dcrc)
	return append(b, trailerMagic...)
}

package wal

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cairnkv/cairn/raft"
)

const (
	segmentSuffix = ".wal"
	tempSuffix    = ".tmp"
)

// segmentName is a segment's file name: sequence number and first index,
// so that both are known without opening it.
func segmentName(seq uint64, first raft.Index) string {
	return fmt.Sprintf("%016x-%016x%s", seq, uint64(first), segmentSuffix)
}

// parseSegmentName parses what segmentName makes.
func parseSegmentName(name string) (seq uint64, first raft.Index, ok bool) {
	base, found := strings.CutSuffix(name, segmentSuffix)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	var f uint64
	if n, err := fmt.Sscanf(base, "%016x-%016x", &seq, &f); n != 2 || err != nil {
		return 0, 0, false
	}
	if segmentName(seq, raft.Index(f)) != name {
		return 0, 0, false
	}
	return seq, raft.Index(f), true
}

// segment is a live segment file.
type segment struct {
	seq   uint64
	first raft.Index
	path  string
	// dataStart is where the first batch after the opening checkpoint
	// goes (known only for segments this process created).
	dataStart int64
}

// scanned is what reading one segment found.
type scanned struct {
	hdr segmentHeader
	// batches are the complete batches, in order. Records alias the buffer.
	batches [][]record
	// end is the offset just past the last complete batch: where the next
	// batch goes.
	end int64
	// dirty is the offset past the last non-zero byte of the file, or end
	// if that is larger. Bytes in [end, dirty) are a torn tail to erase.
	dirty int64
	// tornReason says why the bytes at end were not a batch, if dirty > end.
	tornReason string
}

// scanSegment reads the segment held in buf. last says whether it is the
// newest segment, the only one whose tail may be torn by a crash.
//
// Recovery rule. Let z be the offset just past the last non-zero byte. When
// the bytes at offset off are not a valid frame, and the frame they
// describe would end at end (just past the header, if the header itself is
// bad):
//
//   - z <= off: the log ends cleanly at off (all zeros from there).
//   - off < z < end: a torn write. The bytes stop inside this frame and
//     everything after is zero: a crash cut a write short. The writes of a
//     batch go out in order, and the batch was not yet acknowledged (its
//     sync had not returned), so it is dropped: allowed in the last segment
//     only. Complete frames never end in a zero byte (the end marker), so
//     a complete frame with a flipped bit is never mistaken for a torn one.
//   - z >= end: a complete frame with a bad checksum, or non-zero bytes
//     after a bad header: corruption, reported with the file and offset.
//
// A batch whose last record is missing at the end of the last segment is
// dropped like a torn write; anywhere else it is corruption.
func scanSegment(path string, buf []byte, last bool) (scanned, error) {
	hdr, reason := decodeSegmentHeader(buf)
	if reason != "" {
		return scanned{}, corrupt(path, 0, "bad segment header: %s", reason)
	}
	sc := scanned{hdr: hdr}
	off := int64(segmentHeaderSize)
	batchStart := off
	var batch []record
	z := int64(-1)
	for off < int64(len(buf)) {
		fr, status, end, why := decodeFrame(buf, off)
		if status == frameOK {
			r, err := decodeRecord(fr)
			if err != nil {
				return scanned{}, corrupt(path, off, "%v", err)
			}
			r.off = off
			batch = append(batch, r)
			off = end
			if fr.batchEnd {
				sc.batches = append(sc.batches, batch)
				batch = nil
				batchStart = off
			}
			continue
		}
		if z < 0 {
			z = nonZeroEnd(buf)
		}
		if z <= off {
			break // clean end
		}
		if z < end && last {
			sc.tornReason = fmt.Sprintf("torn write at offset %d: %s", off, why)
			break
		}
		if z < end {
			return scanned{}, corrupt(path, off, "torn record in a sealed segment: %s", why)
		}
		return scanned{}, corrupt(path, off, "%s", why)
	}
	if len(batch) > 0 {
		if !last {
			return scanned{}, corrupt(path, batchStart, "incomplete batch at the end of a sealed segment")
		}
		if sc.tornReason == "" {
			sc.tornReason = fmt.Sprintf("incomplete batch at offset %d", batchStart)
		}
	}
	sc.end = batchStart
	if z < 0 {
		z = nonZeroEnd(buf)
	}
	sc.dirty = max(z, sc.end)
	return sc, nil
}

// nonZeroEnd returns the offset just past the last non-zero byte of b.
func nonZeroEnd(b []byte) int64 {
	i := len(b)
	for i >= 8 && binary.LittleEndian.Uint64(b[i-8:i]) == 0 {
		i -= 8
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}

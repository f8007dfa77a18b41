package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// FuzzScanSegment feeds arbitrary bytes to the segment reader, as the
// newest segment and as a sealed one: it must never panic, and whatever it
// accepts must decode to records that encode back to the same bytes.
func FuzzScanSegment(f *testing.F) {
	for _, seed := range fuzzSegmentSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, last := range []bool{false, true} {
			sc, err := scanSegment("fuzz.wal", data, last)
			if err != nil {
				if _, ok := isCorrupt(err); !ok {
					t.Fatalf("error is not a CorruptError: %v", err)
				}
				continue
			}
			if sc.end > int64(len(data)) || sc.end < segmentHeaderSize || sc.dirty < sc.end {
				t.Fatalf("end %d dirty %d for %d bytes", sc.end, sc.dirty, len(data))
			}
			var re []byte
			for _, batch := range sc.batches {
				for i := range batch {
					re = appendRecord(re, &batch[i], i == len(batch)-1)
				}
			}
			if !bytes.Equal(re, data[segmentHeaderSize:sc.end]) {
				t.Fatalf("accepted records do not re-encode to the bytes they came from")
			}
		}
	})
}

// FuzzDecodeRecord feeds arbitrary payloads to the record decoder.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		fr := appendRecord(nil, &r, true)
		f.Add(uint8(r.kind), fr[frameHeaderSize:len(fr)-frameTrailerSize])
	}
	f.Fuzz(func(t *testing.T, kind uint8, payload []byte) {
		k := recordKind(kind & kindMask)
		if !k.valid() {
			return
		}
		r, err := decodeRecord(frame{kind: k, payload: payload})
		if err != nil {
			return
		}
		fr := appendRecord(nil, &r, true)
		r2, err := decodeRecord(frame{kind: k, payload: fr[frameHeaderSize : len(fr)-frameTrailerSize]})
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if describeRecord(r) != describeRecord(r2) {
			t.Fatalf("round trip changed the record:\n%s\n%s", describeRecord(r), describeRecord(r2))
		}
	})
}

func describeRecord(r record) string {
	return fmt.Sprintf("%v %s %s %s to=%d/%d prev=%d/%d", r.kind, raft.DescribeEntry(r.entry),
		raft.DescribeHardState(r.hs), raft.DescribeSnapshot(r.snap), r.toTerm, r.to, r.prevTerm, r.prev)
}

func sampleRecords() []record {
	cs := raft.NewConfState(1, 2, 3)
	meta := raft.SnapshotMeta{Index: 7, Term: 2, ConfState: cs}
	return []record{
		{kind: kindEntry, entry: raft.Entry{Term: 3, Index: 9, Data: []byte("hello")}},
		{kind: kindEntry, entry: raft.Entry{Term: 3, Index: 10, Type: raft.EntryConfChange, Data: cs.Marshal()}},
		{kind: kindHardState, hs: raft.HardState{Term: 3, Vote: 2, Commit: 8}},
		{kind: kindSnapshot, snap: meta},
		{kind: kindCompact, to: 6, toTerm: 2, snap: meta},
		{kind: kindTruncate, to: 5},
		{kind: kindCheckpoint, prev: 10, prevTerm: 3, to: 6, toTerm: 2, hs: raft.HardState{Term: 3, Commit: 8}, snap: meta},
	}
}

// fuzzSegmentSeeds returns real segments: one written by a WAL, the same
// with a torn tail, and a short one.
func fuzzSegmentSeeds(tb testing.TB) [][]byte {
	m := vfs.NewMem(1)
	w, err := Open("/wal", memOpts(m, MinSegmentSize))
	if err != nil {
		tb.Fatal(err)
	}
	hs, ents := raft.BootstrapState(1, 2, 3)
	w.Save(hs, ents, nil, true)
	w.Save(raft.HardState{Term: 2, Vote: 1, Commit: 1}, []raft.Entry{{Term: 2, Index: 2, Data: []byte("x")}, {Term: 2, Index: 3}}, nil, true)
	w.Save(raft.HardState{}, []raft.Entry{{Term: 3, Index: 3, Data: []byte("replaced")}}, nil, true)
	w.Compact(raft.SnapshotMeta{Index: 2, Term: 2, ConfState: raft.NewConfState(1, 2, 3)}, 1)
	w.Close()
	names, _ := m.List("/wal")
	buf, _ := vfs.ReadFile(m, filepath.Join("/wal", names[0]))
	end := nonZeroEnd(buf)
	full := buf[:end+16]
	torn := bytes.Clone(full)
	copy(torn[end:], []byte{1, 2, 3})
	return [][]byte{full, torn, buf[:segmentHeaderSize+20]}
}

// TestWriteFuzzSeeds regenerates the seed corpora in testdata/fuzz when
// WAL_WRITE_FUZZ_SEEDS=1 (they are checked in; go test reads them).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("WAL_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set WAL_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, i int, args ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint8:
				fmt.Fprintf(&b, "byte(%q)\n", v)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range fuzzSegmentSeeds(t) {
		write("FuzzScanSegment", i, s)
	}
	for i, r := range sampleRecords() {
		fr := appendRecord(nil, &r, true)
		write("FuzzDecodeRecord", i, uint8(r.kind), fr[frameHeaderSize:len(fr)-frameTrailerSize])
	}
}

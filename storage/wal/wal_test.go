package wal

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	err := Options{SegmentSize: 10}.Validate()
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("SegmentSize 10: %v", err)
	}
	if _, err := Open(t.TempDir(), Options{SegmentSize: 10}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Open with bad options: %v", err)
	}
}

func TestSegmentNames(t *testing.T) {
	name := segmentName(3, 1234)
	if name != "0000000000000003-00000000000004d2.wal" {
		t.Fatalf("name %q", name)
	}
	seq, first, ok := parseSegmentName(name)
	if !ok || seq != 3 || first != 1234 {
		t.Fatalf("parse: %d %d %v", seq, first, ok)
	}
	for _, bad := range []string{"x.wal", "0000000000000003-00000000000004D2.wal", "0000000000000003_00000000000004d2.wal", name + ".tmp"} {
		if _, _, ok := parseSegmentName(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestEmptyAndBootstrap(t *testing.T) {
	fs := vfs.NewMem(1)
	w := mustOpen(t, "/wal", memOpts(fs, 0))
	ref := newRef()
	if got, want := describe(w), describe(ref); got != want {
		t.Fatalf("empty WAL:\n got %s\nwant %s", got, want)
	}
	hs, ents := raft.BootstrapState(1, 2, 3)
	for _, s := range []logStore{w, ref} {
		if err := s.Save(hs, ents, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	_, cs, _ := w.InitialState()
	if !cs.Equal(raft.NewConfState(1, 2, 3)) {
		t.Fatalf("conf %v", cs)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(hs, nil, nil, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	w = mustOpen(t, "/wal", memOpts(fs, 0))
	if got, want := describe(w), describe(ref); got != want {
		t.Fatalf("reopened:\n got %s\nwant %s", got, want)
	}
}

// TestAgainstReference runs random workloads on the WAL and on the
// reference (raft.MemoryStorage), under several segment sizes, reopening
// now and then, and requires identical answers after every step.
func TestAgainstReference(t *testing.T) {
	for _, segSize := range []int64{MinSegmentSize, 16 << 10, 1 << 20} {
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("seg=%d/seed=%d", segSize, seed), func(t *testing.T) {
				fs := vfs.NewMem(seed)
				opts := memOpts(fs, segSize)
				w := mustOpen(t, "/data/wal", opts)
				ref := newRef()
				g := newGen(seed)
				g.noSync = seed%2 == 1
				steps := []op{g.bootstrap()}
				for range 300 {
					steps = append(steps, g.next())
				}
				for i, o := range steps {
					if o.kind == "reopen" {
						if err := w.Close(); err != nil {
							t.Fatal(err)
						}
						w = mustOpen(t, "/data/wal", opts)
					} else {
						errW, errR := o.apply(w), o.apply(ref)
						if (errW == nil) != (errR == nil) {
							t.Fatalf("step %d %v: wal %v, reference %v", i, o, errW, errR)
						}
					}
					if got, want := describe(w), describe(ref); got != want {
						t.Fatalf("step %d %v:\n got %s\nwant %s", i, o, got, want)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				w = mustOpen(t, "/data/wal", opts)
				if got, want := describe(w), describe(ref); got != want {
					t.Fatalf("final reopen:\n got %s\nwant %s", got, want)
				}
				// Released segments keep the log bounded.
				if n := len(w.Segments()); n > 64 {
					t.Errorf("%d segments live", n)
				}
			})
		}
	}
}

func TestSaveRejectsBadInput(t *testing.T) {
	w := mustOpen(t, "/wal", memOpts(vfs.NewMem(1), 0))
	hs, ents := raft.BootstrapState(1)
	if err := w.Save(hs, ents, nil, true); err != nil {
		t.Fatal(err)
	}
	gap := []raft.Entry{{Term: 1, Index: 5}}
	if err := w.Save(raft.HardState{}, gap, nil, true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("gap: %v", err)
	}
	holes := []raft.Entry{{Term: 1, Index: 2}, {Term: 1, Index: 4}}
	if err := w.Save(raft.HardState{}, holes, nil, true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("holes: %v", err)
	}
	if err := w.Compact(raft.SnapshotMeta{Index: 9, Term: 1}, 9); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("compact beyond the log: %v", err)
	}
	if err := w.Compact(raft.SnapshotMeta{Index: 1, Term: 1}, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("compact beyond the snapshot: %v", err)
	}
	// Still usable.
	if err := w.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: 2}}, nil, true); err != nil {
		t.Fatal(err)
	}
}

// TestRestartReadsOnlyLiveSegments: compaction removes whole segments,
// and a restart reads only the segments the log still needs.
func TestRestartReadsOnlyLiveSegments(t *testing.T) {
	fs := vfs.NewMem(1)
	opts := memOpts(fs, MinSegmentSize)
	w := mustOpen(t, "/wal", opts)
	hs, ents := raft.BootstrapState(1)
	if err := w.Save(hs, ents, nil, true); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 500)
	for i := raft.Index(2); i <= 100; i++ {
		hs.Commit = i
		if err := w.Save(hs, []raft.Entry{{Term: 1, Index: i, Data: data}}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	before := len(w.Segments())
	if before < 10 {
		t.Fatalf("only %d segments", before)
	}
	if err := w.Compact(raft.SnapshotMeta{Index: 90, Term: 1, ConfState: raft.NewConfState(1)}, 90); err != nil {
		t.Fatal(err)
	}
	after := len(w.Segments())
	if after > 3 {
		t.Fatalf("%d segments after compacting to 90 (of %d)", after, before)
	}
	names, _ := fs.List("/wal")
	if len(names) != after {
		t.Fatalf("directory holds %v, WAL lists %d segments", names, after)
	}
	want := describe(w)
	w.Close()
	w = mustOpen(t, "/wal", opts)
	if got := describe(w); got != want {
		t.Fatalf("reopened:\n got %s\nwant %s", got, want)
	}
	if r := w.Recovery(); r.SegmentsRead != after {
		t.Fatalf("read %d segments, %d live", r.SegmentsRead, after)
	}
}

// TestLeftoverSegmentsSkipped: segments a crash left behind between a
// compaction and their removal are not read at restart, and are removed.
func TestLeftoverSegmentsSkipped(t *testing.T) {
	fs := vfs.NewMem(1)
	opts := memOpts(fs, MinSegmentSize)
	w := mustOpen(t, "/wal", opts)
	hs, ents := raft.BootstrapState(1)
	w.Save(hs, ents, nil, true)
	data := make([]byte, 500)
	for i := raft.Index(2); i <= 60; i++ {
		hs.Commit = i
		if err := w.Save(hs, []raft.Entry{{Term: 1, Index: i, Data: data}}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	// Fail every remove: the compaction is durable, the removal is not.
	fs.SetInjector(func(o vfs.Op) error {
		if o.Kind == vfs.OpRemove {
			return errors.New("injected")
		}
		return nil
	})
	segsBefore := len(w.Segments())
	err := w.Compact(raft.SnapshotMeta{Index: 55, Term: 1, ConfState: raft.NewConfState(1)}, 55)
	if !errors.Is(err, ErrIO) {
		t.Fatalf("Compact with failing removes: %v", err)
	}
	want := describe(w)
	fs.SetInjector(nil)
	w2 := mustOpen(t, "/wal", opts)
	if got := describe(w2); got != want {
		t.Fatalf("reopened:\n got %s\nwant %s", got, want)
	}
	r := w2.Recovery()
	if r.SegmentsRead >= segsBefore || len(w2.Segments()) != r.SegmentsRead {
		t.Fatalf("read %d of %d segments; %d live after open", r.SegmentsRead, segsBefore, len(w2.Segments()))
	}
	names, _ := fs.List("/wal")
	if len(names) != len(w2.Segments()) {
		t.Fatalf("leftovers not removed: %v", names)
	}
}

func TestTruncationAcrossSegments(t *testing.T) {
	fs := vfs.NewMem(1)
	opts := memOpts(fs, MinSegmentSize)
	w := mustOpen(t, "/wal", opts)
	ref := newRef()
	hs, ents := raft.BootstrapState(1, 2)
	for _, s := range []logStore{w, ref} {
		s.Save(hs, ents, nil, true)
	}
	data := make([]byte, 700)
	for i := raft.Index(2); i <= 30; i++ {
		for _, s := range []logStore{w, ref} {
			if err := s.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: i, Data: data}}, nil, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A new leader replaces everything after index 3, which lives in the
	// first segment, from the last one.
	hs = raft.HardState{Term: 2, Vote: 2, Commit: 1}
	repl := []raft.Entry{{Term: 2, Index: 4, Type: raft.EntryConfChange, Data: raft.NewConfState(1, 2, 3).Marshal()}, {Term: 2, Index: 5}}
	for _, s := range []logStore{w, ref} {
		if err := s.Save(hs, repl, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := describe(w), describe(ref); got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	w.Close()
	w = mustOpen(t, "/wal", opts)
	if got, want := describe(w), describe(ref); got != want {
		t.Fatalf("reopened:\n got %s\nwant %s", got, want)
	}
	_, cs, _ := w.InitialState()
	if !cs.Equal(raft.NewConfState(1, 2, 3)) {
		t.Fatalf("conf %v", cs)
	}
}

func TestEntriesLimits(t *testing.T) {
	w := mustOpen(t, "/wal", memOpts(vfs.NewMem(1), 0))
	hs, ents := raft.BootstrapState(1)
	w.Save(hs, ents, nil, true)
	for i := raft.Index(2); i <= 10; i++ {
		w.Save(raft.HardState{}, []raft.Entry{{Term: 1, Index: i, Data: make([]byte, 100)}}, nil, true)
	}
	got, err := w.Entries(2, 11, 250)
	if err != nil || len(got) != 2 {
		t.Fatalf("Entries with a limit: %d, %v", len(got), err)
	}
	got, err = w.Entries(2, 11, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("Entries with a zero limit: %d, %v", len(got), err)
	}
	if _, err := w.Entries(2, 12, math.MaxUint64); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("beyond the end: %v", err)
	}
	w.Save(raft.HardState{Term: 1, Commit: 10}, nil, nil, true)
	if err := w.Compact(raft.SnapshotMeta{Index: 5, Term: 1}, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Entries(5, 6, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("compacted: %v", err)
	}
	if _, err := w.Term(4); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term compacted: %v", err)
	}
	if tm, err := w.Term(5); err != nil || tm != 1 {
		t.Fatalf("Term(5) = %d, %v", tm, err)
	}
}

func TestOSFilesystem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "wal")
	opts := Options{SegmentSize: MinSegmentSize, Logger: quiet()}
	w := mustOpen(t, dir, opts)
	ref := newRef()
	g := newGen(1)
	steps := []op{g.bootstrap()}
	for range 200 {
		steps = append(steps, g.next())
	}
	for i, o := range steps {
		if o.kind == "reopen" {
			w.Close()
			w = mustOpen(t, dir, opts)
		} else if errW, errR := o.apply(w), o.apply(ref); (errW == nil) != (errR == nil) {
			t.Fatalf("step %d %v: wal %v, reference %v", i, o, errW, errR)
		}
		if got, want := describe(w), describe(ref); got != want {
			t.Fatalf("step %d %v:\n got %s\nwant %s", i, o, got, want)
		}
	}
	w.Close()
}

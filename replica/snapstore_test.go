package replica_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/snap"
	"github.com/cairnkv/cairn/storage/vfs"
)

func TestFileSnapshotStore(t *testing.T) {
	fs := vfs.NewMem(1)
	files, err := snap.Open("/snap", snap.Options{FS: fs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var store replica.SnapshotStore = replica.NewFileSnapshotStore(files)
	meta := func(i raft.Index) raft.SnapshotMeta {
		return raft.SnapshotMeta{Index: i, Term: 2, ConfState: raft.NewConfState(1, 2, 3)}
	}
	write := func(m raft.SnapshotMeta, data []byte) {
		t.Helper()
		sink, err := store.Create(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(m raft.SnapshotMeta) ([]byte, error) {
		rd, err := store.Open(m)
		if err != nil {
			return nil, err
		}
		defer rd.Close()
		return io.ReadAll(rd)
	}

	write(meta(10), []byte("ten"))
	write(meta(20), []byte("twenty"))
	if got, err := read(meta(10)); err != nil || string(got) != "ten" {
		t.Fatalf("read 10: %q, %v", got, err)
	}

	// A cancelled sink leaves nothing behind.
	sink, err := store.Create(meta(30))
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("partial"))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	_, err = read(meta(30))
	if !errors.Is(err, replica.ErrSnapshotNotFound) || !errors.Is(err, snap.ErrNotFound) {
		t.Fatalf("cancelled snapshot: %v, want not found", err)
	}

	if err := store.Prune(20); err != nil {
		t.Fatal(err)
	}
	if _, err := read(meta(10)); !errors.Is(err, replica.ErrSnapshotNotFound) {
		t.Fatalf("pruned snapshot: %v", err)
	}

	// Damage is reported by the read that reaches the end, not hidden.
	write(meta(40), bytes.Repeat([]byte("x"), 1000))
	for _, in := range files.List() {
		if in.Index == 40 {
			fs.FlipBit(in.Path, 100, 3)
		}
	}
	if _, err := read(meta(40)); !errors.Is(err, snap.ErrCorrupt) {
		t.Fatalf("damaged snapshot: %v, want ErrCorrupt", err)
	}
}

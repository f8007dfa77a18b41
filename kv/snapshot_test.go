package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// fill writes n keys of size-byte values, opens a session with cached
// results, and returns the session.
func fill(t *testing.T, l *testLog, n, size int, seed uint64) uint64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	s := l.open()
	for i := range n {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte('a' + rng.IntN(26))
		}
		l.ok(&kvpb.PutRequest{Key: fmt.Appendf(nil, "key-%06d", i), Value: v})
	}
	for seq := uint64(1); seq <= 5; seq++ {
		l.ok(appendReq(hdr(s, seq, 1), "session-log", fmt.Sprint(seq)))
	}
	return s
}

func snapshotBytes(t *testing.T, sm *StateMachine) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := sm.Snapshot(&buf); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	const chunk = 4 << 10
	src := openMem(t, nil, func(c *Config) { c.SnapshotChunkSize = chunk })
	defer src.Close()
	l := newLog(t, src)
	s := fill(t, l, 300, 1000, 1) // ~300 KB: many frames
	l.ok(&kvpb.Limits{MaxPendingPerSession: 77})

	// Streamed: many small writes, never the whole state at once.
	var sw sizeWriter
	if err := src.Snapshot(&sw); err != nil {
		t.Fatal(err)
	}
	if sw.writes < sw.total/(64<<10) || sw.max > 64<<10 {
		t.Fatalf("snapshot written in %d writes of at most %d bytes", sw.writes, sw.max)
	}
	data := snapshotBytes(t, src)
	if len(data) < 300*1000 || len(data) != sw.total {
		t.Fatalf("snapshot of %d bytes", len(data))
	}
	if len(data) < 300*1000 {
		t.Fatalf("snapshot of %d bytes", len(data))
	}
	frames := countFrames(t, data)
	if frames < 300*1000/chunk {
		t.Fatalf("%d frames for %d bytes at chunk %d", frames, len(data), chunk)
	}

	// The destination holds other state, which Restore must replace whole.
	dst := openMem(t, nil, func(c *Config) { c.SnapshotChunkSize = chunk })
	defer dst.Close()
	ld := newLog(t, dst)
	for i := range 50 {
		ld.put(fmt.Sprintf("stale-%d", i), "x")
		ld.put(fmt.Sprintf("key-%06d", i), "old")
	}
	ld.open()
	if err := dst.Restore(bytes.NewReader(data)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	equalDumps(t, "engine after restore", dump(t, src), dump(t, dst))
	if dst.AppliedIndex() != src.AppliedIndex() || dst.Limits() != src.Limits() {
		t.Fatalf("applied %d limits %+v, want %d %+v", dst.AppliedIndex(), dst.Limits(), src.AppliedIndex(), src.Limits())
	}
	if dst.sessions.len() != 1 || dst.sessions.get(s) == nil {
		t.Fatal("session not restored")
	}
	// A snapshot of the restored engine is byte-identical.
	if !bytes.Equal(snapshotBytes(t, dst), data) {
		t.Fatal("snapshot of the restored engine differs")
	}

	// Both go on identically: retries are still answered from the cache.
	l2 := newLog(t, dst)
	for _, lg := range []*testLog{l, l2} {
		r := lg.do(appendReq(hdr(s, 3, 1), "session-log", "3"))
		if !r.Duplicate {
			t.Fatalf("retry after restore re-executed: %+v", r)
		}
		lg.ok(appendReq(hdr(s, 6, 1), "session-log", "6"))
	}
	equalDumps(t, "engines after more entries", dump(t, src), dump(t, dst))
}

func countFrames(t *testing.T, data []byte) int {
	r := bytes.NewReader(data[len(snapshotMagic):])
	n := 0
	for {
		kind, _, err := readFrame(r, nil)
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		n++
		if kind == frameEnd {
			return n
		}
	}
}

func TestSnapshotEmpty(t *testing.T) {
	src := openMem(t, nil)
	defer src.Close()
	dst := openMem(t, nil)
	defer dst.Close()
	newLog(t, dst).put("a", "b")
	if err := dst.Restore(bytes.NewReader(snapshotBytes(t, src))); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != 0 || len(dump(t, dst)) != 0 || dst.Limits() != DefaultLimits {
		t.Fatalf("restored empty: applied %d, %v", dst.AppliedIndex(), dump(t, dst))
	}
}

// A corrupt or truncated stream fails Restore with ErrCorruptSnapshot and
// leaves an empty engine at index 0, never a mix.
func TestRestoreCorrupt(t *testing.T) {
	src := openMem(t, nil, func(c *Config) { c.SnapshotChunkSize = 1 << 10 })
	defer src.Close()
	fill(t, newLog(t, src), 50, 100, 2)
	good := snapshotBytes(t, src)

	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	cases := map[string][]byte{
		"bad magic":        flip(0),
		"flipped in frame": flip(len(good) / 2),
		"flipped at end":   flip(len(good) - 1),
		"truncated":        good[:len(good)-3],
		"cut at a frame":   good[:len(good)-17],
		"trailing data":    append(bytes.Clone(good), 0),
		"empty":            nil,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst := openMem(t, nil)
			defer dst.Close()
			newLog(t, dst).put("a", "b")
			err := dst.Restore(bytes.NewReader(data))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: %v, want ErrCorruptSnapshot", err)
			}
			if dst.AppliedIndex() != 0 || len(dump(t, dst)) != 0 {
				t.Fatalf("after a failed restore: applied %d, %d keys", dst.AppliedIndex(), len(dump(t, dst)))
			}
			// And it can be restored properly afterwards.
			if err := dst.Restore(bytes.NewReader(good)); err != nil {
				t.Fatal(err)
			}
			equalDumps(t, "after a good restore", dump(t, src), dump(t, dst))
		})
	}
}

// Restart: the engine keeps its data, applied index, sessions and limits.
func TestRestart(t *testing.T) {
	fs := vfs.NewMem()
	sm := openMem(t, fs)
	l := newLog(t, sm)
	s := fill(t, l, 20, 10, 3)
	l.ok(&kvpb.Limits{MaxSessions: 9})
	before := dump(t, sm)
	applied := sm.AppliedIndex()
	if err := sm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := sm.Apply(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}

	sm = openMem(t, fs)
	defer sm.Close()
	if sm.AppliedIndex() != applied || sm.Limits().MaxSessions != 9 {
		t.Fatalf("reopened at %d with %+v, want %d", sm.AppliedIndex(), sm.Limits(), applied)
	}
	equalDumps(t, "engine after restart", before, dump(t, sm))
	l.sm = sm
	if r := l.do(appendReq(hdr(s, 2, 1), "session-log", "2")); !r.Duplicate {
		t.Fatalf("retry after restart re-executed: %+v", r)
	}
	// Replayed entries at or below the applied index are skipped.
	e := raft.Entry{Term: 1, Index: 1, Data: []byte("garbage")}
	res, err := sm.Apply([]raft.Entry{e})
	if err != nil || res[0] != nil {
		t.Fatalf("replayed entry: %v %v", res, err)
	}
}

// A crash loses at most a suffix of whole Apply calls: the engine reopens
// at some earlier applied index with exactly the state of that index, and
// re-applying the log from there reaches the same state as never crashing.
func TestCrashRecovery(t *testing.T) {
	for seed := uint64(0); seed < 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			fs := vfs.NewCrashableMem()
			sm := openMem(t, fs)
			ref := openMem(t, nil)
			defer ref.Close()
			gen := newGen(seed)
			var entries []raft.Entry
			lg := newLog(t, sm)
			dumps := map[raft.Index][]string{0: nil}
			for range 30 {
				var batch []raft.Entry
				for range 1 + rng.IntN(5) {
					batch = append(batch, lg.entry(gen.next(lg.index+1)))
					lg.now = lg.now.Add(gen.tick())
				}
				if _, err := sm.Apply(batch); err != nil {
					t.Fatal(err)
				}
				if _, err := ref.Apply(batch); err != nil {
					t.Fatal(err)
				}
				entries = append(entries, batch...)
				dumps[ref.AppliedIndex()] = dump(t, ref)
				if rng.IntN(10) == 0 {
					if _, err := sm.Sync(); err != nil {
						t.Fatal(err)
					}
				}
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rng})
			_ = sm.Close()
			sm2 := openMem(t, crashed)
			defer sm2.Close()
			at := sm2.AppliedIndex()
			t.Logf("reopened at %d of %d", at, ref.AppliedIndex())
			want, ok := dumps[at]
			if !ok {
				t.Fatalf("reopened at %d, which no Apply call ended at", at)
			}
			equalDumps(t, fmt.Sprintf("engine reopened at %d", at), want, dump(t, sm2))
			if _, err := sm2.Apply(entries); err != nil {
				t.Fatal(err)
			}
			equalDumps(t, "engine after replay", dump(t, ref), dump(t, sm2))
		})
	}
}

// Sync makes what was applied survive a crash.
func TestSyncIsDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	sm := openMem(t, fs)
	l := newLog(t, sm)
	l.put("a", "1")
	idx, err := sm.Sync()
	if err != nil || idx != 1 {
		t.Fatalf("Sync = %d, %v", idx, err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = sm.Close()
	sm2 := openMem(t, crashed)
	defer sm2.Close()
	if sm2.AppliedIndex() != 1 {
		t.Fatalf("applied %d after crash, want 1", sm2.AppliedIndex())
	}
	if v, _, _ := get(t, sm2, "a"); v != "1" {
		t.Fatalf("a = %q", v)
	}
}

// crashingReader serves a snapshot and, partway through, takes a crash
// image of the destination's filesystem.
type crashingReader struct {
	r       io.Reader
	n, at   int
	fs      *vfs.MemFS
	crashed *vfs.MemFS
}

func (c *crashingReader) Read(p []byte) (int, error) {
	if c.crashed == nil && c.n >= c.at {
		c.crashed = c.fs.CrashClone(vfs.CrashCloneCfg{})
	}
	p = p[:min(len(p), 512)]
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A crash in the middle of Restore reopens an empty engine at index 0
// (the replica restores again), never half old and half new.
func TestCrashDuringRestore(t *testing.T) {
	src := openMem(t, nil, func(c *Config) { c.SnapshotChunkSize = 1 << 10 })
	defer src.Close()
	fill(t, newLog(t, src), 100, 100, 4)
	data := snapshotBytes(t, src)

	fs := vfs.NewCrashableMem()
	dst := openMem(t, fs)
	ld := newLog(t, dst)
	ld.put("old", "x")
	if _, err := dst.Sync(); err != nil {
		t.Fatal(err)
	}
	cr := &crashingReader{r: bytes.NewReader(data), at: len(data) / 2, fs: fs}
	if err := dst.Restore(cr); err != nil {
		t.Fatal(err)
	}
	_ = dst.Close()
	if cr.crashed == nil {
		t.Fatal("no crash image taken")
	}
	sm := openMem(t, cr.crashed)
	defer sm.Close()
	if sm.AppliedIndex() != 0 || len(dump(t, sm)) != 0 {
		t.Fatalf("engine crashed mid-restore reopened at %d with %d keys", sm.AppliedIndex(), len(dump(t, sm)))
	}
	// A completed restore is durable.
	fs2 := vfs.NewCrashableMem()
	dst2 := openMem(t, fs2)
	if err := dst2.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	crashed := fs2.CrashClone(vfs.CrashCloneCfg{})
	_ = dst2.Close()
	sm2 := openMem(t, crashed)
	defer sm2.Close()
	equalDumps(t, "restored engine after a crash", dump(t, src), dump(t, sm2))
}

type sizeWriter struct{ writes, max, total int }

func (w *sizeWriter) Write(p []byte) (int, error) {
	w.writes++
	w.max = max(w.max, len(p))
	w.total += len(p)
	return len(p), nil
}

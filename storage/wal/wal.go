package wal

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// WAL is the durable log of one Raft group: its entries, hard state and
// snapshot metadata, in a directory of segment files. It implements
// raft.Storage from an in-memory copy of the log, and Save and Compact
// write through to disk.
//
// Save and Compact are meant to be called by one goroutine (the replica's
// run goroutine); they are serialized if not. The raft.Storage methods may
// be called from any goroutine at any time.
type WAL struct {
	fs     vfs.FS
	dir    string
	opts   Options
	logger *slog.Logger

	// wmu serializes the writers (Save, Compact, Close) and guards w. It
	// is held across disk writes and syncs: that is its job. Readers never
	// take it.
	wmu sync.Mutex
	w   struct {
		segs     []segment // live segments, oldest first; the last is open
		f        vfs.File  // the last segment
		off      int64     // where the next batch goes in f
		unsynced bool      // f has writes no sync has covered
		hasData  bool      // f holds a batch besides its checkpoint
		buf      []byte    // reused encoding buffer
		// failed is sticky: once a write or sync fails, every later
		// Save, Compact and Close returns it.
		failed error
		closed bool
	}

	// mu guards the in-memory log. It is held only briefly, never across
	// I/O. st is written with both wmu and mu held, so a writer holding wmu
	// may read it without mu.
	mu struct {
		sync.Mutex
		st logState
	}

	stats struct {
		syncs, batches, bytes atomic.Uint64
	}
	recovered Recovery
}

// Recovery describes what Open found.
type Recovery struct {
	// SegmentsRead is how many segments Open replayed.
	SegmentsRead int
	// SegmentsRemoved is how many leftover segments (older than what the
	// log still needs) and temporary files Open removed.
	SegmentsRemoved int
	// TornFile, TornOffset and TornBytes describe a torn tail that Open cut
	// off the last segment (TornBytes == 0: none).
	TornFile   string
	TornOffset int64
	TornBytes  int64
	// TornReason says what was found there.
	TornReason string
}

// Stats are counters since Open.
type Stats struct {
	Segments int
	Batches  uint64 // batches written (Saves and Compacts that wrote)
	Syncs    uint64 // fdatasyncs of segment files
	Bytes    uint64 // bytes written to segments
}

// Open opens the log in dir, creating it if needed, and replays it. A
// torn tail (a crash mid-write) is cut off; anything else wrong is a
// *CorruptError and Open refuses.
func Open(dir string, opts Options) (*WAL, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	w := &WAL{fs: opts.FS, dir: dir, opts: opts, logger: opts.Logger}
	if err := vfs.MkdirAllSync(w.fs, dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	segs, err := w.listSegments()
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		if err := w.createFirstSegment(); err != nil {
			return nil, err
		}
		return w, nil
	}
	if err := w.replay(segs); err != nil {
		return nil, err
	}
	if err := w.releaseLocked(); err != nil {
		w.w.f.Close()
		return nil, err
	}
	return w, nil
}

// listSegments removes temporary files and returns the segments in order,
// checking that no sequence number is missing.
func (w *WAL) listSegments() ([]segment, error) {
	names, err := w.fs.List(w.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", w.dir, err)
	}
	var segs []segment
	removed := 0
	for _, name := range names {
		path := filepath.Join(w.dir, name)
		if strings.HasSuffix(name, segmentSuffix+tempSuffix) {
			// A segment whose creation a crash interrupted: it was never
			// renamed into place, so it holds nothing acknowledged.
			if err := w.fs.Remove(path); err != nil {
				return nil, fmt.Errorf("wal: remove %s: %w", path, err)
			}
			removed++
			continue
		}
		if !strings.HasSuffix(name, segmentSuffix) {
			continue // not ours
		}
		seq, first, ok := parseSegmentName(name)
		if !ok {
			return nil, corrupt(path, 0, "not a segment name")
		}
		segs = append(segs, segment{seq: seq, first: first, path: path})
	}
	if removed > 0 {
		w.logger.Info("wal: removed unfinished segments", "dir", w.dir, "count", removed)
		w.recovered.SegmentsRemoved += removed
		if err := vfs.SyncDir(w.fs, w.dir); err != nil {
			return nil, fmt.Errorf("wal: sync %s: %w", w.dir, err)
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmpUint64(a.seq, b.seq) })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, corrupt(segs[i].path, 0, "gap between segments: segment %d is missing before it", segs[i-1].seq+1)
		}
	}
	return segs, nil
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// replay rebuilds the log from segs and opens the last one for writing.
func (w *WAL) replay(segs []segment) error {
	// Read the last segment first: its checkpoint and records say how far
	// the log is compacted, which tells which older segments hold nothing
	// still needed (a crash can leave them between a compaction and their
	// removal). Everything in segment i is below segs[i+1].first.
	lastSeg := segs[len(segs)-1]
	lastScan, err := w.readSegment(lastSeg, true)
	if err != nil {
		return err
	}
	var compacted raft.Index
	for _, batch := range lastScan.batches {
		for _, r := range batch {
			switch r.kind {
			case kindCheckpoint, kindCompact:
				compacted = max(compacted, r.to)
			case kindSnapshot:
				compacted = max(compacted, r.snap.Index)
			}
		}
	}
	start := 0
	for start < len(segs)-1 && segs[start+1].first-1 <= compacted {
		start++
	}
	st := &w.mu.st
	for i := start; i < len(segs); i++ {
		seg := segs[i]
		sc := lastScan
		if i < len(segs)-1 {
			if sc, err = w.readSegment(seg, false); err != nil {
				return err
			}
		}
		if i == start {
			st.startFrom(&sc.batches[0][0])
		}
		for bi, batch := range sc.batches {
			for ri := range batch {
				r := &batch[ri]
				if r.kind == kindCheckpoint && (bi != 0 || ri != 0) {
					return corrupt(seg.path, r.off, "checkpoint record inside a segment")
				}
				if bi == 0 && i == start {
					continue
				}
				if err := st.apply(r, seg.seq); err != nil {
					return corrupt(seg.path, r.off, "%v", err)
				}
			}
		}
		w.recovered.SegmentsRead++
	}
	if err := st.finishReplay(); err != nil {
		return corrupt(segs[start].path, 0, "%v", err)
	}
	// Skipped segments stay listed until releaseLocked removes them.
	w.w.segs = segs
	return w.openTail(lastSeg, lastScan)
}

// readSegment reads and checks one segment.
func (w *WAL) readSegment(seg segment, last bool) (scanned, error) {
	buf, err := vfs.ReadFile(w.fs, seg.path)
	if err != nil {
		return scanned{}, fmt.Errorf("wal: read %s: %w", seg.path, err)
	}
	sc, err := scanSegment(seg.path, buf, last)
	if err != nil {
		return scanned{}, err
	}
	if sc.end < int64(len(buf))/2 {
		// Mostly preallocated zeros: keep a tight copy, since entries
		// alias the buffer they were read from.
		sc2, err := scanSegment(seg.path, slices.Clone(buf[:sc.end]), false)
		if err != nil {
			return scanned{}, err
		}
		sc.batches = sc2.batches
	}
	if sc.hdr.seq != seg.seq || sc.hdr.first != seg.first {
		return scanned{}, corrupt(seg.path, 0, "header says segment %d first index %d, the name says %d and %d", sc.hdr.seq, sc.hdr.first, seg.seq, seg.first)
	}
	if len(sc.batches) == 0 || len(sc.batches[0]) != 1 || sc.batches[0][0].kind != kindCheckpoint {
		return scanned{}, corrupt(seg.path, segmentHeaderSize, "segment does not open with a checkpoint")
	}
	if cp := &sc.batches[0][0]; cp.prev+1 != seg.first {
		return scanned{}, corrupt(seg.path, segmentHeaderSize, "checkpoint ends at index %d, the header says the segment starts at %d", cp.prev, seg.first)
	}
	return sc, nil
}

// openTail opens the last segment for writing at the end of its last
// complete batch, erasing a torn tail first.
func (w *WAL) openTail(seg segment, sc scanned) error {
	f, err := w.fs.OpenReadWrite(seg.path)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", seg.path, err)
	}
	if sc.dirty > sc.end {
		w.recovered.TornFile, w.recovered.TornOffset = seg.path, sc.end
		w.recovered.TornBytes, w.recovered.TornReason = sc.dirty-sc.end, sc.tornReason
		w.logger.Warn("wal: cut off a torn tail", "file", seg.path, "offset", sc.end,
			"bytes", sc.dirty-sc.end, "reason", sc.tornReason)
		// Erase it, so that a later, shorter batch written here is not
		// followed by stale bytes that could look like corruption.
		st, err := f.Stat()
		if err == nil {
			err = erase(f, sc.end, st.Size())
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: erase torn tail of %s: %w", seg.path, err)
		}
	}
	// Sync even when nothing was erased: what replay read may have been
	// written without a sync before a process (not machine) crash, and the
	// core will treat it as durable, and segments may be released because
	// of it.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%w: sync %s: %w", ErrIO, seg.path, err)
	}
	w.w.f, w.w.off = f, sc.end
	w.w.hasData = len(sc.batches) > 1
	return nil
}

// erase zeroes [off, size) of f by cutting the file at off and
// preallocating it back to size. Both are single metadata operations, so a
// crash leaves the bytes either as they were or zero; overwriting them with
// zeros could be torn halfway, leaving zeros followed by old bytes, which
// recovery would take for corruption.
func erase(f vfs.File, off, size int64) error {
	if err := f.Truncate(off); err != nil {
		return err
	}
	if size > off {
		return f.Preallocate(off, size-off)
	}
	return nil
}

// createFirstSegment starts an empty log.
func (w *WAL) createFirstSegment() error {
	f, seg, err := w.createSegment(1, 1, w.mu.st.checkpoint())
	if err != nil {
		return err
	}
	w.w.segs = []segment{seg}
	w.w.f, w.w.off, w.w.hasData = f, seg.dataStart, false
	return nil
}

// createSegment makes a segment durable under its final name: written
// and synced under a temporary name, renamed, directory synced. A crash
// leaves either no segment or a complete one (and maybe a temporary file,
// which Open removes).
func (w *WAL) createSegment(seq uint64, first raft.Index, cp record) (vfs.File, segment, error) {
	seg := segment{seq: seq, first: first, path: filepath.Join(w.dir, segmentName(seq, first))}
	tmp := seg.path + tempSuffix
	f, err := w.fs.Create(tmp)
	if err != nil {
		return nil, segment{}, w.ioError("create "+tmp, err)
	}
	fail := func(what string, err error) (vfs.File, segment, error) {
		f.Close()
		w.fs.Remove(tmp)
		return nil, segment{}, w.ioError(what+" "+tmp, err)
	}
	if err := f.Preallocate(0, w.opts.SegmentSize); err != nil {
		return fail("preallocate", err)
	}
	buf := segmentHeader{seq: seq, first: first}.encode()
	buf = appendRecord(buf, &cp, true)
	seg.dataStart = int64(len(buf))
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	w.stats.syncs.Add(1)
	if err := w.fs.Rename(tmp, seg.path); err != nil {
		return fail("rename", err)
	}
	if err := vfs.SyncDir(w.fs, w.dir); err != nil {
		f.Close()
		return nil, segment{}, w.fail("sync directory "+w.dir, err)
	}
	return f, seg, nil
}

// ioError turns an error from an operation that left the log as it was
// (nothing in a live segment changed) into the error to return: ENOSPC is
// not sticky; anything else is.
func (w *WAL) ioError(what string, err error) error {
	if vfs.IsNoSpace(err) {
		return fmt.Errorf("%w: %s: %w", ErrNoSpace, what, err)
	}
	return w.fail(what, err)
}

// fail records a sticky failure and returns it.
func (w *WAL) fail(what string, err error) error {
	w.w.failed = fmt.Errorf("%w: %s: %w", ErrIO, what, err)
	return w.w.failed
}

func (w *WAL) checkWritable() error {
	if w.w.closed {
		return ErrClosed
	}
	return w.w.failed
}

// Save makes durable what one Ready asks to persist, as one atomic batch:
// a crash leaves either all of it or none of it. In order: snap (if
// non-nil) replaces the whole log; ents are appended, replacing any stored
// entries at the same or higher indexes (entries already compacted are
// skipped); hs (if not empty) replaces the hard state. With sync set, Save
// returns only once the batch is on stable storage (one fdatasync); without
// it, a later synced Save makes it durable.
//
// Save keeps references to the entries' Data: callers must not modify it.
//
// Errors: ErrInvalidArgument (nothing written; the WAL is still usable),
// ErrNoSpace (nothing written; usable), ErrIO (sticky), ErrClosed.
func (w *WAL) Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, sync bool) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.checkWritable(); err != nil {
		return err
	}
	st := &w.mu.st
	offset, last := st.offset, st.last()
	var recs []record
	if snap != nil {
		if snap.Index <= st.snap.Index && !st.snap.IsEmpty() {
			return fmt.Errorf("%w: snapshot %d: %w", ErrInvalidArgument, snap.Index, raft.ErrSnapOutOfDate)
		}
		recs = append(recs, record{kind: kindSnapshot, snap: *snap})
		offset, last = snap.Index, snap.Index
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("%w: entries not contiguous: %d follows %d", ErrInvalidArgument, ents[i].Index, ents[i-1].Index)
		}
	}
	if len(ents) > 0 && ents[0].Index <= offset {
		ents = ents[min(uint64(offset-ents[0].Index+1), uint64(len(ents))):]
	}
	if len(ents) > 0 {
		if ents[0].Index > last+1 {
			return fmt.Errorf("%w: append at %d leaves a gap after last index %d", ErrInvalidArgument, ents[0].Index, last)
		}
		if ents[0].Index <= last {
			recs = append(recs, record{kind: kindTruncate, to: ents[0].Index - 1})
		}
	}
	buf := w.w.buf[:0]
	for i := range recs {
		buf = appendRecord(buf, &recs[i], len(ents) == 0 && hs.IsEmpty() && i == len(recs)-1)
	}
	for i := range ents {
		r := record{kind: kindEntry, entry: ents[i]}
		buf = appendRecord(buf, &r, hs.IsEmpty() && i == len(ents)-1)
	}
	if !hs.IsEmpty() {
		r := record{kind: kindHardState, hs: hs}
		buf = appendRecord(buf, &r, true)
	}
	w.w.buf = buf
	if len(buf) == 0 {
		if sync && w.w.unsynced {
			return w.syncLocked()
		}
		return nil
	}
	if err := w.writeBatchLocked(buf, sync); err != nil {
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	seq := w.w.segs[len(w.w.segs)-1].seq
	if snap != nil {
		st.installSnapshot(*snap)
	}
	if len(ents) > 0 {
		if err := st.truncate(ents[0].Index - 1); err != nil {
			panic(fmt.Sprintf("wal: validated truncation failed: %v", err))
		}
		for _, e := range ents {
			if err := st.appendEntry(e, seq); err != nil {
				panic(fmt.Sprintf("wal: validated append failed: %v", err))
			}
		}
	}
	if !hs.IsEmpty() {
		st.setHardState(hs)
	}
	if sync {
		return w.releaseLocked()
	}
	return nil
}

// Compact records that the snapshot described by meta is durable (so that
// restart finds it and followers can be sent it), then discards the entries
// up to and including compactTo (at most meta.Index), and removes the
// segments that hold nothing still needed. Entries already discarded are
// not an error. Compact always syncs.
func (w *WAL) Compact(meta raft.SnapshotMeta, compactTo raft.Index) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.checkWritable(); err != nil {
		return err
	}
	st := &w.mu.st
	if meta.Index <= st.snap.Index && !st.snap.IsEmpty() {
		return fmt.Errorf("%w: snapshot %d: %w", ErrInvalidArgument, meta.Index, raft.ErrSnapOutOfDate)
	}
	t, ok := st.term(meta.Index)
	if !ok {
		return fmt.Errorf("%w: snapshot index %d outside [%d, %d]: %w", ErrInvalidArgument, meta.Index, st.offset, st.last(), raft.ErrUnavailable)
	}
	if t != meta.Term {
		return fmt.Errorf("%w: snapshot %d has term %d in the log, %d in the snapshot", ErrInvalidArgument, meta.Index, t, meta.Term)
	}
	if compactTo > meta.Index {
		return fmt.Errorf("%w: compact to %d is beyond snapshot %d", ErrInvalidArgument, compactTo, meta.Index)
	}
	to := max(compactTo, st.offset)
	toTerm, _ := st.term(to)
	r := record{kind: kindCompact, to: to, toTerm: toTerm, snap: meta}
	w.w.buf = appendRecord(w.w.buf[:0], &r, true)
	if err := w.writeBatchLocked(w.w.buf, true); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st.compact(meta, to, toTerm)
	return w.releaseLocked()
}

// writeBatchLocked writes one encoded batch to the end of the log, rolling
// to a new segment first if it does not fit, and syncs if asked.
func (w *WAL) writeBatchLocked(buf []byte, sync bool) error {
	if len(buf) > maxPayload {
		return fmt.Errorf("%w: batch of %d bytes exceeds the limit %d", ErrInvalidArgument, len(buf), maxPayload)
	}
	if w.w.off+int64(len(buf)) > w.opts.SegmentSize && w.w.hasData {
		if err := w.rollLocked(); err != nil {
			return err
		}
	}
	f, off := w.w.f, w.w.off
	n, err := f.WriteAt(buf, off)
	if err != nil {
		if vfs.IsNoSpace(err) {
			// Past the preallocated space (a batch bigger than a segment)
			// the disk filled up. Erase the partial batch (the space it
			// took comes back first), so nothing half-written stays.
			if n > 0 {
				if zerr := erase(f, off, max(off, w.opts.SegmentSize)); zerr != nil {
					return w.fail("erase partial write of "+w.currentPath(), zerr)
				}
				w.w.unsynced = true
			}
			return fmt.Errorf("%w: write %s: %w", ErrNoSpace, w.currentPath(), err)
		}
		return w.fail("write "+w.currentPath(), err)
	}
	w.w.off += int64(len(buf))
	w.w.unsynced = true
	w.w.hasData = true
	w.stats.batches.Add(1)
	w.stats.bytes.Add(uint64(len(buf)))
	if sync {
		return w.syncLocked()
	}
	return nil
}

func (w *WAL) currentPath() string { return w.w.segs[len(w.w.segs)-1].path }

func (w *WAL) syncLocked() error {
	if err := w.w.f.Sync(); err != nil {
		return w.fail("sync "+w.currentPath(), err)
	}
	w.stats.syncs.Add(1)
	w.w.unsynced = false
	return nil
}

// rollLocked seals the current segment (synced: a torn record can only
// ever be in the last segment) and starts the next one with a checkpoint
// of the log as it stands.
func (w *WAL) rollLocked() error {
	if w.w.unsynced {
		if err := w.syncLocked(); err != nil {
			return err
		}
	}
	cur := w.w.segs[len(w.w.segs)-1]
	st := &w.mu.st
	f, seg, err := w.createSegment(cur.seq+1, st.last()+1, st.checkpoint())
	if err != nil {
		return err
	}
	w.w.f.Close()
	w.w.segs = append(w.w.segs, seg)
	w.w.f, w.w.off, w.w.hasData = f, seg.dataStart, false
	return nil
}

// releaseLocked removes, oldest first, the segments that hold nothing the
// log still needs: those before the one its oldest entry was written in.
// It runs only once the records that made them unneeded are synced.
// Removing oldest first keeps the remaining segments contiguous whatever
// a crash undoes.
func (w *WAL) releaseLocked() error {
	keep := w.mu.st.oldestLiveSeq(w.w.segs[len(w.w.segs)-1].seq)
	n := 0
	for n < len(w.w.segs)-1 && w.w.segs[n].seq < keep {
		if err := w.fs.Remove(w.w.segs[n].path); err != nil {
			w.w.segs = w.w.segs[n:]
			return w.fail("remove "+w.w.segs[0].path, err)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	w.w.segs = slices.Delete(w.w.segs, 0, n)
	if err := vfs.SyncDir(w.fs, w.dir); err != nil {
		return w.fail("sync directory "+w.dir, err)
	}
	return nil
}

// Close syncs what is unsynced and closes the log. The raft.Storage
// methods keep working on the in-memory log.
func (w *WAL) Close() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.w.closed {
		return ErrClosed
	}
	var err error
	if w.w.failed == nil && w.w.unsynced {
		err = w.syncLocked()
	} else {
		err = w.w.failed
	}
	w.w.closed = true
	if cerr := w.w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: close %s: %w", w.currentPath(), cerr)
	}
	return err
}

// Recovery returns what Open found.
func (w *WAL) Recovery() Recovery { return w.recovered }

// Stats returns counters since Open.
func (w *WAL) Stats() Stats {
	w.wmu.Lock()
	n := len(w.w.segs)
	w.wmu.Unlock()
	return Stats{
		Segments: n,
		Batches:  w.stats.batches.Load(),
		Syncs:    w.stats.syncs.Load(),
		Bytes:    w.stats.bytes.Load(),
	}
}

// Segments returns the paths of the live segments, oldest first.
func (w *WAL) Segments() []string {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	paths := make([]string, len(w.w.segs))
	for i, s := range w.w.segs {
		paths[i] = s.path
	}
	return paths
}

package snap

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// FS is the filesystem. Default: vfs.Default.
	FS vfs.FS
	// Logger receives notices (temporary files removed). Default:
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports problems with o. Every Options is valid today; the
// method exists so that callers validate every component's options alike.
func (o Options) Validate() error { return nil }

// Info names a stored snapshot.
type Info struct {
	Index raft.Index
	Term  raft.Term
	Path  string
}

// Store is a directory of snapshot files. It is safe for concurrent use.
type Store struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger

	mu struct {
		sync.Mutex
		snaps  []Info // sorted by index, then term
		latest raft.SnapshotMeta
		tmpSeq uint64
	}
}

// Open opens the store in dir, creating it if needed. It removes temporary
// files (snapshots a crash interrupted) and checks the newest snapshot's
// header and trailer; a damaged newest snapshot is a *CorruptError.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{fs: opts.FS, dir: dir, logger: opts.Logger}
	if err := vfs.MkdirAllSync(s.fs, dir); err != nil {
		return nil, fmt.Errorf("snap: create %s: %w", dir, err)
	}
	names, err := s.fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("snap: list %s: %w", dir, err)
	}
	removed := 0
	for _, name := range names {
		path := filepath.Join(dir, name)
		if strings.HasSuffix(name, tempSuffix) {
			if err := s.fs.Remove(path); err != nil {
				return nil, fmt.Errorf("snap: remove %s: %w", path, err)
			}
			removed++
			continue
		}
		if !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		i, t, ok := parseFileName(name)
		if !ok {
			return nil, corrupt(path, 0, "not a snapshot file name")
		}
		s.mu.snaps = append(s.mu.snaps, Info{Index: i, Term: t, Path: path})
	}
	if removed > 0 {
		s.logger.Info("snap: removed unfinished snapshots", "dir", dir, "count", removed)
		if err := vfs.SyncDir(s.fs, dir); err != nil {
			return nil, fmt.Errorf("snap: sync %s: %w", dir, err)
		}
	}
	slices.SortFunc(s.mu.snaps, cmpInfo)
	if n := len(s.mu.snaps); n > 0 {
		newest := s.mu.snaps[n-1]
		r, err := s.openPath(newest.Path)
		if err != nil {
			return nil, err
		}
		r.Close()
		if m := r.Meta(); m.Index != newest.Index || m.Term != newest.Term {
			return nil, corrupt(newest.Path, 0, "header says snapshot %d/%d", m.Term, m.Index)
		}
		s.mu.latest = r.Meta()
	}
	return s, nil
}

func cmpInfo(a, b Info) int {
	switch {
	case a.Index != b.Index:
		return cmpU(uint64(a.Index), uint64(b.Index))
	default:
		return cmpU(uint64(a.Term), uint64(b.Term))
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Latest returns the metadata of the newest snapshot, or ErrNotFound.
func (s *Store) Latest() (raft.SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.snaps) == 0 {
		return raft.SnapshotMeta{}, ErrNotFound
	}
	return s.mu.latest, nil
}

// List returns the stored snapshots, oldest first.
func (s *Store) List() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.snaps)
}

// Open returns a reader of the data of the snapshot meta describes
// (matched by index and term), or an error wrapping ErrNotFound or
// ErrCorrupt. The caller closes it.
func (s *Store) Open(meta raft.SnapshotMeta) (*Reader, error) {
	path := filepath.Join(s.dir, fileName(meta.Index, meta.Term))
	s.mu.Lock()
	_, found := slices.BinarySearchFunc(s.mu.snaps, Info{Index: meta.Index, Term: meta.Term}, cmpInfo)
	s.mu.Unlock()
	if !found {
		return nil, fmt.Errorf("%w: index %d term %d", ErrNotFound, meta.Index, meta.Term)
	}
	r, err := s.openPath(path)
	if err != nil {
		return nil, err
	}
	if m := r.Meta(); m.Index != meta.Index || m.Term != meta.Term {
		r.Close()
		return nil, corrupt(path, 0, "header says snapshot %d/%d", m.Term, m.Index)
	}
	return r, nil
}

func (s *Store) openPath(path string) (*Reader, error) {
	f, err := s.fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snap: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("snap: stat %s: %w", path, err)
	}
	r, err := newReader(path, f, st.Size(), f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Create starts writing the snapshot meta describes. The snapshot becomes
// visible (to Open, Latest, a restart) only once the Writer's Close
// succeeds.
func (s *Store) Create(meta raft.SnapshotMeta) (*Writer, error) {
	s.mu.Lock()
	s.mu.tmpSeq++
	final := filepath.Join(s.dir, fileName(meta.Index, meta.Term))
	tmp := fmt.Sprintf("%s.%d%s", final, s.mu.tmpSeq, tempSuffix)
	s.mu.Unlock()
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("snap: create %s: %w", tmp, err)
	}
	hdr := encodeHeader(meta)
	w := &Writer{store: s, meta: meta, f: f, tmp: tmp, final: final, crc: crc32.Checksum(hdr[:len(hdr)-4], crcTable)}
	w.bw = bufio.NewWriterSize(fileWriter{f: f, off: &w.off}, 256<<10)
	if _, err := w.bw.Write(hdr); err != nil {
		w.Cancel()
		return nil, fmt.Errorf("snap: write %s: %w", tmp, err)
	}
	return w, nil
}

// Prune removes the snapshots whose index is below keep, except the
// newest. Readers already open may still read them to the end.
func (s *Store) Prune(keep raft.Index) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []Info
	removed := 0
	for i, in := range s.mu.snaps {
		if in.Index >= keep || i == len(s.mu.snaps)-1 {
			kept = append(kept, in)
			continue
		}
		if err := s.fs.Remove(in.Path); err != nil {
			s.mu.snaps = append(kept, s.mu.snaps[i:]...)
			return fmt.Errorf("snap: remove %s: %w", in.Path, err)
		}
		removed++
	}
	s.mu.snaps = kept
	if removed == 0 {
		return nil
	}
	if err := vfs.SyncDir(s.fs, s.dir); err != nil {
		return fmt.Errorf("snap: sync %s: %w", s.dir, err)
	}
	return nil
}

// fileWriter turns WriteAt into an io.Writer that tracks its offset.
type fileWriter struct {
	f   vfs.File
	off *int64
}

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, *w.off)
	*w.off += int64(n)
	return n, err
}

// Writer streams one snapshot's data into the store. Close commits it;
// Cancel discards it. Exactly one of them must be called.
type Writer struct {
	store      *Store
	meta       raft.SnapshotMeta
	f          vfs.File
	bw         *bufio.Writer
	tmp, final string
	off        int64
	n          uint64
	crc        uint32
	err        error // sticky: first failure, or ErrClosed
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.crc = crc32.Update(w.crc, crcTable, p[:n])
	w.n += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("snap: write %s: %w", w.tmp, err)
		return n, w.err
	}
	return n, nil
}

// Close commits the snapshot: trailer written, file synced, renamed to its
// final name, directory synced. On error the snapshot is discarded.
func (w *Writer) Close() error {
	if w.err != nil {
		if !errors.Is(w.err, ErrClosed) {
			w.Cancel()
		}
		return w.err
	}
	fail := func(what string, err error) error {
		w.Cancel()
		w.err = fmt.Errorf("snap: %s %s: %w", what, w.tmp, err)
		return w.err
	}
	if _, err := w.bw.Write(encodeTrailer(w.n, w.crc)); err != nil {
		return fail("write", err)
	}
	if err := w.bw.Flush(); err != nil {
		return fail("write", err)
	}
	if err := w.f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := w.f.Close(); err != nil {
		return fail("close", err)
	}
	s := w.store
	if err := s.fs.Rename(w.tmp, w.final); err != nil {
		return fail("rename", err)
	}
	if err := vfs.SyncDir(s.fs, s.dir); err != nil {
		w.err = fmt.Errorf("snap: sync %s: %w", s.dir, err)
		return w.err
	}
	w.err = ErrClosed
	s.mu.Lock()
	defer s.mu.Unlock()
	in := Info{Index: w.meta.Index, Term: w.meta.Term, Path: w.final}
	i, found := slices.BinarySearchFunc(s.mu.snaps, in, cmpInfo)
	if !found {
		s.mu.snaps = slices.Insert(s.mu.snaps, i, in)
	}
	if last := s.mu.snaps[len(s.mu.snaps)-1]; last.Index == w.meta.Index && last.Term == w.meta.Term {
		s.mu.latest = w.meta
	}
	return nil
}

// Cancel discards the snapshot.
func (w *Writer) Cancel() error {
	if errors.Is(w.err, ErrClosed) {
		return ErrClosed
	}
	w.err = ErrClosed
	w.f.Close()
	if err := w.store.fs.Remove(w.tmp); err != nil {
		return fmt.Errorf("snap: remove %s: %w", w.tmp, err)
	}
	return nil
}

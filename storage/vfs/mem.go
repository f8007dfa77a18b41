package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// OpKind names a mutating MemFS operation, as seen by an Injector.
type OpKind uint8

const (
	OpCreate OpKind = iota + 1
	OpWrite
	OpSync
	OpSyncDir
	OpRemove
	OpRename
	OpMkdir
	OpTruncate
	OpPreallocate
)

func (k OpKind) String() string {
	switch k {
	case OpCreate:
		return "create"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	case OpSyncDir:
		return "syncdir"
	case OpRemove:
		return "remove"
	case OpRename:
		return "rename"
	case OpMkdir:
		return "mkdir"
	case OpTruncate:
		return "truncate"
	case OpPreallocate:
		return "preallocate"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op describes one mutating operation about to run on a MemFS.
type Op struct {
	Kind OpKind
	Path string
	// Off and Len locate a write, truncate or preallocate.
	Off int64
	Len int64
}

func (o Op) String() string {
	switch o.Kind {
	case OpWrite, OpPreallocate:
		return fmt.Sprintf("%s %s [%d,+%d)", o.Kind, o.Path, o.Off, o.Len)
	case OpTruncate:
		return fmt.Sprintf("%s %s %d", o.Kind, o.Path, o.Off)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Path)
}

// An Injector sees every mutating operation before it runs. A non-nil
// error makes the operation fail with it (wrapped in an *os.PathError)
// without any effect; a failed Sync also forfeits the durability of the
// writes it would have covered (see the package's durability contract).
// It is called without MemFS's lock held, so it may call CrashClone.
type Injector func(Op) error

// MemFS is an in-memory FS that tracks what is durable, for crash tests.
// It is safe for concurrent use.
type MemFS struct {
	mu struct {
		sync.Mutex
		root    *memNode
		rng     *rand.Rand
		crashed bool
		inject  Injector
		// capacity, when positive, is how many bytes the files together may
		// hold; used is how many they hold.
		capacity int64
		used     int64
	}
}

// memNode is a file or a directory (an inode: it may be reachable under
// several names in a crash image where a rename was half undone).
type memNode struct {
	dir bool

	// Files. data is what reads see; durable is what survives a crash for
	// sure; pending are the changes made since the last successful Sync, in
	// order, which a crash keeps a prefix of.
	data    []byte
	durable []byte
	pending []dataChange

	// Directories, likewise.
	children        map[string]*memNode
	durableChildren map[string]*memNode
	dirPending      []dirChange
}

// dataChange is a write (data != nil) or a resize to size.
type dataChange struct {
	off  int64
	data []byte
	size int64
}

// dirChange sets each name in names to the node at the same position in
// nodes (nil: removes it); a same-directory rename is one change of two
// names, which a crash keeps or drops as a whole.
type dirChange struct {
	names []string
	nodes []*memNode
}

// NewMem returns an empty MemFS whose crashes draw from a rand seeded with
// seed.
func NewMem(seed uint64) *MemFS {
	m := &MemFS{}
	m.mu.root = newDirNode()
	m.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return m
}

func newDirNode() *memNode {
	return &memNode{dir: true, children: map[string]*memNode{}, durableChildren: map[string]*memNode{}}
}

// SetInjector installs f (nil removes it).
func (m *MemFS) SetInjector(f Injector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.inject = f
}

// SetCapacity limits the bytes all files may hold together; a write that
// would grow past it writes what fits and fails with ENOSPC. Zero or less
// means unlimited.
func (m *MemFS) SetCapacity(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.capacity = n
}

// Used returns how many bytes the files hold.
func (m *MemFS) Used() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.used
}

// FlipBit flips one bit of a file's content, both in what reads see and in
// what is durable: bit rot on the medium.
func (m *MemFS) FlipBit(name string, off int64, bit uint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked(name)
	if err != nil {
		return err
	}
	if n.dir {
		return &os.PathError{Op: "flipbit", Path: name, Err: ErrIsDir}
	}
	if off < 0 || off >= int64(len(n.data)) {
		return &os.PathError{Op: "flipbit", Path: name, Err: fmt.Errorf("offset %d outside [0,%d)", off, len(n.data))}
	}
	n.data[off] ^= 1 << (bit % 8)
	if off < int64(len(n.durable)) {
		n.durable[off] ^= 1 << (bit % 8)
	}
	return nil
}

// Crash returns the filesystem that a restart after a power loss would
// find, and makes every later operation on m (and its open files) fail
// with ErrCrashed.
func (m *MemFS) Crash() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.crashCloneLocked()
	m.mu.crashed = true
	return c
}

// CrashClone returns what Crash would, leaving m running: the state a
// crash at this instant would leave. Each call draws new torn writes and
// undone operations.
func (m *MemFS) CrashClone() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashCloneLocked()
}

func (m *MemFS) crashCloneLocked() *MemFS {
	c := &MemFS{}
	seed := m.mu.rng.Uint64()
	c.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c.mu.capacity = m.mu.capacity
	memo := map[*memNode]*memNode{}
	c.mu.root = m.crashNodeLocked(m.mu.root, memo)
	for _, n := range memo {
		if !n.dir {
			c.mu.used += int64(len(n.data))
		}
	}
	return c
}

// crashNodeLocked builds the durable image of n: what is durable, plus a
// random prefix of what is pending, the last kept write torn at a random
// byte.
func (m *MemFS) crashNodeLocked(n *memNode, memo map[*memNode]*memNode) *memNode {
	if c, ok := memo[n]; ok {
		return c
	}
	rng := m.mu.rng
	if !n.dir {
		data := slices.Clone(n.durable)
		k := rng.IntN(len(n.pending) + 1)
		for i, ch := range n.pending {
			if i > k {
				break
			}
			if i == k {
				// The write in flight at the crash: a random prefix of it.
				if ch.data == nil {
					break
				}
				ch.data = ch.data[:rng.IntN(len(ch.data)+1)]
			}
			data = ch.apply(data)
		}
		c := &memNode{data: data, durable: slices.Clone(data)}
		memo[n] = c
		return c
	}
	c := newDirNode()
	memo[n] = c
	kids := maps(n.durableChildren)
	k := rng.IntN(len(n.dirPending) + 1)
	for _, ch := range n.dirPending[:k] {
		ch.apply(kids)
	}
	for _, name := range sortedKeys(kids) {
		cn := m.crashNodeLocked(kids[name], memo)
		c.children[name] = cn
		c.durableChildren[name] = cn
	}
	return c
}

func maps(in map[string]*memNode) map[string]*memNode {
	out := make(map[string]*memNode, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]*memNode) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (ch dataChange) apply(data []byte) []byte {
	if ch.data == nil {
		return resize(data, ch.size)
	}
	end := ch.off + int64(len(ch.data))
	if end > int64(len(data)) {
		data = resize(data, end)
	}
	copy(data[ch.off:], ch.data)
	return data
}

func resize(data []byte, size int64) []byte {
	if size <= int64(len(data)) {
		return data[:size]
	}
	if size <= int64(cap(data)) {
		old := len(data)
		data = data[:size]
		clear(data[old:])
		return data
	}
	return append(data, make([]byte, size-int64(len(data)))...)
}

func (ch dirChange) apply(kids map[string]*memNode) {
	for i, name := range ch.names {
		if ch.nodes[i] == nil {
			delete(kids, name)
		} else {
			kids[name] = ch.nodes[i]
		}
	}
}

// --- path handling ---------------------------------------------------------

func cleanPath(name string) []string {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func (m *MemFS) lookupLocked(name string) (*memNode, error) {
	n := m.mu.root
	for _, part := range cleanPath(name) {
		if !n.dir {
			return nil, &os.PathError{Op: "lookup", Path: name, Err: ErrNotDir}
		}
		c, ok := n.children[part]
		if !ok {
			return nil, &os.PathError{Op: "lookup", Path: name, Err: fs.ErrNotExist}
		}
		n = c
	}
	return n, nil
}

// parentLocked returns the directory holding name, and name's last element.
func (m *MemFS) parentLocked(op, name string) (*memNode, string, error) {
	parts := cleanPath(name)
	if len(parts) == 0 {
		return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	dir, err := m.lookupLocked(strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if !dir.dir {
		return nil, "", &os.PathError{Op: op, Path: name, Err: ErrNotDir}
	}
	return dir, parts[len(parts)-1], nil
}

// begin runs the injector for op and takes the lock. On success the caller
// must unlock.
func (m *MemFS) begin(op Op) error { return m.beginOn(op, nil) }

// beginOn is begin for an operation on the open file or directory n: a
// sync of it that the injector fails forfeits n's pending changes. (Not
// the changes of whatever op.Path names now: the file may have been
// renamed since it was opened, as every WAL segment is.)
func (m *MemFS) beginOn(op Op, n *memNode) error {
	m.mu.Lock()
	if m.mu.crashed {
		m.mu.Unlock()
		return &os.PathError{Op: op.Kind.String(), Path: op.Path, Err: ErrCrashed}
	}
	inject := m.mu.inject
	m.mu.Unlock()
	var injected error
	if inject != nil {
		injected = inject(op)
	}
	m.mu.Lock()
	if m.mu.crashed {
		m.mu.Unlock()
		return &os.PathError{Op: op.Kind.String(), Path: op.Path, Err: ErrCrashed}
	}
	if injected != nil {
		if n != nil && (op.Kind == OpSync || op.Kind == OpSyncDir) {
			forfeit(n)
		}
		m.mu.Unlock()
		return &os.PathError{Op: op.Kind.String(), Path: op.Path, Err: injected}
	}
	return nil
}

// forfeit models a failed sync of n: the pending changes stay visible but
// will never be made durable by a later sync. The caller holds the lock.
func forfeit(n *memNode) {
	if n.dir {
		n.dirPending = nil
	} else {
		n.pending = nil
	}
}

func (m *MemFS) linkLocked(dir *memNode, names []string, nodes []*memNode) {
	ch := dirChange{names: names, nodes: nodes}
	ch.apply(dir.children)
	dir.dirPending = append(dir.dirPending, ch)
}

// --- FS methods ------------------------------------------------------------

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	if err := m.begin(Op{Kind: OpCreate, Path: name}); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	dir, base, err := m.parentLocked("create", name)
	if err != nil {
		return nil, err
	}
	if old, ok := dir.children[base]; ok {
		if old.dir {
			return nil, &os.PathError{Op: "create", Path: name, Err: ErrIsDir}
		}
		// O_TRUNC on an existing file: a data change of the same inode.
		m.mu.used -= int64(len(old.data))
		old.data = old.data[:0:0]
		old.pending = append(old.pending, dataChange{size: 0})
		return &memFile{fs: m, n: old, name: name}, nil
	}
	n := &memNode{}
	m.linkLocked(dir, []string{base}, []*memNode{n})
	return &memFile{fs: m, n: n, name: name}, nil
}

func (m *MemFS) open(name string, write bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.crashed {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrCrashed}
	}
	n, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrIsDir}
	}
	return &memFile{fs: m, n: n, name: name, readOnly: !write}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open(name, false) }

// OpenReadWrite implements FS.
func (m *MemFS) OpenReadWrite(name string) (File, error) { return m.open(name, true) }

// OpenDir implements FS.
func (m *MemFS) OpenDir(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.crashed {
		return nil, &os.PathError{Op: "opendir", Path: name, Err: ErrCrashed}
	}
	n, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &os.PathError{Op: "opendir", Path: name, Err: ErrNotDir}
	}
	return &memFile{fs: m, n: n, name: name, readOnly: true}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	if err := m.begin(Op{Kind: OpRemove, Path: name}); err != nil {
		return err
	}
	defer m.mu.Unlock()
	dir, base, err := m.parentLocked("remove", name)
	if err != nil {
		return err
	}
	n, ok := dir.children[base]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && len(n.children) > 0 {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	if !n.dir {
		m.mu.used -= int64(len(n.data))
	}
	m.linkLocked(dir, []string{base}, []*memNode{nil})
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	if err := m.begin(Op{Kind: OpRename, Path: oldname + " -> " + newname}); err != nil {
		return err
	}
	defer m.mu.Unlock()
	odir, obase, err := m.parentLocked("rename", oldname)
	if err != nil {
		return err
	}
	ndir, nbase, err := m.parentLocked("rename", newname)
	if err != nil {
		return err
	}
	n, ok := odir.children[obase]
	if !ok {
		return &os.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	if old, ok := ndir.children[nbase]; ok && old != n {
		if old.dir {
			return &os.PathError{Op: "rename", Path: newname, Err: ErrIsDir}
		}
		m.mu.used -= int64(len(old.data))
	}
	if odir == ndir {
		if obase != nbase {
			m.linkLocked(odir, []string{obase, nbase}, []*memNode{nil, n})
		}
		return nil
	}
	m.linkLocked(ndir, []string{nbase}, []*memNode{n})
	m.linkLocked(odir, []string{obase}, []*memNode{nil})
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	if err := m.begin(Op{Kind: OpMkdir, Path: dir}); err != nil {
		return err
	}
	defer m.mu.Unlock()
	n := m.mu.root
	for _, part := range cleanPath(dir) {
		c, ok := n.children[part]
		if !ok {
			c = newDirNode()
			m.linkLocked(n, []string{part}, []*memNode{c})
		} else if !c.dir {
			return &os.PathError{Op: "mkdir", Path: dir, Err: ErrNotDir}
		}
		n = c
	}
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.crashed {
		return nil, &os.PathError{Op: "list", Path: dir, Err: ErrCrashed}
	}
	n, err := m.lookupLocked(dir)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &os.PathError{Op: "list", Path: dir, Err: ErrNotDir}
	}
	return sortedKeys(n.children), nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.crashed {
		return nil, &os.PathError{Op: "stat", Path: name, Err: ErrCrashed}
	}
	n, err := m.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(path.Clean("/" + name)), size: int64(len(n.data)), dir: n.dir}, nil
}

// --- files -----------------------------------------------------------------

type memFile struct {
	fs       *MemFS
	n        *memNode
	name     string
	pos      int64
	readOnly bool
	closed   bool
}

func (f *memFile) check(op string) error {
	if f.fs.mu.crashed {
		return &os.PathError{Op: op, Path: f.name, Err: ErrCrashed}
	}
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: ErrClosed}
	}
	if f.n.dir && op != "sync" && op != "close" && op != "stat" {
		return &os.PathError{Op: op, Path: f.name, Err: ErrIsDir}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.readAtLocked(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.readAtLocked(p, off)
}

func (f *memFile) readAtLocked(p []byte, off int64) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: fs.ErrInvalid}
	}
	if off >= int64(len(f.n.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.pos)
	f.fs.mu.Lock()
	f.pos += int64(n)
	f.fs.mu.Unlock()
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.begin(Op{Kind: OpWrite, Path: f.name, Off: off, Len: int64(len(p))}); err != nil {
		return 0, err
	}
	m := f.fs
	defer m.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if f.readOnly {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	if off < 0 {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: fs.ErrInvalid}
	}
	want := p
	var err error
	if grow := off + int64(len(p)) - int64(len(f.n.data)); grow > 0 && m.mu.capacity > 0 && m.mu.used+grow > m.mu.capacity {
		fit := int64(len(f.n.data)) + (m.mu.capacity - m.mu.used) - off
		want = p[:max(0, min(fit, int64(len(p))))]
		err = &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	if len(want) > 0 {
		ch := dataChange{off: off, data: slices.Clone(want)}
		before := int64(len(f.n.data))
		f.n.data = ch.apply(f.n.data)
		m.mu.used += int64(len(f.n.data)) - before
		f.n.pending = append(f.n.pending, ch)
	}
	return len(want), err
}

func (f *memFile) Sync() error {
	kind := OpSync
	if f.n.dir {
		kind = OpSyncDir
	}
	if err := f.fs.beginOn(Op{Kind: kind, Path: f.name}, f.n); err != nil {
		return err
	}
	defer f.fs.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	if f.n.dir {
		for _, ch := range f.n.dirPending {
			ch.apply(f.n.durableChildren)
		}
		f.n.dirPending = nil
		return nil
	}
	for _, ch := range f.n.pending {
		f.n.durable = ch.apply(f.n.durable)
	}
	f.n.pending = nil
	return nil
}

func (f *memFile) resize(kind OpKind, size int64, grow bool) error {
	if err := f.fs.begin(Op{Kind: kind, Path: f.name, Off: size}); err != nil {
		return err
	}
	m := f.fs
	defer m.mu.Unlock()
	if err := f.check(kind.String()); err != nil {
		return err
	}
	if f.readOnly {
		return &os.PathError{Op: kind.String(), Path: f.name, Err: fs.ErrPermission}
	}
	if size < 0 {
		return &os.PathError{Op: kind.String(), Path: f.name, Err: fs.ErrInvalid}
	}
	if grow && size <= int64(len(f.n.data)) {
		return nil
	}
	delta := size - int64(len(f.n.data))
	if delta > 0 && m.mu.capacity > 0 && m.mu.used+delta > m.mu.capacity {
		return &os.PathError{Op: kind.String(), Path: f.name, Err: syscall.ENOSPC}
	}
	ch := dataChange{size: size}
	f.n.data = ch.apply(f.n.data)
	m.mu.used += delta
	f.n.pending = append(f.n.pending, ch)
	return nil
}

func (f *memFile) Preallocate(off, n int64) error { return f.resize(OpPreallocate, off+n, true) }
func (f *memFile) Truncate(size int64) error      { return f.resize(OpTruncate, size, false) }

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat"); err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(path.Clean("/" + f.name)), size: int64(len(f.n.data)), dir: f.n.dir}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: ErrClosed}
	}
	f.closed = true
	return nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

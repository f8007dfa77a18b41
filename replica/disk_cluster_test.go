package replica_test

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/replica/memnet"
	"github.com/cairnkv/cairn/storage/vfs"
)

// dataDir is every disk-backed node's data directory, on its own MemFS.
const dataDir = "/data"

// newDiskCluster starts n replicas of a new group, each with its durable
// state in a data directory on its own MemFS (its machine's disk): a WAL
// with segments of segmentSize bytes and snapshot files. tweak, if not
// nil, adjusts each replica's config.
func newDiskCluster(t testing.TB, n int, segmentSize int64, tweak func(*replica.Config)) *cluster {
	t.Helper()
	c := &cluster{
		t:           t,
		net:         memnet.New(),
		ticker:      replica.NewTicker(tickInterval),
		nodes:       map[raft.NodeID]*node{},
		tweak:       tweak,
		segmentSize: segmentSize,
	}
	t.Cleanup(c.close)
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, raft.NodeID(i))
	}
	for _, id := range c.ids {
		c.nodes[id] = &node{
			id:        id,
			clock:     &gatedClock{src: c.ticker},
			fs:        vfs.NewMem(uint64(id)),
			bootstrap: true,
		}
		c.start(id)
	}
	return c
}

// openDisk opens a disk-backed node's data directory, bootstrapping the
// group on the node's first start only.
func (c *cluster) openDisk(nd *node) *replica.Disk {
	c.t.Helper()
	opts := replica.DiskOptions{FS: nd.fs, SegmentSize: c.segmentSize, Logger: slog.New(slog.DiscardHandler)}
	if nd.bootstrap {
		opts.Bootstrap = c.ids
	}
	d, err := replica.OpenDisk(dataDir, opts)
	if err != nil {
		c.t.Fatalf("node %d: open its disk: %v", nd.id, err)
	}
	nd.disk, nd.bootstrap = d, false
	return d
}

// crash cuts node id's power: its disk keeps only what a crash at this
// instant keeps (MemFS.Crash), and its replica stops (failing its next
// write, if it was writing).
func (c *cluster) crash(id raft.NodeID) {
	c.t.Helper()
	nd := c.nodes[id]
	nd.fs = nd.fs.Crash()
	c.net.Endpoint(id).Attach(nil)
	if err := nd.r.Stop(); err != nil && !errors.Is(err, vfs.ErrCrashed) {
		c.t.Errorf("node %d stopped with an error other than the crash: %v", id, err)
	}
	nd.disk = nil // its files belong to the crashed filesystem
	c.mu.Lock()
	nd.r = nil
	c.mu.Unlock()
}

// forget marks node id, whose replica stopped itself on a fatal error, as
// stopped; its disk stays as it is.
func (c *cluster) forget(id raft.NodeID) {
	c.t.Helper()
	nd := c.nodes[id]
	c.net.Endpoint(id).Attach(nil)
	<-nd.r.Done()
	if nd.disk != nil {
		nd.disk.Close()
		nd.disk = nil
	}
	c.mu.Lock()
	nd.r = nil
	c.mu.Unlock()
}

// wipe replaces node id's disk with an empty one: the repair path for a
// damaged data directory. Its next start does not bootstrap.
func (c *cluster) wipe(id raft.NodeID) {
	nd := c.nodes[id]
	if nd.r != nil {
		c.t.Fatalf("wipe running node %d", id)
	}
	nd.fs = vfs.NewMem(uint64(id) + 100)
	nd.bootstrap = false
}

// dirBytes returns the bytes the files in dir hold on fs (each file's
// size, preallocated space included), and how many files there are.
func dirBytes(t testing.TB, fs vfs.FS, dir string) (int64, int) {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	var total int64
	n := 0
	for _, name := range names {
		st, err := fs.Stat(filepath.Join(dir, name))
		if err != nil {
			continue // removed meanwhile
		}
		total += st.Size()
		n++
	}
	return total, n
}

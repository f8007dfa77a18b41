package replica_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/storage/vfs"
)

// WAL record sizes, from storage/wal's format (format.go): a frame adds 14
// bytes to its payload, and every payload starts with a one-byte group ID.
const (
	walFrame         = 14
	walEntryRecord   = walFrame + 1 + 8 + 8 + 1 // plus the data
	walHardState     = walFrame + 1 + 3*8
	walSegmentHeader = 40
	walCheckpoint    = walFrame + 1 + 9*8 + 16 // a small configuration
)

// walBound is the most bytes a replica's WAL can hold under the
// compaction policy, for entries of dataSize bytes proposed by proposers
// concurrent proposers (each with one proposal in flight):
//
//   - The log holds the entries after the compaction point: at most the
//     margin (CompactionMargin entries, fewer if CompactionMarginBytes
//     caps them) plus those applied since the snapshot (less than
//     SnapshotEvery entries or SnapshotBytes bytes, plus the batch that
//     crossed the line), plus those appended but not applied. The last two
//     are each at most one entry per proposer, because each proposer waits
//     until every node has applied its write before the next: no node lags
//     further. (A node that lags further holds its lag on top of the
//     bound, until it has applied it and snapshots; docs/storage.md.)
//   - On disk each entry is a record, and comes with at most one hard
//     state record (the commit index moves at most once per entry); a
//     few records more (compactions, elections) fit in 1 KiB.
//   - Segments are released whole: those records span at most
//     ceil(span/usable)+1 segments, plus one being created. A batch bigger
//     than a segment grows its segment past the preallocated size, by at
//     most the span in total.
func walBound(cfg replica.Config, segmentSize int64, dataSize, proposers int) (entries int, bytes int64) {
	margin := min(int(cfg.CompactionMargin), int(cfg.CompactionMarginBytes)/dataSize)
	sinceSnap := min(int(cfg.SnapshotEvery), (int(cfg.SnapshotBytes)+dataSize-1)/dataSize)
	entries = margin + sinceSnap + 2*proposers
	span := int64(entries)*int64(walEntryRecord+dataSize+walHardState) + 1024
	usable := segmentSize - walSegmentHeader - walCheckpoint
	segments := (span+usable-1)/usable + 2
	return entries, segments*segmentSize + span
}

// Under continuous writes the WAL stays within the bound the compaction
// policy implies (walBound), on every node and at every write the disk
// sees, whether snapshots are triggered by the entry count or by their
// bytes.
func TestWALStaysBounded(t *testing.T) {
	const segmentSize = 16 << 10
	cases := []struct {
		name     string
		dataSize int
		writes   int
		cfg      replica.Config
	}{
		{"by entries", 200, 2400, replica.Config{SnapshotEvery: 40, CompactionMargin: 10}},
		{"by bytes", 1000, 1200, replica.Config{SnapshotEvery: 1 << 20, SnapshotBytes: 32 << 10, CompactionMarginBytes: 8 << 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			policy := tc.cfg
			if err := policy.Validate(); err != nil && !errors.Is(err, replica.ErrInvalidConfig) {
				t.Fatal(err)
			}
			const proposers = 4
			writes := tc.writes
			maxEntries, bound := walBound(policy, segmentSize, tc.dataSize, proposers)

			c := newDiskCluster(t, 3, segmentSize, func(cfg *replica.Config) {
				cfg.SnapshotEvery, cfg.SnapshotBytes = policy.SnapshotEvery, policy.SnapshotBytes
				cfg.CompactionMargin, cfg.CompactionMarginBytes = policy.CompactionMargin, policy.CompactionMarginBytes
			})
			// Watch every node's WAL directory at every change to its disk.
			var mu sync.Mutex
			peak := map[raft.NodeID]int64{}
			var ops atomic.Int64
			watch := func(id raft.NodeID) {
				fs := c.nodes[id].fs
				fs.SetInjector(func(vfs.Op) error {
					ops.Add(1)
					n, _ := dirBytes(t, fs, replica.WALDir(dataDir))
					mu.Lock()
					peak[id] = max(peak[id], n)
					mu.Unlock()
					return nil
				})
			}
			for _, id := range c.ids {
				watch(id)
			}

			val := strings.Repeat("x", tc.dataSize-len("p0-0000="))
			c.waitLeader(ctx)
			var wg sync.WaitGroup
			errc := make(chan error, proposers)
			for g := range proposers {
				wg.Go(func() {
					for i := range writes / proposers {
						cmd := fmt.Sprintf("p%d-%04d=%s", g, i, val)
						res, err := proposeAnywhere(ctx, c, cmd)
						if err != nil {
							errc <- fmt.Errorf("propose %s: %w", cmd[:10], err)
							return
						}
						for _, id := range c.ids {
							if err := c.r(id).WaitApplied(ctx, res.Index); err != nil {
								errc <- fmt.Errorf("node %d: wait for %d: %w", id, res.Index, err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			_, last := c.propose(ctx, "last=1")
			c.waitApplied(ctx, last)

			written := int64(writes) * int64(tc.dataSize+walEntryRecord)
			for _, id := range c.ids {
				d := c.nodes[id].disk
				first, _ := d.Log.FirstIndex()
				lastIdx, _ := d.Log.LastIndex()
				if n := int(lastIdx - first + 1); n > maxEntries {
					t.Errorf("node %d's log holds %d entries; the policy allows %d", id, n, maxEntries)
				}
				if first < 100 {
					t.Errorf("node %d's log still starts at %d: it was hardly compacted", id, first)
				}
				mu.Lock()
				p := peak[id]
				mu.Unlock()
				if p > bound {
					t.Errorf("node %d's WAL reached %d bytes; the policy bounds it at %d", id, p, bound)
				}
				if written < 4*bound {
					t.Fatalf("only %d bytes written against a bound of %d: the test proves nothing", written, bound)
				}
				t.Logf("node %d: WAL peak %d bytes (bound %d, %d bytes of entries written), log [%d, %d]",
					id, p, bound, written, first, lastIdx)
			}
			if ops.Load() == 0 {
				t.Fatal("the disks saw no writes")
			}
		})
	}
}

func TestCompactionPolicyConfig(t *testing.T) {
	var cfg replica.Config
	cfg.Validate()
	if cfg.SnapshotEvery != 10000 || cfg.SnapshotBytes != 64<<20 || cfg.CompactionMargin != 1000 || cfg.CompactionMarginBytes != 8<<20 {
		t.Fatalf("defaults: every %d, bytes %d, margin %d, margin bytes %d",
			cfg.SnapshotEvery, cfg.SnapshotBytes, cfg.CompactionMargin, cfg.CompactionMarginBytes)
	}
	cfg = replica.Config{SnapshotEvery: 50, SnapshotBytes: 800}
	cfg.Validate()
	if cfg.CompactionMargin != 5 || cfg.CompactionMarginBytes != 100 {
		t.Fatalf("margins derived from SnapshotEvery 50 and SnapshotBytes 800: %d, %d", cfg.CompactionMargin, cfg.CompactionMarginBytes)
	}
	cfg = replica.Config{SnapshotEvery: 50, CompactionMargin: 51, SnapshotBytes: 800, CompactionMarginBytes: 801}
	err := cfg.Validate()
	for _, want := range []string{"CompactionMargin 51 exceeds SnapshotEvery 50", "CompactionMarginBytes 801 exceeds SnapshotBytes 800"} {
		if !errors.Is(err, replica.ErrInvalidConfig) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("Validate: %v; want a problem %q", err, want)
		}
	}
}

// The replica's handling of a full disk relies on this behavior of the
// core: an Advance that reports nothing done leaves the Ready's work with
// the core, which hands the same unstable entries and committed entries
// out again. If the core ever stops doing so, this fails first.
func TestCoreHandsUnadvancedWorkOutAgain(t *testing.T) {
	ms := raft.NewMemoryStorage()
	if err := raft.Bootstrap(ms, 1); err != nil {
		t.Fatal(err)
	}
	n, err := raft.NewNode(raft.Config{ID: 1, Storage: ms})
	if err != nil {
		t.Fatal(err)
	}
	n.Campaign()
	drain := func() {
		for n.HasReady() {
			rd := n.Ready()
			ms.Append(rd.Entries)
			if !rd.HardState.IsEmpty() {
				ms.SetHardState(rd.HardState)
			}
			n.Advance(rd)
		}
	}
	drain()
	if _, _, err := n.Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.Entries) != 1 {
		t.Fatalf("first Ready has %d entries", len(rd.Entries))
	}
	n.Advance(raft.Ready{}) // nothing was written
	again := n.Ready()
	if len(again.Entries) != 1 || again.Entries[0].Index != rd.Entries[0].Index || string(again.Entries[0].Data) != "a" {
		t.Fatalf("after an empty Advance the core hands out entries %v, want %v again", again.Entries, rd.Entries)
	}
	if !again.MustSync {
		t.Fatal("the entries handed out again are not to be synced")
	}
	// Now they are written; they commit (a single voter) and are handed
	// out to apply, which is not done either.
	ms.Append(again.Entries)
	n.Advance(again)
	var committed []raft.Entry
	for n.HasReady() && len(committed) == 0 {
		rd := n.Ready()
		if !rd.HardState.IsEmpty() {
			ms.SetHardState(rd.HardState)
		}
		committed = rd.CommittedEntries
		n.Advance(raft.Ready{})
	}
	if len(committed) == 0 {
		t.Fatal("the entry was never handed out to apply")
	}
	rd = n.Ready()
	if len(rd.CommittedEntries) != len(committed) || rd.CommittedEntries[0].Index != committed[0].Index {
		t.Fatalf("after an empty Advance the core hands out committed entries %v, want %v again", rd.CommittedEntries, committed)
	}
	n.Advance(rd)
	if n.HasReady() {
		if rd := n.Ready(); len(rd.CommittedEntries) > 0 || len(rd.Entries) > 0 {
			t.Fatalf("work handed out again after it was done: %+v", rd)
		}
	}
}

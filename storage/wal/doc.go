// Package wal is the write-ahead log of one Raft group: its entries, its
// hard state and its snapshot metadata, durable in a directory of segment
// files, with a raft.Storage view of them.
//
// # Use
//
//	w, err := wal.Open(dir, wal.Options{})   // replays; refuses corruption
//	node, err := raft.NewNode(raft.Config{Storage: w, ...})
//	for each Ready rd:
//		w.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync) // one write, one fdatasync
//	after the state machine has made a snapshot durable:
//		w.Compact(meta, compactTo)  // drops entries, removes whole segments
//
// A *WAL has the method set of replica.LogStore, so the replica's driver
// takes it in place of its in-memory store.
//
// # Format
//
// format.go draws the segment header and the record frame next to their
// constants. Each Save is one batch of records (truncation, entries, hard
// state) written with one write and made durable with one fdatasync; the
// last record carries a batch-end flag, and replay applies a batch only
// when it has read that record, so a Save is atomic. Segments are
// preallocated (fallocate), so a write inside one changes no file size
// and does not fail for lack of space on a real filesystem; a full disk
// shows when a new segment is preallocated, which is clean to refuse. (A
// write that fails with ENOSPC anyway, as vfs.Faulty makes it, writes
// nothing and is refused the same way: ErrNoSpace, the log unchanged.) Each segment opens with a
// checkpoint (hard state, snapshot, compaction point, last index and term)
// so that replay can start from any segment; the log is held in memory
// (see "Memory").
//
// # Crash safety
//
//   - Save returns after the batch is written and, if asked, synced. Only
//     then is the in-memory log (what raft reads) updated.
//   - A new segment is written and synced under a temporary name, renamed
//     into place, and the directory synced, before anything is written to
//     it; the segment before it is synced first. So a torn record can only
//     be at the tail of the newest segment, and a segment file under its
//     final name is always complete up to its checkpoint.
//   - Segments are removed only after the record that made them
//     unnecessary (a compaction or an installed snapshot) is synced, oldest
//     first, then the directory is synced: whatever a crash undoes, the
//     remaining segments are contiguous.
//   - A torn tail is erased at Open by truncating the file and
//     preallocating it back (metadata operations a crash keeps or drops
//     whole), never by overwriting with zeros (which a crash could tear,
//     leaving zeros before stale bytes that would look like corruption).
//   - Open syncs the newest segment before anything relies on what replay
//     read, since it may have been written without a sync before a process
//     crash.
//
// # Recovery rules
//
// Open reads the segments the log still needs, in order, and:
//
//   - A torn write at the tail of the newest segment (the bytes stop inside
//     a record and everything after is zero) and an incomplete last batch
//     are cut off: they were never acknowledged. The WAL opens and
//     Recovery says what was cut.
//   - A record with a bad checksum anywhere else (even the newest
//     segment's last record, when it is complete), non-zero bytes after the
//     end of the log, a missing segment, a bad segment header, or segments
//     that disagree with each other: Open returns a *CorruptError naming
//     the file and offset, wrapping ErrCorrupt, and refuses to open. It
//     never drops entries that may have been acknowledged. The repair path
//     is to wipe the replica's data and let it catch up from its peers by
//     snapshot.
//
// The rule assumes what vfs documents of a crash: a file's unsynced
// writes survive as a prefix in the order they were made, the last one
// possibly cut short, the rest reading as zeros (preallocated space). A
// disk that persists later unsynced pages without earlier ones can make
// Open refuse with a CorruptError after a crash; it never makes Open
// accept damaged data.
//
// # Errors
//
// After a failed write or fdatasync the WAL is poisoned: that Save returns
// an error wrapping ErrIO and the OS error, and every later Save, Compact
// and Close returns the same error. The kernel may have dropped the pages
// the failed sync covered, so a retry could "succeed" without the data;
// the replica must stop (step down, exit) and restart from what the disk
// really holds. ENOSPC is different: it is returned (wrapping ErrNoSpace)
// with nothing written and the in-memory log unchanged, and the WAL stays
// usable, so the node can keep serving reads and retry once space is
// freed.
//
// # Memory
//
// The whole log between compactions is kept in memory (entries' Data
// alias one buffer per segment read at Open, or the caller's slices for
// entries saved since). The compaction policy bounds it; a later version
// can keep only an index of (term, segment, offset) per entry plus a cache
// of recent entries, reading older ones from the segments on demand.
//
// # Many groups
//
// Every record starts with a group ID, 0 here. A node hosting many groups
// will run one shared log: one writer goroutine collects the Saves of all
// groups that are ready, writes them as one batch and issues one
// fdatasync for all of them, each group's records tagged with its ID and
// replayed into that group's in-memory log; a segment is released when no
// group still needs it.
package wal

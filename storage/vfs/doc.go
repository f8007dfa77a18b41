// Package vfs is the filesystem seam under all of cairn's storage code: the
// write-ahead log and the snapshot files reach the disk only through an FS.
//
// Two implementations exist:
//
//   - Default, the operating system's filesystem. On Linux a File's Sync is
//     fdatasync(2), Preallocate is fallocate(2), and a directory's Sync is
//     fsync(2) on the directory.
//   - MemFS, an in-memory filesystem for tests that tracks, per file and per
//     directory, what has been made durable. Crash returns the filesystem a
//     machine would find after losing power: only what was synced is sure to
//     survive; unsynced writes may vanish or be torn at any byte, and
//     unsynced creates, renames and removes may be undone. MemFS also
//     injects errors (EIO, ENOSPC) and flips bits.
//
// Faulty wraps either with failpoints that can change while files are
// open (DiskFaults): a slow disk (every write, or every sync, waits a
// given delay first) and a full disk (every write, preallocation, new file
// or directory and growing truncate fails with ENOSPC, shaped as the os
// package shapes it, with nothing applied; reads, syncs, removes, renames
// and shrinking truncates still work). Unlike MemFS's capacity, the full
// disk refuses writes inside space a file already holds, so that it shows
// at once even under a log that preallocates its segments. The server
// puts one Faulty under every group's log and snapshot files when fault
// injection is enabled, for chaos runs (the Admin service's
// SetDiskFaults).
//
// # Durability contract
//
// The storage code assumes exactly this, and MemFS enforces no more:
//
//   - File.Sync makes the file's data and size durable. It does not make
//     the file's name durable.
//   - A directory's Sync (OpenDir, then Sync) makes the entries of that
//     directory durable: files created, renamed into or removed from it.
//   - After a failed Sync, the data written since the previous successful
//     Sync may be lost even if a later Sync succeeds (the kernel may have
//     dropped the dirty pages). Callers must treat a failed Sync as fatal.
//   - A crash keeps, of each file's unsynced writes, some prefix in the
//     order they were made, the last one possibly cut at any byte; the bytes
//     it did not reach keep their old content (zeros in preallocated
//     space). Of each directory's unsynced operations it keeps some prefix.
package vfs

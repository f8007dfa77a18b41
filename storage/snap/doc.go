// Package snap stores snapshot files: the state machine's state at some
// log index, written and read as streams, never as one giant byte slice.
//
// A snapshot is written under a temporary name, synced, renamed to its
// final name and the directory synced, so a crash leaves either no
// snapshot or a complete one (plus perhaps a temporary file, which Open
// removes). Its data is checksummed (CRC32C); a Reader verifies the
// checksum as it streams and reports a mismatch, naming the file, instead
// of io.EOF. The newest snapshot is the one the store offers on open; if
// its header or trailer is damaged, Open refuses with a *CorruptError
// rather than fall back to an older one that the log may already have been
// compacted past.
package snap

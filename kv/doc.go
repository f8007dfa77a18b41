// Package kv is cairn's key-value state machine: the state every replica
// of a group keeps by applying the group's committed commands, on a Pebble
// engine. The service's gRPC server and Go client are built on it.
//
// # Usage
//
//	sm, err := kv.Open(kv.Config{Dir: filepath.Join(dataDir, "kv")})
//	r, err := replica.New(replica.Config{StateMachine: sm, ... })
//	// The replica starts its Raft node at sm.AppliedIndex() (recovered
//	// from disk) and applies only the committed entries after it; if
//	// that is below its latest snapshot's index (the engine lagged past
//	// a log compaction), it restores the snapshot first.
//
//	cmd, _ := kv.NewCommand(putRequest, time.Now()) // on the leader
//	data, _ := kv.EncodeCommand(cmd)
//	if err := sm.Limits().CheckCommand(cmd, len(data)); err != nil {
//		// InvalidArgument naming the limit; nothing proposed
//	}
//	res, err := r.Propose(ctx, data) // res.(*kv.Result): Response or Err
//
//	resp, err := sm.Get(key) // after ReadIndex, or at once for a serializable read
//
// A node hosts many groups: each group's replica has its own
// StateMachine, in its own directory. Nothing here is global.
//
// # Why Pebble
//
// Pebble (github.com/cockroachdb/pebble/v2, v2.1.7, the newest release the
// module proxy serves for Go 1.26) is an LSM engine: writes are
// sequential (a WAL and sorted tables), so applying a stream of small
// writes costs little; data larger than memory is the normal case; it has
// write batches that commit atomically (data and applied index together),
// point-in-time snapshots and iterators that do not block writers (for
// Snapshot and for reads beside Apply), range deletions (Restore wipes the
// whole key space in one record), and a vfs under everything (tests run on
// a crash-cloning in-memory filesystem). bbolt, the alternative, is a
// copy-on-write B+tree with a single writer: every commit rewrites the
// changed pages up to the root, so many small applies cost random writes;
// a long read transaction (a snapshot streaming to a slow follower) keeps
// every page it sees from being reused, so the file grows while it runs;
// and it maps the whole file into memory. For applying a replicated log of
// small writes, with snapshots streamed beside it, Pebble is the better
// fit; it is also the engine CockroachDB applies its Raft logs to. Its
// bloom filters are on, since most of Apply's point reads (a session's
// cached result for a new seq) miss.
//
// # Key space
//
// See keys.go: user data under 'd' (each value prefixed with its
// version), session records under 's', cached results under 'r', and one
// meta record under 'm' (applied index and term, the log clock, the
// limits).
//
// # Applying, and why a crash at any point is safe
//
// Apply writes all the entries it is given, and then the meta record with
// the last applied index, into one Pebble batch, committed atomically. The
// engine therefore always holds exactly the effects of the entries up to
// its applied index: never part of an entry, never an entry without its
// index or an index without its entry.
//
// The batch is committed without fsync (pebble.NoSync). That is safe
// because the Raft log is the source of truth and the engine only a cache
// of a prefix of it:
//
//  1. The replica persists (and fsyncs) entries in its log before it
//     applies them (step 2 of its Ready before step 4), so every entry
//     the engine could hold is durable in the log: the engine is never
//     ahead of the log's durable state.
//  2. A crash may lose the engine's latest unsynced batches, whole (the
//     write-ahead log is replayed up to its last intact record, and a
//     batch is one record). The engine then reopens at an earlier applied
//     index, with the data that goes with it.
//  3. On restart the replica starts at AppliedIndex() and the log hands
//     it the committed entries after it again; Apply is deterministic, so
//     re-applying them reaches the same state with the same results.
//     Entries at or below the applied index are skipped, so a replay that
//     starts earlier is harmless too.
//  4. The log may be truncated only below an index the engine has made
//     durable: Sync (an fsync of the engine's WAL) returns that index.
//     The replica's own snapshots (Snapshot, stored durably before it
//     compacts its log) satisfy this as well.
//
// # Determinism
//
// Every replica must compute the same state and the same result from the
// same entries. So Apply depends on nothing but the entries and the state
// before them: no local clock (time comes from the log, below), no local
// configuration (the limits are replicated state, changed by a SetLimits
// command), no map iteration order. Config holds only what cannot change
// a result: where the engine lives and how big its cache is.
//
// # Operations
//
// Put, Delete, CompareAndSwap (on the value, or on the version; version 0
// means "absent"), Append, and Batch. A key's version is the log index of
// the entry that last wrote it, so it grows with every write and a key
// deleted and re-created gets a new one. A Batch applies its ops in
// order, each seeing the ones before; if a compare-and-swap fails, or an
// op fails (an Append past the value limit), none of the batch is applied.
// Every write command is all or nothing the same way.
//
// # Sessions: exactly-once
//
// A client opens a session through the log; its id is the index of the
// OpenSession entry (unique, never reused). Each write carries (session,
// seq, lowest unacknowledged seq). Apply:
//
//  1. Refuses a command on an unknown, expired or closed session
//     (ErrSessionExpired): not executed.
//  2. Forgets the session's cached results below the acknowledged seq.
//  3. Refuses a seq below it (ErrStaleSequence): that result is gone.
//  4. Returns the cached outcome of a seq it has executed (Duplicate),
//     without executing it again.
//  5. Refuses a new seq when the session already keeps
//     Limits.MaxPendingPerSession results (ErrTooManyPending): not
//     executed, not cached; the client acknowledges and retries the same
//     seq. Results are never dropped to make room.
//  6. Executes the command and caches its outcome, failures included, so
//     that one seq has one outcome for good.
//
// Sessions and their results are engine state: replicated, in snapshots,
// restored on restart. Memory holds one small record per session
// (bounded by Limits.MaxSessions; OpenSession beyond it fails with
// ErrTooManySessions); results stay on disk.
//
// Expiry uses log time. The leader stamps each command with its wall
// clock (Command.time_unix_nano); the state machine's clock is the largest
// stamp applied, so it never goes back, and every replica has the same
// clock at the same entry. Before each command, every session idle longer
// than Limits.SessionTTL by that clock is dropped with its results. A
// leader whose clock runs fast can expire sessions early; clients keep a
// session alive with KeepAlive well within the TTL. Clock stamps only
// move time forward, so a slow leader clock merely delays expiry.
// OpenSession is not itself exactly-once: a retried open may leave an
// unused session, which expires.
//
// # Concurrency
//
// Apply, Snapshot and Restore run on the replica's run goroutine, one at a
// time. Get, Scan, AppliedIndex, Limits and Sync may run on any goroutine:
// reads see a Pebble snapshot of committed state with the applied index it
// goes with. While Restore replaces the engine's contents, reads fail at
// once with ErrUnavailable rather than wait or see half a state.
package kv

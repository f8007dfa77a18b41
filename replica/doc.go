// Package replica drives one member of a Raft group: it owns a raft.Node
// and connects it to a log store, a snapshot store, a transport, a clock
// and the application's state machine, and it gives callers futures for
// proposals, linearizable reads and leadership transfer.
//
// # Usage
//
//	r, err := replica.New(replica.Config{
//		ID:           1,
//		Log:          replica.NewMemoryLogStore(storage), // bootstrapped
//		Snapshots:    replica.NewMemorySnapshotStore(),
//		StateMachine: kv,
//		Transport:    network.Endpoint(1),
//		Ticks:        ticker, // shared by every replica of the process
//	})
//	network.Endpoint(1).Attach(r) // inbound messages go to r.Step
//	defer r.Stop()
//
//	result, err := r.Propose(ctx, cmd) // on the leader
//	var nl *replica.NotLeaderError
//	if errors.As(err, &nl) { /* retry at nl.Leader */ }
//
//	if _, err := r.ReadIndex(ctx); err == nil {
//		v := kv.Get(key) // linearizable, on any replica
//	}
//	if _, err := r.LeaseRead(ctx); err == nil {
//		v := kv.Get(key) // linearizable if clocks drift within bounds
//	}
//
// # One goroutine
//
// Each Replica has one long-lived goroutine, the run goroutine. It alone
// touches the raft.Node, writes the log store, calls the state machine and
// keeps the registries of pending calls; it needs no lock for any of it.
// Everything else reaches it through channels:
//
//	ticks ─────────┐
//	Step ──────────┤                    ┌─► Transport.Send / SendSnapshot
//	Propose ───────┤   run goroutine    ├─► LogStore.Save
//	ReadIndex ─────┼──►  raft.Node   ───┼─► StateMachine.Apply / Restore
//	Transfer, ─────┤   registries       └─► futures resolved
//	Status         │
//	reports ───────┘ (unreachable peers, snapshot outcomes, waiters whose
//	                  context ended)
//
// The run goroutine takes one input at a time, then drains whatever more
// of the same kind is queued (all queued proposals become one
// node.Propose call; all queued reads share one ReadIndex request), and
// processes a Ready whenever the node has one. A replica starts no other
// long-lived goroutine: not one per follower, not one per call. The loop is only a
// scheduler over handler methods, so a process hosting many groups can
// later drive many replicas from a few goroutines the same way.
//
// The other goroutines that touch a replica are the callers (who block on
// futures and ctx.Done, never on locks held by the run goroutine), the
// transport's (which call Step, TryStep and StepSnapshot, and report
// unreachable peers through a mailbox that never blocks), the tick
// source's, and the short-lived ones context.AfterFunc starts to report a
// waiter whose context ended (through the same mailbox).
//
// # The order of a Ready, and why a crash at any point is safe
//
//  1. Send Messages. They vouch only for state made durable by earlier
//     Readies: a leader's heartbeats and appends (its own new entries count
//     toward commitment only once persisted, after Advance), pre-votes,
//     read traffic. A crash before step 2 loses nothing anyone relied on;
//     sending first lets the leader's disk write overlap replication.
//  2. Persist the snapshot metadata, entries and hard state in one atomic
//     LogStore.Save, synced when MustSync says so. A crash inside it leaves
//     the previous durable state, on which everything sent so far depends.
//     If Save fails, see "Disk failures" below: a full disk holds the
//     rest of the Ready back; anything else stops the replica.
//  3. Send MessagesAfterPersist: granted votes, acknowledged appends, a
//     candidate's vote requests. They vouch for what step 2 wrote, so a
//     restarted node can never take back a vote (two leaders in one term)
//     or forget an entry it acknowledged (a committed entry lost).
//  4. Restore the state machine from the snapshot (if any), apply the
//     committed entries in order, resolve the proposals they answer, and
//     serve the reads whose index is now applied. Everything applied is
//     durable in the log, so a restart finds a log that explains the state
//     machine: New starts where the state machine is (see "Restart") and
//     the committed entries after that are applied again, to the same
//     effect. A caller is told its command committed only after this
//     step, when it is applied.
//  5. Advance. The node may be called again only now.
//
// After Advance the replica may snapshot its state machine and compact its
// log, by the compaction policy (compaction.go, Config.SnapshotEvery and
// its neighbours): a snapshot once SnapshotEvery entries or SnapshotBytes
// of entry data have been applied since the last one; compaction keeps a
// margin of entries behind it for followers a little behind. The data is
// durable in the SnapshotStore before the LogStore records the snapshot
// and discards entries, so a crash in between leaves a stray snapshot,
// never a log that starts after every snapshot. A state machine that
// persists lazily (Syncer) is synced first, and no entry past the index it
// reports durable is discarded (see "Restart").
//
// An incoming snapshot's data is staged in the SnapshotStore by
// StepSnapshot, on the transport's goroutine, before its MsgSnap is
// stepped; the core then accepts or refuses it, and on acceptance steps 2
// and 4 persist its metadata and restore from the staged data.
//
// # Futures
//
// A proposal is identified by the (index, term) at which the core appended
// its entry. It is settled by what this replica applies:
//
//   - The entry at its index is applied: the proposal gets the state
//     machine's result if the terms match, and ErrNotCommitted if they do
//     not (another leader's entry won the index; only one entry is ever
//     committed at an index, so the command will never apply).
//   - An entry of a later term than the proposal's is applied at a lower
//     index: ErrNotCommitted at once. Terms never decrease along the log
//     (§5.3), so every committed entry after it has that later term or
//     more, and the proposal's entry can be none of them. This is what
//     settles the tail of a batch a cut-off leader accepted: the new
//     leader commits its own entries over the first few indexes, and
//     nobody need ever write at the others.
//   - A snapshot from the leader is installed (index S, term T). A
//     proposal at or below S, whose entry this replica will never apply
//     itself, gets ErrNotCommitted if T is below its term (every entry
//     the snapshot covers is older: not ours), and ErrOutcomeUnknown
//     otherwise: its entry may be among those the snapshot covers, or may
//     have been replaced, and the snapshot does not say which. A proposal
//     after S with a term below T gets ErrNotCommitted, by the rule above.
//
// A proposal is not failed merely because this replica's log was
// overwritten at its index or its leadership lost: the entry may still
// commit through another replica that holds it, so only what is applied is
// conclusive. Stop fails every pending future with ErrStopped (outcome
// unknown); a context that ends returns ctx.Err() (outcome unknown), as a
// timed-out request always does.
//
// # Reads
//
// ReadIndex learns the commit index from the leader, which confirms its
// leadership with a round of heartbeats; LeaseRead skips the round while
// the leader's lease holds (raft.Node.LeaseRead: check-quorum and a bound
// on clock drift), and is a ReadIndex otherwise. ReadIndex calls that
// arrive together share one request to the core, and every read waiting
// on the leader joins the same heartbeat round; a read not answered
// within an election timeout, or when leadership changes, is asked again
// (as a ReadIndex). The caller then waits until this replica has applied
// the index.
//
// Waiters (reads that have their index, and WaitApplied) wait in a
// registry keyed by index, a min-heap released as entries apply; nothing
// polls. A waiter whose context ends leaves the registry at once (a
// context.AfterFunc reports it to the run goroutine), so a caller that
// gives up on an index far ahead leaves nothing behind.
//
// # Restart
//
// New starts the replica where its state machine is (restart.go). An
// in-memory state machine is empty after a restart: the replica restores
// the log's latest snapshot, if any, and the core hands it the committed
// entries after it. A state machine that persists its applied index with
// its data (AppliedIndexer, as kv's Pebble engine does) is started at that
// index (raft.Config.Applied) and is given only the committed entries
// after it; the snapshot is restored only if the state machine is behind
// it. A state machine ahead of its log (the log was wiped, the data kept)
// is refused with ErrDataCorrupt.
//
// A state machine that persists lazily (Syncer: kv commits without fsync)
// may lose its latest applies in a crash. That is safe because the log is
// the source of truth: compaction syncs the state machine and never
// discards an entry past the index it reports durable (nor past the
// snapshot, which is durable in the snapshot store), so whatever a crash
// takes from the state machine is applied again from the log.
//
// # On disk
//
// OpenDisk opens a replica's durable state from its data directory in one
// call: the write-ahead log (storage/wal, which is a LogStore) and the
// snapshot files (storage/snap), checked against each other, bootstrapping
// a brand-new group when asked to. It refuses damaged data with an error
// wrapping ErrDataCorrupt that names the file and offset (docs/storage.md
// has the recovery rules and the repair path).
//
// # Disk failures
//
// A failed write or fsync (any LogStore error but a full disk) is fatal:
// the replica cannot know what reached the disk, and after a failed fsync
// the kernel may already have dropped the pages it covered, so retrying
// could report success for data that is gone. The run goroutine stops at
// once: it sends nothing more (so it acknowledges nothing more, and if it
// led, its followers stop hearing heartbeats and elect another leader),
// fails every pending call with ErrStopped wrapping the cause, and makes
// the cause available from Err and Stop, wrapping ErrLogFailed and the
// store's error. The server must then exit with that message and be
// restarted: the restart reads back what the disk really holds, which the
// recovery rules check. For example:
//
//	<-r.Done()
//	if err := r.Err(); err != nil {
//		logger.Error("replica failed; exiting", "err", err)
//		os.Exit(1)
//	}
//
// A full disk is not fatal (diskfull.go): nothing was written, so the
// replica holds what it could not write and retries at every tick. It
// sends nothing that vouches for the unwritten state (no acknowledgement,
// no vote), applies only what its log holds, and keeps serving reads. A
// leader refuses proposals at once with ErrNoSpace, keeps its leadership
// (so a group whose every disk is full keeps serving linearizable reads),
// and hands it to a follower once the followers have committed without it
// everything it holds. When space is freed, the held writes go through and
// proposals are accepted again.
//
// # Catch-up mode
//
// A replica that starts from an empty log store (joining a group, or
// repaired by wiping its data directory) neither votes nor campaigns
// until it has applied an entry of its leader's term: having forgotten its
// votes and acknowledgements, it could otherwise help elect a leader that
// lacks entries committed with its help (catchup.go).
package replica

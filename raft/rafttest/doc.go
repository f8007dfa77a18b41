// Package rafttest is a deterministic simulator for the raft package, and
// the safety and liveness tests that run on it.
//
// # The model
//
// A Sim holds one Raft group of N nodes (IDs 1..N, all voters, bootstrapped
// with raft.Bootstrap) and everything around them, in one goroutine:
//
//   - each node's raft.Node, driven directly: no goroutines, no timers;
//   - each node's disk: a raft.MemoryStorage holding exactly what the
//     driver persisted from Readys, plus the state machine snapshot stored
//     beside the storage's snapshot metadata. Only the disk survives a crash.
//     Or, with Options.Storage = WALStorage, the real thing: a wal.WAL and
//     a snap.Store on a crashable vfs.MemFS per node, where a crash is a
//     power loss that keeps exactly what was synced (see "Real disks");
//   - each node's state machine (StateMachine): it applies committed entries
//     in order, keeps a hash chain of everything applied, and can be copied
//     as a snapshot. Nodes snapshot and compact their logs every
//     Options.SnapshotEvery entries, so followers that fall behind are
//     brought back with MsgSnap, whose data travels beside the message the
//     way a real transport streams a snapshot file;
//   - a clock in ticks (TicksPerSecond = 10: one tick is 100 ms);
//   - a network with partitions of any shape, one-way links included
//     (Partition, Isolate, Cut), and loss, duplication, reordering and delay
//     (NetOptions). Tests can also drop (DropIf) or hold back (Hold) exactly
//     the messages they choose.
//
// Everything random (the network, the order of events within a tick, the
// faults, every node's Config.Seed) is drawn from one seeded source, so a
// seed names a run exactly: the same seed and the same calls give the same
// run, event for event.
//
// # Processing a Ready
//
// A node's Ready is processed in the order raft.Ready documents: send
// Messages; persist Snapshot, Entries and HardState; send
// MessagesAfterPersist; install the snapshot, apply CommittedEntries, serve
// ReadStates; Advance. Between any two steps the node can crash (see
// FaultPoint), losing what it had not yet done. Faults aim those crashes at
// the Readys where they matter (see Trigger): right after granting a vote,
// right after becoming leader, right after a leader appends, while
// applying, and so on. A test can also decide itself, Ready by Ready,
// through Sim.CrashHook. A crashed node restarts from its disk, its state
// machine from its last snapshot (Config.Applied says so, and the core hands
// out again every committed entry after it).
//
// # Real disks
//
// In WALStorage mode the driver persists a Ready with one
// wal.Save(HardState, Entries, Snapshot, MustSync), writes snapshot files
// through a snap.Store before the WAL records them, and compacts with
// wal.Compact, as a real replica does. Every crash is a power loss: the
// node's filesystem is replaced by its crash image (unsynced writes kept
// as a random prefix, the last one torn at a random byte) and the WAL and
// snapshot store are reopened from it. The WAL must reopen (a torn tail
// is cut off), and hold exactly what the node acknowledged, or that plus
// the write the crash cut short (a batch is all or nothing); the snapshot
// it names must read back intact. Disk faults cut the power before any
// single filesystem operation (DiskFaults at random, Sim.DiskHook by
// choice), recovery included, or fail one with EIO, which halts the node
// as a real driver must. All the checks below run in both modes.
//
// # What is checked, and when
//
// After every step the Sim checks Raft's safety properties (Figure 3 of the
// paper) against everything that ever happened in the run: election safety
// (no two leaders in a term, no node voting twice in a term), log matching
// (over every entry any node ever made durable), leader completeness (a new
// leader holds every entry committed before), state machine safety (no two
// nodes apply different entries at one index, snapshots included), that a
// quorum of durable logs always holds every committed entry, that no node
// lacking a committed entry could still be elected (its durable log is at
// least as up-to-date as a quorum's: the state of Figure 8 (c), which a
// core that commits an earlier term's entry by counting replicas reaches
// whether or not the run goes on to lose the entry), that no node
// overwrites a committed entry, that reads are linearizable (a ReadIndex
// or LeaseRead answer is at least every index committed when the read was
// asked, and the state it is served from holds every write acknowledged
// before), and the driver contract (votes and acknowledgements vouch only
// for durable state; MustSync is set when it must be). Liveness is checked
// by CheckLiveness (a connected, live majority must elect a leader and
// commit within a bound, LivenessTicks) where a test asks, and by a
// monitor at every tick of every run (see MonitorLiveness): once a quorum
// has been up, connected among itself, cut off from the rest and left
// alone on a network that neither loses nor delays messages for
// LivenessTicks, it must have a leader and make progress.
//
// Random chaos rarely builds the states where some bugs show, so besides
// the targeted fault points (see Trigger) there is an adversary for the
// Figure 8 rule (RunFigure8): round after round a random node is elected,
// its entries reach only some nodes, and it crashes or is cut off.
//
// The first violation fails the test with the seed, the command that
// reproduces the run, and the last few hundred events:
//
//	committed entry 4 (term 2) can be lost: node 4 does not hold it, yet its durable log ...
//
//	at tick 40, seed 1
//	reproduce with: go test ./raft/rafttest -run '^TestFigure8Scenario$' -seed=1 -v
//
// # Running
//
//	go test ./raft/rafttest                        # everything: 2000 random schedules (one in 50 of them
//	                                               # the Figure 8 adversary), 400 on WAL disks, a power
//	                                               # loss before each disk operation of 3 scenarios
//	go test ./raft/rafttest -run TestRandomized -schedules=100000   # and 20000 on WAL disks
//	go test ./raft/rafttest -run '^TestWALCrashAtEveryDiskOp$/^seed=1$' -diskop=K -v   # one crash point
//	go test ./raft/rafttest -run '^TestX$' -seed=N -v -simtrace   # replay one run, event by event
//	go test ./raft/rafttest -run XXX -bench .      # proposals/s and allocs/entry
//
// # Writing a test
//
// A test builds a Sim, drives it and asserts on what it sees:
//
//	s := New(t, Options{Nodes: 3, Seed: 1})
//	l := s.WaitLeader(100)
//	s.Isolate(l)
//	s.Agree([]byte("x"), 2, 100) // the other two commit without l
//	s.Reconnect(l)
//	s.WaitConverged(100)         // and l catches up
//
// The invariants are checked throughout without the test asking. Use
// Sim.Fatalf (not t.Fatalf) so that a failure prints the seed.
package rafttest

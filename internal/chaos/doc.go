// Package chaos tests cairn the way Jepsen and etcd's robustness suite
// test stores: real server processes, real faults, every history checked.
//
// A run (Run) builds nothing and assumes nothing in-process: it starts a
// cluster of `cairn server` processes on 127.0.0.1 (Cluster), each peer
// link going through a fault-injecting TCP proxy of its own, drives three
// workloads through the public client, and lets a nemesis carry out a
// fault schedule drawn from the run's seed:
//
//   - register: gets (linearizable and lease), puts, compare-and-swaps and
//     deletes on a few hot keys, every written value unique
//     (lincheck.Workload);
//   - append: appends of unique tokens to a few keys, read now and then;
//   - bank: transfers between accounts as atomic batches of two
//     compare-and-swaps, and reads of every account in one scan at a
//     random consistency (Bank).
//
// The faults (Fault) are kill -9 of some nodes, of the leader, or of
// every node followed by a restart; SIGSTOP and
// SIGCONT of the leader (which wakes up believing it still leads) or of
// any node; partitions through the proxies — the leader isolated, a
// majority and a minority, a bridge node between two halves, the leader
// unable to send or unable to hear, random one-way links — each either
// dropping connections or silently holding their bytes; a lossy,
// duplicating, delaying network (the servers' own transport filter); and
// storage failpoints under the Raft logs and snapshot files (vfs.Faulty,
// through Admin.SetDiskFaults): a slow disk, a full disk on the leader, a
// full disk everywhere.
//
// One seed in two runs the servers with --snapshot-every 300, so that
// logs are compacted often and nodes that were down or cut off catch up
// by snapshot transfer while the faults go on (Config.ServerArgs).
//
// After the schedule every fault is healed and the run checks that
//
//   - a write succeeds within 30 seconds of healing (the cluster recovers);
//   - the register and append history, final reads included, is
//     linearizable (porcupine, via internal/lincheck; an undecided check
//     fails the run), so no acknowledged write is missing and no read was
//     stale;
//   - every acknowledged append is present exactly once, where its result
//     said, and in real-time order (lincheck.CheckAppends);
//   - every bank read, at any consistency, sums to the bank's total and
//     shows no negative balance; the final balances are the initial ones
//     plus every acknowledged transfer plus some subset of those whose
//     outcome is unknown, and none of those refused (Bank.Check);
//     linearizable and lease reads never go back in the log; and each
//     read's balances are those the log predicts at its applied index;
//   - every node has applied the same state (serializable reads from each
//     node alone, after a marker write it has applied);
//   - every workload completed operations of every kind (a run that
//     checked nothing does not pass);
//   - no server exited on its own, and no server log shows a panic, a
//     fatal error or a data race (the servers are built with the race
//     detector when the tests are, as in `go test -race ./...`, or with
//     -chaos.race).
//
// # Controls
//
// A check that never fails proves nothing, so two control tests run a
// real schedule against a cluster that must fail it:
// TestChaosCatchesDataLoss deletes every node's data mid-run (LoseAllData),
// and TestChaosCatchesDuplicateApplies runs servers built with the
// control_no_dedup tag, which execute a retried write again instead of
// answering it from its session (kv/control.go); the runs must report
// the lost writes and the doubly applied appends and transfers.
//
// # Running
//
// TestChaos runs ten 30-second schedules, two at a time, in every `go
// test ./...` (a few minutes); flags run more and longer:
//
//	go test ./internal/chaos -run '^TestChaos$' -v -timeout 0 \
//		-chaos.schedules=100 -chaos.duration=2m -chaos.parallel=1
//
// A failure prints its seed, the schedule, what the nemesis did when, the
// violations and the directory holding the run's files (schedule.txt,
// events.txt, history.jsonl, bank.jsonl, a visualization of any
// non-linearizable key, every node's data and log). The schedule is a
// pure function of the seed (with the run's length, size and fault list),
// so the command a failure prints,
//
//	go test ./internal/chaos -run '^TestChaos$' -v -chaos.seed=N -chaos.schedules=1 -chaos.duration=30s
//
// (with -chaos.nodes and -chaos.faults if they were set), replays the same
// faults in the same order at the same offsets against the same workload
// mix. Real processes are not deterministic: which operations meet which
// fault differs from one replay to the next, so a rare interleaving may
// need several replays (or a longer -chaos.duration) to show again; the
// history file of the failing run is the evidence.
package chaos

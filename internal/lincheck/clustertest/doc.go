// Package clustertest holds cairn's linearizability and exactly-once
// tests: concurrent clients drive a real 3-node cluster (package
// internal/testcluster: in-process nodes over real gRPC on 127.0.0.1)
// while faults are injected, every operation is recorded (package
// lincheck), and each run ends with a porcupine check that must find the
// history linearizable (an undecided check fails too) and a direct check
// that every append applied exactly once, in order.
//
// The package has only tests:
//
//	TestLinearizableNoFaults          the workload on a healthy cluster
//	TestLinearizablePartitions        leader isolated, minority cut off,
//	                                  one-way cuts, a bridge; healing between
//	TestLinearizableCrashRestart      the leader (or a follower) stopped as
//	                                  in a crash, then restarted
//	TestLinearizableUnreliableNetwork peer links lose, duplicate and delay
//	                                  messages; client RPCs are duplicated,
//	                                  their replies lost, and stale copies
//	                                  replayed late
//	TestExactlyOnceSessionExpiry      sessions expiring under the writes,
//	                                  with lost replies and late replays
//	TestLinearizableMixedFaults       all of the above at once (long runs
//	                                  only: -lin.duration)
//	TestMinorityPartition             a node cut off completes no write and
//	                                  serves no stale linearizable or lease read
//	TestRetryAcrossLeaderChange       a write whose reply was lost, retried
//	                                  after the leader changed, returns its
//	                                  original result and applies once
//	TestHarnessCatchesBrokenGuarantees the control: stale reads and double
//	                                  appends injected on purpose must fail
//	                                  the checks
//
// Every run prints its seed; -lin.seed reruns a schedule (the faults and
// the operations chosen: thread timing still varies). -lin.duration
// lengthens the fault runs (the defaults keep the package within about a
// minute and a half under -race on two cores); -lin.out keeps the history
// and visualization files. A failing run keeps them and prints where.
package clustertest

// Package server is a cairn node: a host of group replicas (each a
// replica.Replica driving a kv.StateMachine), the peer transport and the
// clock they share, and the KV and Admin gRPC services in front of them.
// `cairn server` is a thin command around it; internal/testcluster runs
// several in one process.
//
// # Usage
//
//	n, err := server.Start(server.Config{
//		NodeID:    1,
//		ClusterID: 7,
//		DataDir:   "/var/lib/cairn",
//		Peers: map[raft.NodeID]server.Peer{
//			1: {PeerAddr: "10.0.0.1:8001", ClientAddr: "10.0.0.1:7001"},
//			2: {PeerAddr: "10.0.0.2:8001", ClientAddr: "10.0.0.2:7001"},
//			3: {PeerAddr: "10.0.0.3:8001", ClientAddr: "10.0.0.3:7001"},
//		},
//	})
//	if err != nil { ... }          // bad config, another node's data dir, ...
//	select {
//	case <-sigterm:
//	case <-n.Fatal():              // a replica's disk failed: exit, restart
//	}
//	err = n.Shutdown()             // drain, hand off leadership, sync, close
//
// # Groups
//
// A node hosts a set of groups, each with its own replica, state machine,
// log, snapshots and transport endpoint; requests are routed to a group by
// key (or by the group ID in their header). For now the cluster has one
// group, DefaultGroup, over the whole key space, with every node a voter
// (see placement in group.go); nothing else assumes one group.
//
// # Data directory
//
//	<data>/CAIRN_META          cluster ID, node ID, layout version, CRC-32C (meta.go)
//	<data>/groups/<id>/wal/    the group's write-ahead log    (replica.OpenDisk)
//	<data>/groups/<id>/snap/   its snapshot files
//	<data>/groups/<id>/kv/     its state machine's engine     (kv.Open)
//
// The first start claims an empty directory by writing the meta file, and,
// unless Config.Join is set, bootstraps every group with all of Peers as
// voters (raft.BootstrapState). Every later start checks that the
// directory belongs to this cluster and node (ErrDataDirMismatch) and never
// bootstraps again: a group whose directory was wiped starts empty and
// catches up from its peers without voting until it has (replica's
// catch-up mode).
//
// # Restart
//
// The engine writes its applied index atomically with the data, so a
// restarted group need not rebuild it: the replica starts at the engine's
// applied index (replica.AppliedIndexer) and re-applies only what came
// after, restoring a snapshot only when the engine is behind the log's
// latest one. The engine commits without fsync; the replica syncs it
// (replica.Syncer) before compacting its log, and never discards an entry
// the engine has not made durable (kv/doc.go's crash argument).
//
// # Requests
//
// KV requests are checked against the group's replicated limits
// (kv.Limits) before anything is proposed: an empty key, a limit exceeded
// or a malformed request is answered INVALID_ARGUMENT with an ErrorDetail
// naming the limit, and nothing reaches the log. gRPC's receive limit is
// set from the request limit (Config.MaxRecvMsgSize), so a request far
// over it is refused (RESOURCE_EXHAUSTED) before it is read.
//
// Writes and session operations are kv commands stamped with the
// proposer's wall clock (only a leader's proposals enter the log) and
// proposed to the group's replica. A follower answers UNAVAILABLE with a
// NOT_LEADER ErrorDetail naming the leader's ID and client address, and
// only when the command never entered the log; once it may have, failures
// are UNAVAILABLE or DEADLINE_EXCEEDED (outcome unknown: the client retries
// with the same session and seq). A command's own failure (a session
// expired, a value grown past its limit) is the state machine's result,
// returned with its ErrorDetail, and is what a retry gets again.
//
// Reads wait for their consistency level, then read the local engine:
// LINEARIZABLE through Replica.ReadIndex (on any replica: a follower asks
// the leader), LEASE through Replica.LeaseRead (the leader's lease, or
// ReadIndex without one), SERIALIZABLE at once. Every response header
// names the node, the group, the applied index of the state it reflects
// and the node's term.
//
// # Fault injection
//
// A node started with Config.EnableFaultInjection (`cairn server
// --enable-fault-injection`; tests and chaos runs only) lets the Admin
// service break it while it runs; without it, both calls below answer
// FAILED_PRECONDITION and nothing sits between the node and its disk or
// network. SetFaults replaces the peer transport's fault rules (loss,
// duplication, delay per peer and direction: grpcnet.Faults).
// SetDiskFaults replaces the storage failpoints (vfs.DiskFaults): every
// group's write-ahead log and snapshot files go through one vfs.Faulty
// per node, so that a write or sync delay makes the disk slow and
// no_space makes it full (ENOSPC on every write, nothing applied). The
// state machine's Pebble engine is not wrapped: the failpoints shape the
// Raft log and snapshot files, which is where the replica handles a full
// disk. Delays are capped at MaxDiskFaultDelay. Status reports both.
//
// On a full disk nothing is lost and no node stops (replica's "Disk
// failures"). A leader whose disk alone is full hands its leadership to a
// follower once they have committed what it holds, and writes go on there
// (a client's write caught at the full leader is retried by the client at
// the new leader after its attempt timeout). When every disk is full the
// leader keeps its leadership, serves reads, and refuses writes before
// they enter the log (UNAVAILABLE: "the leader's disk is full; the write
// was not applied"); the writes it already held commit once space is
// freed. That refusal speaks for one attempt: a client's retry of a write
// the leader already holds gets it too. So it must stay an answer that
// says nothing about execution (such a write ends "outcome unknown" at
// the client's deadline), never a definitive "not executed".
//
// # Goroutines
//
//	gRPC (clients)      one per request: checks, proposes, waits on the
//	                    replica's futures and reads; holds no lock
//	supervisor          one per group: turns a replica's fatal error into
//	                    the node's (Fatal), and applies InitialLimits when
//	                    the node becomes the group's leader
//	replica             one run goroutine per group (package replica)
//	ticker              one per node, shared by its groups
//	transport           the peer transport's own (package grpcnet)
//
// # Shutdown
//
// Stop, in order: stop serving clients (Shutdown first stops accepting
// requests, hands off leadership and lets those in flight finish, for up
// to Config.ShutdownTimeout); stop every replica (what is still pending
// fails); close the peer transport; sync and close every engine and log;
// stop the clock. Nothing is written after Stop returns.
package server

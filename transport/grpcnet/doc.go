// Package grpcnet is cairn's peer transport over gRPC: it carries the Raft
// messages and the chunked snapshot transfers of every group a node hosts,
// over one connection per pair of nodes. Each group's endpoint (a Group)
// implements replica.Transport for the group's replica on the node, and
// feels to it like replica/memnet: Send never blocks, messages are copied
// on the way out, snapshots travel as transport/snapxfer chunks and acks,
// and peers that cannot be reached are reported.
//
// # Usage
//
//	lis, _ := net.Listen("tcp", peerAddr)
//	tr, err := grpcnet.New(grpcnet.Config{
//		NodeID:    1,
//		ClusterID: clusterID,
//		Peers:     map[raft.NodeID]string{2: "10.0.0.2:7001", 3: "10.0.0.3:7001"},
//	}, lis)
//	defer tr.Close()
//
//	g, _ := tr.Register(groupID, nil) // the replica needs its endpoint first
//	r, _ := replica.New(replica.Config{ID: 1, Group: replica.GroupID(groupID), Transport: g, ...})
//	g.Attach(r)
//	...
//	g.Attach(nil)   // the replica stops: its traffic is dropped
//	tr.Unregister(groupID)
//
// A replica's raft.NodeID is the ID of the node that hosts it, so a
// message's To names the peer node to send it to, and a node hosts at most
// one replica of a group. SetPeer and RemovePeer change the address book
// at run time.
//
// # Wire
//
// The Peer service (api/proto/cairn/raft/v1/raft.proto) has two
// bidirectional streams, and node A sends to node B only over streams A
// opens on its connection to B:
//
//	A (client)                                             B (server)
//	Raft stream:
//	  |-- Hello{cluster, from=A, to=B, version} ------------->| check cluster, to == B,
//	  |<------------------------------- Hello{cluster, B, A} -|   version; or FAILED_PRECONDITION
//	  |-- RaftFrame[ {group 7, MsgApp}, {group 9, MsgHeartbeat},
//	  |              {group 7, snapshot Ack}, ... ] ---------->| route by (group, to=B)
//	  |-- RaftFrame[ ... ] ---------------------------------->|
//	Snapshot stream (opened at the first chunk):
//	  |-- Hello ... ------------------------------------------>|
//	  |<------------------------------------------------ Hello |
//	  |-- SnapshotFrame{group 7, Chunk id=.. off=0 MsgSnap} -->| group 7's snapxfer endpoint
//	  |-- SnapshotFrame{group 7, Chunk id=.. off=1M} -------->|
//
// The acknowledgements of B's snapshot receiver go back to A as envelopes
// of B's own Raft stream to A. So every stream carries traffic one way,
// and cutting one direction of the network (a Filter, or a proxy) stops
// exactly that direction. The group ID travels in every envelope and
// snapshot frame; the cluster ID and the two node IDs once per stream, in
// the Hello, and every message, chunk and ack must name the stream's
// nodes as its From and To.
//
// Every frame from the network is decoded with validation (known types,
// non-zero node IDs, snapshot metadata with a valid configuration exactly
// on MsgSnap, a MsgSnap only on the first chunk of a transfer, ...); a
// malformed frame ends the stream with INVALID_ARGUMENT and a log line,
// and the sender reconnects. A message for a group the node does not host
// is dropped and counted (Stats.DroppedUnknownGroup); a snapshot chunk for
// one is answered with a Failed ack, so that the sender gives up at once.
// A stream from a node of another cluster is refused with a log line on
// both sides that says so.
//
// # Delivery
//
// Outbound, each peer has a bounded queue (Config.QueueSize). Send encodes
// each message and offers it to its peer's queue without blocking; a
// message whose peer has no address, whose connection is down (the last
// attempt failed) or whose queue is full is dropped and the peer reported
// unreachable to the sending replica (Handler.ReportUnreachable), which
// then probes that follower instead of streaming to it. When a connection
// fails, what is queued for it is dropped, every attached replica hears
// that the peer is unreachable, and the writer reconnects after a backoff
// that doubles from MinBackoff to MaxBackoff. Snapshot chunks wait for
// room in a small queue of their own (flow control for the snapxfer
// sender); snapxfer recovers lost chunks and acks.
//
// Inbound, a stream's handler steps each message into its replica in the
// order received. Replica.Step blocks while the replica's inbound queue is
// full. A message waits at most StepTimeout for that; a group whose
// replica did not take one in time is then skipped on that stream (its
// messages dropped at once, Stats.DroppedSlow) for ten StepTimeouts before
// it is tried again, so a stuck replica holds up its peers' other groups
// rarely and briefly.
//
// # Fault injection
//
// A Filter (SetFilter) sees every packet on both sides, outbound before it
// is queued and inbound before it is delivered, and may drop, delay or
// duplicate it. Faults is a Filter driven by per-peer, per-direction rules
// that can change at any time: one-way and two-way partitions, loss,
// duplication and delay. Tests in one process and the chaos runner (which
// would expose the rules through the server) use it.
//
// # Goroutines
//
//	gRPC server          one handler goroutine per inbound stream: two per
//	                     peer node (Raft, snapshot), never one per group
//	peer (per node)      the Raft writer, which owns the Raft stream, its
//	                     reconnection and backoff, and the snapshot writer,
//	                     which owns the snapshot stream; plus gRPC's own per
//	                     connection
//	delayer              one per transport: runs what a filter delayed
//	snapxfer             per group, one goroutine per transfer in progress
//	                     on each side (see package snapxfer)
//
// Close cancels them all and waits for each (goleak checks it in the
// tests). A Handler is never called after Close returns.
package grpcnet

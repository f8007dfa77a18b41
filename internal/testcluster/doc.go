// Package testcluster runs a cairn cluster inside a test: N server.Nodes
// in one process, talking real gRPC over 127.0.0.1, each with its own data
// directory, with the means to stop, restart and partition them and
// clients to talk to them. The server's tests and the linearizability
// tests use it.
//
//	c := testcluster.Start(t, testcluster.Options{})   // 3 nodes, stopped at cleanup
//	cl := c.Client()                                    // a client.Client, closed at cleanup
//	lead := c.WaitLeader(ctx, server.DefaultGroup)
//	c.Stop(lead)                                        // as a crash: nothing handed off
//	c.Partition([]raft.NodeID{1}, []raft.NodeID{2, 3})  // through the nodes' fault filters
//	c.Heal()
//	c.Restart(lead)                                     // same data directory and addresses
//
// Partitions are made with each node's grpcnet.Faults (the nodes run with
// fault injection enabled): cutting the link from a to b drops what a
// sends to b (on a's side) and what b receives from a (on b's side). The
// cluster remembers its cuts and applies them again to a restarted node.
//
// Nothing here sleeps to synchronize: WaitLeader and WaitApplied wait on
// the replicas' own notifications.
package testcluster

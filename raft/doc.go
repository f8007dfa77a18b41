// Package raft is cairn's consensus core: the Raft algorithm (Ongaro and
// Ousterhout, "In Search of an Understandable Consensus Algorithm", and
// Ongaro's thesis) as a deterministic state machine.
//
// The core has no goroutines, clock, locks or I/O. Everything enters
// through a Node's methods (Tick, Step, Propose, ReadIndex, Campaign,
// TransferLeadership) and everything leaves as a Ready batch, acknowledged
// with Advance. That is what lets the simulator in raft/rafttest run
// thousands of seeded fault schedules in seconds, and what lets one process
// drive many groups.
//
// # Usage
//
// A driver (package replica) owns a Node and loops:
//
//	for {
//		select {
//		case <-ticker:     node.Tick()
//		case m := <-inbox: node.Step(m)
//		case p := <-props: node.Propose(p...)
//		}
//		for node.HasReady() {
//			rd := node.Ready()
//			send(rd.Messages)                 // 1. may overlap the write
//			persist(rd.Snapshot, rd.Entries,  // 2. durable before 3
//				rd.HardState, rd.MustSync)
//			send(rd.MessagesAfterPersist)     // 3. votes, acks
//			install(rd.Snapshot)              // 4. then apply in order
//			apply(rd.CommittedEntries)
//			serveReads(rd.ReadStates)
//			node.Advance(rd)                  // 5.
//		}
//	}
//
// While a Ready is being processed the driver may keep feeding the node
// (Step, Tick, Propose, ReadIndex…), for example to take in followers'
// acknowledgements while its own write is in flight; what those calls
// produce waits for the next Ready. It must not call Ready again before
// Advance.
//
// # Why this order is crash safe
//
//   - Messages (step 1) depend only on state made durable by earlier
//     batches: a leader's appends and heartbeats, pre-votes, read traffic.
//     A leader that crashes after sending entries it never wrote loses
//     nothing, because its own entries count toward a majority only after
//     Advance reports them durable (thesis §10.2.1).
//   - A granted vote, a candidate's vote request (its new term and vote
//     for itself) and an append acknowledgement vouch for state written in
//     step 2, so they wait for step 3. A node that crashes before step 3
//     has promised nothing.
//   - Committed entries are applied after the entries are durable, so a
//     restart never finds applied state its log cannot explain.
//
// # Configuration
//
// The voter set lives in the log (EntryConfChange entries carrying a
// ConfState) and in snapshots, never in Config. A new group's storage is
// bootstrapped with one configuration entry (BootstrapState). A node uses
// the latest configuration in its log, committed or not (thesis §4.1).
//
// # Defaults
//
// Pre-vote and check-quorum are on. Election timeouts are randomized in
// [ElectionTick, 2*ElectionTick). Proposals are refused past
// MaxUncommittedEntriesSize; MsgApps are pipelined up to MaxInflightMsgs
// per follower.
package raft

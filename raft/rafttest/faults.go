package rafttest

import (
	"fmt"

	"github.com/cairnkv/cairn/raft"
)

// FaultPoint is a place in the processing of one Ready (see raft.Ready for
// the order) where the simulator can crash the node. A crash loses the rest
// of the Ready: whatever was not yet persisted is gone, whatever was not yet
// sent is never sent, and Advance is never called.
type FaultPoint uint8

const (
	// BeforeSend: the Ready was taken and nothing was done with it.
	BeforeSend FaultPoint = iota
	// BeforePersist: Messages were sent, nothing was persisted. A crash
	// here is the one that catches a core putting a vote or an
	// acknowledgement in Messages instead of MessagesAfterPersist.
	BeforePersist
	// AfterPersist: Snapshot, Entries and HardState are durable;
	// MessagesAfterPersist were not sent (the vote was recorded but the
	// candidate never hears of it).
	AfterPersist
	// BeforeApply: MessagesAfterPersist were sent; nothing was applied.
	BeforeApply
	// MidApply: some but not all of CommittedEntries were applied (only
	// for a Ready with at least two of them; otherwise like BeforeApply).
	MidApply
	// BeforeAdvance: everything was done except calling Advance.
	BeforeAdvance

	numFaultPoints
)

func (p FaultPoint) String() string {
	switch p {
	case BeforeSend:
		return "BeforeSend"
	case BeforePersist:
		return "BeforePersist"
	case AfterPersist:
		return "AfterPersist"
	case BeforeApply:
		return "BeforeApply"
	case MidApply:
		return "MidApply"
	case BeforeAdvance:
		return "BeforeAdvance"
	}
	return fmt.Sprintf("FaultPoint(%d)", uint8(p))
}

// Trigger selects the Readys a Fault applies to. Random crashes rarely land
// on the one Ready where a crash matters (a vote granted, a leader's first
// append), so faults are aimed at them.
type Trigger uint8

const (
	// AnyReady matches every Ready.
	AnyReady Trigger = iota
	// GrantsVote matches a Ready that grants a vote (MsgVoteResp, not
	// rejected) in either message list.
	GrantsVote
	// RequestsVote matches a candidate's Ready that asks for votes
	// (MsgVote): the candidate's own vote for itself is in it.
	RequestsVote
	// BecomesLeader matches the Ready that first reports the node as
	// leader: right after a leader change.
	BecomesLeader
	// LeaderAppends matches a leader's Ready that appends entries.
	LeaderAppends
	// AcksAppend matches a follower's Ready that acknowledges entries
	// (MsgAppResp, not rejected).
	AcksAppend
	// Applies matches a Ready with committed entries to apply.
	Applies
	// InstallsSnapshot matches a Ready carrying a snapshot to install.
	InstallsSnapshot
	// AdvancesCommit matches a Ready whose HardState moves Commit.
	AdvancesCommit

	numTriggers
)

func (t Trigger) String() string {
	switch t {
	case AnyReady:
		return "AnyReady"
	case GrantsVote:
		return "GrantsVote"
	case RequestsVote:
		return "RequestsVote"
	case BecomesLeader:
		return "BecomesLeader"
	case LeaderAppends:
		return "LeaderAppends"
	case AcksAppend:
		return "AcksAppend"
	case Applies:
		return "Applies"
	case InstallsSnapshot:
		return "InstallsSnapshot"
	case AdvancesCommit:
		return "AdvancesCommit"
	}
	return fmt.Sprintf("Trigger(%d)", uint8(t))
}

// Fault crashes a node at Point while it processes a Ready matching
// Trigger, with probability Prob, and restarts it RestartAfter ticks later.
type Fault struct {
	Trigger Trigger
	Point   FaultPoint
	// Prob is the chance that a matching Ready crashes the node; values
	// of 0 or less mean 1.
	Prob float64
	// RestartAfter is how many ticks the node stays down; negative means
	// it stays down until the test restarts it. Zero restarts it at the
	// start of the next tick.
	RestartAfter int
	// Max bounds how many crashes this fault causes; zero means no bound.
	Max int

	fired int
}

func (f *Fault) String() string {
	return fmt.Sprintf("crash at %v on %v (p=%.2f, restart after %d)", f.Point, f.Trigger, f.Prob, f.RestartAfter)
}

// matches reports whether rd, taken from a node whose role before this
// Ready was wasRole, is one the trigger aims at.
func (t Trigger) matches(rd *raft.Ready, wasRole, role raft.Role, prevCommit raft.Index) bool {
	anyMsg := func(pred func(*raft.Message) bool) bool {
		for i := range rd.Messages {
			if pred(&rd.Messages[i]) {
				return true
			}
		}
		for i := range rd.MessagesAfterPersist {
			if pred(&rd.MessagesAfterPersist[i]) {
				return true
			}
		}
		return false
	}
	switch t {
	case AnyReady:
		return true
	case GrantsVote:
		return anyMsg(func(m *raft.Message) bool { return m.Type == raft.MsgVoteResp && !m.Reject })
	case RequestsVote:
		return anyMsg(func(m *raft.Message) bool { return m.Type == raft.MsgVote })
	case BecomesLeader:
		return role == raft.Leader && wasRole != raft.Leader
	case LeaderAppends:
		return role == raft.Leader && len(rd.Entries) > 0
	case AcksAppend:
		return anyMsg(func(m *raft.Message) bool { return m.Type == raft.MsgAppResp && !m.Reject })
	case Applies:
		return len(rd.CommittedEntries) > 0
	case InstallsSnapshot:
		return rd.Snapshot != nil
	case AdvancesCommit:
		return !rd.HardState.IsEmpty() && rd.HardState.Commit > prevCommit
	}
	return false
}

package raft

import (
	"fmt"
	"strings"
)

// Deterministic describers for messages, entries and batches. Golden tests,
// simulator traces and log lines all use them, so the same event always
// reads the same way.

// DescribeEntry renders an entry as "term/index Type data".
func DescribeEntry(e Entry) string {
	switch e.Type {
	case EntryNoop:
		return fmt.Sprintf("%d/%d Noop", e.Term, e.Index)
	case EntryConfChange:
		cs, err := UnmarshalConfState(e.Data)
		if err != nil {
			return fmt.Sprintf("%d/%d ConfChange <%v>", e.Term, e.Index, err)
		}
		return fmt.Sprintf("%d/%d ConfChange voters=%v", e.Term, e.Index, cs.Voters)
	}
	return fmt.Sprintf("%d/%d %q", e.Term, e.Index, e.Data)
}

// DescribeEntries renders entries separated by commas.
func DescribeEntries(ents []Entry) string {
	parts := make([]string, len(ents))
	for i, e := range ents {
		parts[i] = DescribeEntry(e)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// DescribeMessage renders a message showing only the fields its type uses.
func DescribeMessage(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %s Term:%d", m.From, m.To, m.Type, m.Term)
	switch m.Type {
	case MsgApp:
		fmt.Fprintf(&b, " Log:%d/%d Commit:%d", m.LogTerm, m.Index, m.Commit)
		if len(m.Entries) > 0 {
			fmt.Fprintf(&b, " Entries:%s", DescribeEntries(m.Entries))
		}
	case MsgAppResp:
		if m.Reject {
			fmt.Fprintf(&b, " Rejected:%d Hint:%d/%d", m.Index, m.LogTerm, m.RejectHint)
		} else {
			fmt.Fprintf(&b, " Index:%d", m.Index)
		}
	case MsgVote, MsgPreVote:
		fmt.Fprintf(&b, " Log:%d/%d", m.LogTerm, m.Index)
		if m.Transfer {
			b.WriteString(" Transfer")
		}
	case MsgVoteResp, MsgPreVoteResp:
		if m.Reject {
			b.WriteString(" Rejected")
		} else {
			b.WriteString(" Granted")
		}
	case MsgSnap:
		fmt.Fprintf(&b, " Snapshot:%s", DescribeSnapshot(*m.Snapshot))
	case MsgHeartbeat:
		fmt.Fprintf(&b, " Commit:%d Round:%d", m.Commit, m.Context)
	case MsgHeartbeatResp:
		fmt.Fprintf(&b, " Round:%d", m.Context)
	case MsgReadIndex:
		fmt.Fprintf(&b, " Batch:%d", m.Context)
	case MsgReadIndexResp:
		if m.Reject {
			fmt.Fprintf(&b, " Batch:%d Rejected", m.Context)
		} else {
			fmt.Fprintf(&b, " Batch:%d Index:%d", m.Context, m.Index)
		}
	}
	return b.String()
}

// DescribeSnapshot renders snapshot metadata.
func DescribeSnapshot(s SnapshotMeta) string {
	return fmt.Sprintf("%d/%d voters=%v", s.Term, s.Index, s.ConfState.Voters)
}

// DescribeHardState renders a HardState.
func DescribeHardState(h HardState) string {
	return fmt.Sprintf("Term:%d Vote:%d Commit:%d", h.Term, h.Vote, h.Commit)
}

// DescribeReady renders a Ready, one item per line, in processing order.
func DescribeReady(rd Ready) string {
	var b strings.Builder
	if rd.SoftState != nil {
		fmt.Fprintf(&b, "Lead:%d Role:%s\n", rd.SoftState.Lead, rd.SoftState.Role)
	}
	for _, m := range rd.Messages {
		fmt.Fprintf(&b, "send %s\n", DescribeMessage(m))
	}
	if rd.Snapshot != nil {
		fmt.Fprintf(&b, "persist snapshot %s\n", DescribeSnapshot(*rd.Snapshot))
	}
	if len(rd.Entries) > 0 {
		fmt.Fprintf(&b, "persist entries %s\n", DescribeEntries(rd.Entries))
	}
	if !rd.HardState.IsEmpty() {
		fmt.Fprintf(&b, "persist state %s\n", DescribeHardState(rd.HardState))
	}
	if rd.MustSync {
		b.WriteString("sync\n")
	}
	for _, m := range rd.MessagesAfterPersist {
		fmt.Fprintf(&b, "send after persist %s\n", DescribeMessage(m))
	}
	if len(rd.CommittedEntries) > 0 {
		fmt.Fprintf(&b, "apply %s\n", DescribeEntries(rd.CommittedEntries))
	}
	for _, rs := range rd.ReadStates {
		fmt.Fprintf(&b, "read %d at index %d\n", rs.ID, rs.Index)
	}
	return b.String()
}

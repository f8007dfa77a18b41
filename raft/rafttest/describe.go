package rafttest

import (
	"fmt"
	"strings"

	"github.com/cairnkv/cairn/raft"
)

// describeMessage renders m on one line, deterministically, e.g.
//
//	1->2 MsgApp term=3 prev=2/5 commit=4 ents=[3/6 3/7]
func describeMessage(m *raft.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %v term=%d", m.From, m.To, m.Type, m.Term)
	switch m.Type {
	case raft.MsgApp:
		fmt.Fprintf(&b, " prev=%d/%d commit=%d ents=%s", m.LogTerm, m.Index, m.Commit, describeEntries(m.Entries))
	case raft.MsgAppResp:
		if m.Reject {
			fmt.Fprintf(&b, " reject index=%d hint=%d/%d", m.Index, m.LogTerm, m.RejectHint)
		} else {
			fmt.Fprintf(&b, " index=%d", m.Index)
		}
	case raft.MsgVote, raft.MsgPreVote:
		fmt.Fprintf(&b, " last=%d/%d", m.LogTerm, m.Index)
		if m.Transfer {
			b.WriteString(" transfer")
		}
	case raft.MsgVoteResp, raft.MsgPreVoteResp, raft.MsgReadIndexResp:
		if m.Reject {
			b.WriteString(" reject")
		}
		if m.Type == raft.MsgReadIndexResp {
			fmt.Fprintf(&b, " index=%d ctx=%d", m.Index, m.Context)
		}
	case raft.MsgSnap:
		if m.Snapshot != nil {
			fmt.Fprintf(&b, " snap=%d/%d", m.Snapshot.Term, m.Snapshot.Index)
		}
	case raft.MsgHeartbeat:
		fmt.Fprintf(&b, " commit=%d ctx=%d", m.Commit, m.Context)
	case raft.MsgHeartbeatResp, raft.MsgReadIndex:
		fmt.Fprintf(&b, " ctx=%d", m.Context)
	}
	return b.String()
}

// describeEntries renders entries as term/index pairs, eliding the middle
// of long runs.
func describeEntries(ents []raft.Entry) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range ents {
		if len(ents) > 6 && i == 3 {
			fmt.Fprintf(&b, " ...%d more...", len(ents)-5)
		}
		if len(ents) > 6 && i >= 3 && i < len(ents)-2 {
			continue
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", ents[i].Term, ents[i].Index)
		if ents[i].Type != raft.EntryNormal {
			fmt.Fprintf(&b, "(%v)", ents[i].Type)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// readySummary is what the trace keeps of a Ready: enough to follow a run
// without holding on to its slices.
type readySummary struct {
	soft       *raft.SoftState
	hard       raft.HardState
	snap       raft.Index
	firstEnt   raft.Index
	lastEnt    raft.Index
	firstApply raft.Index
	lastApply  raft.Index
	msgs, msgA int
	reads      int
}

func summarize(rd *raft.Ready) readySummary {
	r := readySummary{soft: rd.SoftState, hard: rd.HardState, msgs: len(rd.Messages), msgA: len(rd.MessagesAfterPersist), reads: len(rd.ReadStates)}
	if rd.Snapshot != nil {
		r.snap = rd.Snapshot.Index
	}
	if n := len(rd.Entries); n > 0 {
		r.firstEnt, r.lastEnt = rd.Entries[0].Index, rd.Entries[n-1].Index
	}
	if n := len(rd.CommittedEntries); n > 0 {
		r.firstApply, r.lastApply = rd.CommittedEntries[0].Index, rd.CommittedEntries[n-1].Index
	}
	return r
}

func (r readySummary) String() string {
	var parts []string
	if r.soft != nil {
		parts = append(parts, fmt.Sprintf("%v lead=%d", r.soft.Role, r.soft.Lead))
	}
	if !r.hard.IsEmpty() {
		parts = append(parts, fmt.Sprintf("hs{term=%d vote=%d commit=%d}", r.hard.Term, r.hard.Vote, r.hard.Commit))
	}
	if r.snap != 0 {
		parts = append(parts, fmt.Sprintf("snap=%d", r.snap))
	}
	if r.lastEnt != 0 {
		parts = append(parts, fmt.Sprintf("ents=[%d,%d]", r.firstEnt, r.lastEnt))
	}
	if r.lastApply != 0 {
		parts = append(parts, fmt.Sprintf("apply=[%d,%d]", r.firstApply, r.lastApply))
	}
	if r.msgs+r.msgA > 0 {
		parts = append(parts, fmt.Sprintf("msgs=%d+%d", r.msgs, r.msgA))
	}
	if r.reads > 0 {
		parts = append(parts, fmt.Sprintf("reads=%d", r.reads))
	}
	return strings.Join(parts, " ")
}

func describeReady(rd *raft.Ready) string {
	var b strings.Builder
	b.WriteString(summarize(rd).String())
	for i := range rd.Messages {
		fmt.Fprintf(&b, "\n\tsend %s", describeMessage(&rd.Messages[i]))
	}
	for i := range rd.MessagesAfterPersist {
		fmt.Fprintf(&b, "\n\tsend after persist %s", describeMessage(&rd.MessagesAfterPersist[i]))
	}
	return b.String()
}

type traceKind uint8

const (
	evSend traceKind = iota + 1
	evDeliver
	evDrop
	evReady
	evCrash
	evRestart
	evFault
	evNet
	evPropose
	evRead
	evSnapshot
	evNote
)

// traceEvent is one entry of the trace. Only cheap copies are made when it
// is recorded; it is rendered to text only if the run fails.
type traceEvent struct {
	tick uint64
	kind traceKind
	node raft.NodeID
	m    raft.Message
	rd   readySummary
	a, b uint64
	note string
}

func (e *traceEvent) String() string {
	p := fmt.Sprintf("t=%-5d ", e.tick)
	switch e.kind {
	case evSend:
		return p + "send    " + describeMessage(&e.m) + " " + e.note
	case evDeliver:
		return p + "deliver " + describeMessage(&e.m)
	case evDrop:
		return p + "drop    " + describeMessage(&e.m)
	case evReady:
		return p + fmt.Sprintf("ready   %d: %v", e.node, e.rd)
	case evCrash:
		return p + fmt.Sprintf("CRASH   %d", e.node)
	case evRestart:
		return p + fmt.Sprintf("RESTART %d", e.node)
	case evFault:
		return p + fmt.Sprintf("fault   %d: %s", e.node, e.note)
	case evNet:
		return p + "net     " + e.note
	case evPropose:
		return p + fmt.Sprintf("propose %d: index %d term %d %s", e.node, e.a, e.b, e.note)
	case evRead:
		return p + fmt.Sprintf("%-7s %d: id %d", e.note, e.node, e.a)
	case evSnapshot:
		return p + fmt.Sprintf("snap    %d: at %d", e.node, e.a)
	case evNote:
		return p + e.note
	}
	return p + "?"
}

// traceLen is how many recent events a failure report shows.
const traceLen = 300

// traceRing keeps the last traceLen events.
type traceRing struct {
	ev   [traceLen]traceEvent
	next int
	full bool
}

func (r *traceRing) add(e traceEvent) {
	r.ev[r.next] = e
	r.next++
	if r.next == traceLen {
		r.next, r.full = 0, true
	}
}

func (r *traceRing) String() string {
	var b strings.Builder
	start, n := 0, r.next
	if r.full {
		start, n = r.next, traceLen
	}
	for i := range n {
		e := &r.ev[(start+i)%traceLen]
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (s *Sim) record(e traceEvent) {
	e.tick = s.now
	s.trace.add(e)
}

// Note adds a line to the trace that a failure report prints, to mark a
// test's phases.
func (s *Sim) Note(format string, args ...any) {
	s.record(traceEvent{kind: evNote, note: fmt.Sprintf(format, args...)})
}

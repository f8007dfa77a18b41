package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// NodeID names one replica of a group. Zero is never a valid ID: it means
// "nobody" (no vote cast, no known leader).
type NodeID uint64

// None is the zero NodeID: no vote, no leader.
const None NodeID = 0

// Term is a Raft term number (§5.1). Terms only grow.
type Term uint64

// Index is a position in the replicated log. The first real entry has index
// 1; index 0 is the empty prefix that every log shares.
type Index uint64

// ReadID names one ReadIndex request. The caller chooses it and must keep it
// unique among its own outstanding requests; the core echoes it back in the
// ReadState that answers the request.
type ReadID uint64

// Role is the part a node currently plays in its group.
type Role uint8

const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "Follower"
	case PreCandidate:
		return "PreCandidate"
	case Candidate:
		return "Candidate"
	case Leader:
		return "Leader"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// EntryType says how the state machine layer must treat an entry.
type EntryType uint8

const (
	// EntryNormal carries an opaque application command.
	EntryNormal EntryType = iota
	// EntryNoop is appended by every new leader at the start of its term
	// (§8: a leader must commit an entry of its own term before it knows
	// which entries are committed). The state machine ignores it.
	EntryNoop
	// EntryConfChange carries an encoded ConfState: the complete
	// configuration that takes effect when the entry is applied.
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "Normal"
	case EntryNoop:
		return "Noop"
	case EntryConfChange:
		return "ConfChange"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one slot of the replicated log.
type Entry struct {
	Term  Term
	Index Index
	Type  EntryType
	Data  []byte
}

// size is the entry's contribution to the byte limits of Config
// (MaxSizePerMsg, MaxUncommittedEntriesSize, MaxCommittedSizePerReady).
func (e *Entry) size() uint64 { return uint64(len(e.Data)) + 24 }

// payloadSize is what counts toward the uncommitted-size limit: only the
// application's bytes, so that empty entries (no-ops) are never refused.
func (e *Entry) payloadSize() uint64 { return uint64(len(e.Data)) }

// HardState is the part of a node's state that must be durable before the
// node sends any message that depends on it (§5.1, Figure 2 "Persistent
// state on all servers"). Commit is persisted as an optimization only; it
// may be lost, and is relearned from the leader.
type HardState struct {
	Term   Term
	Vote   NodeID
	Commit Index
}

// IsEmpty reports whether h is the zero HardState.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is a group's configuration: who votes. It lives in the log (as
// EntryConfChange entries) and in snapshots, never in a constructor
// argument, so that it is replicated and recovered like any other state.
//
// Invariant: Voters is sorted and has no duplicates.
type ConfState struct {
	Voters []NodeID
}

// NewConfState returns a ConfState with the given voters, sorted and
// deduplicated.
func NewConfState(voters ...NodeID) ConfState {
	v := slices.Clone(voters)
	slices.Sort(v)
	return ConfState{Voters: slices.Compact(v)}
}

// Equal reports whether two configurations have the same voters.
func (c ConfState) Equal(o ConfState) bool { return slices.Equal(c.Voters, o.Voters) }

// IsVoter reports whether id is a voter in c.
func (c ConfState) IsVoter(id NodeID) bool {
	_, ok := slices.BinarySearch(c.Voters, id)
	return ok
}

// confStateVersion is the first byte of an encoded ConfState.
//
// Encoding (do not change; add a new version instead):
//
//	+---------+----------------+------------------+-----+
//	| version | voter count n  | voter 1          | ... |
//	| 1 byte  | uvarint        | uvarint          |     |
//	+---------+----------------+------------------+-----+
const confStateVersion = 1

// maxVoters bounds a decoded configuration so that a corrupt count cannot
// make the decoder allocate without limit.
const maxVoters = 1 << 16

// Marshal encodes c for an EntryConfChange entry's Data.
func (c ConfState) Marshal() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*(1+len(c.Voters)))
	b = append(b, confStateVersion)
	b = binary.AppendUvarint(b, uint64(len(c.Voters)))
	for _, v := range c.Voters {
		b = binary.AppendUvarint(b, uint64(v))
	}
	return b
}

// ErrBadConfState is returned by UnmarshalConfState for bytes that are not
// a valid encoded ConfState.
var ErrBadConfState = errors.New("raft: malformed configuration")

// UnmarshalConfState decodes what ConfState.Marshal produced. It never
// panics; malformed input yields an error wrapping ErrBadConfState.
func UnmarshalConfState(b []byte) (ConfState, error) {
	if len(b) == 0 || b[0] != confStateVersion {
		return ConfState{}, fmt.Errorf("%w: bad version", ErrBadConfState)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxVoters {
		return ConfState{}, fmt.Errorf("%w: bad voter count", ErrBadConfState)
	}
	b = b[k:]
	voters := make([]NodeID, 0, n)
	for range n {
		v, k := binary.Uvarint(b)
		if k <= 0 || v == 0 {
			return ConfState{}, fmt.Errorf("%w: bad voter id", ErrBadConfState)
		}
		b = b[k:]
		voters = append(voters, NodeID(v))
	}
	if len(b) != 0 {
		return ConfState{}, fmt.Errorf("%w: %d trailing bytes", ErrBadConfState, len(b))
	}
	cs := NewConfState(voters...)
	if len(cs.Voters) != len(voters) {
		return ConfState{}, fmt.Errorf("%w: duplicate voter", ErrBadConfState)
	}
	return cs, nil
}

// SnapshotMeta describes a snapshot: the state machine's state after
// applying every entry up to and including Index, whose term is Term, and
// the configuration in force at that point. The core deals in metadata only;
// the snapshot's bytes are streamed by the storage and transport layers.
type SnapshotMeta struct {
	Index     Index
	Term      Term
	ConfState ConfState
}

// IsEmpty reports whether m describes no snapshot at all.
func (m SnapshotMeta) IsEmpty() bool { return m.Index == 0 }

// MessageType says what a Message is.
type MessageType uint8

const (
	// MsgApp is AppendEntries (§5.3): Index and LogTerm name the entry
	// preceding Entries; Commit is the leader's commit index.
	MsgApp MessageType = iota + 1
	// MsgAppResp answers MsgApp. On success Index is the last index the
	// follower now holds matching the leader. On rejection Index echoes the
	// rejected MsgApp's Index, and RejectHint/LogTerm give the follower's
	// best guess of where its log could match (fast backtracking, §5.3).
	MsgAppResp
	// MsgVote is RequestVote (§5.2): Index and LogTerm describe the
	// candidate's last entry (for the election restriction, §5.4.1).
	MsgVote
	// MsgVoteResp answers MsgVote; Reject says whether the vote was denied.
	MsgVoteResp
	// MsgPreVote asks whether the receiver would vote for the sender in
	// Term (the sender's term + 1) without anyone changing term (thesis §9.6).
	MsgPreVote
	// MsgPreVoteResp answers MsgPreVote.
	MsgPreVoteResp
	// MsgSnap is InstallSnapshot (§7): Snapshot describes the snapshot; its
	// bytes travel beside the message through the transport.
	MsgSnap
	// MsgHeartbeat asserts leadership (§5.2) and carries the commit index
	// the receiver may safely adopt. Context is a read round number.
	MsgHeartbeat
	// MsgHeartbeatResp answers MsgHeartbeat, echoing Context.
	MsgHeartbeatResp
	// MsgTimeoutNow tells its receiver to start an election at once,
	// ignoring its timer and any leader lease (leadership transfer,
	// thesis §3.10).
	MsgTimeoutNow
	// MsgReadIndex is a follower asking the leader for a read index
	// (thesis §6.4); Context names the follower's batch of reads.
	MsgReadIndex
	// MsgReadIndexResp answers MsgReadIndex with the read index in Index,
	// or Reject when the leader cannot serve it.
	MsgReadIndexResp
)

func (t MessageType) String() string {
	switch t {
	case MsgApp:
		return "MsgApp"
	case MsgAppResp:
		return "MsgAppResp"
	case MsgVote:
		return "MsgVote"
	case MsgVoteResp:
		return "MsgVoteResp"
	case MsgPreVote:
		return "MsgPreVote"
	case MsgPreVoteResp:
		return "MsgPreVoteResp"
	case MsgSnap:
		return "MsgSnap"
	case MsgHeartbeat:
		return "MsgHeartbeat"
	case MsgHeartbeatResp:
		return "MsgHeartbeatResp"
	case MsgTimeoutNow:
		return "MsgTimeoutNow"
	case MsgReadIndex:
		return "MsgReadIndex"
	case MsgReadIndexResp:
		return "MsgReadIndexResp"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Message is everything nodes of a group say to each other. Which fields
// mean something depends on Type; see the MessageType constants.
type Message struct {
	Type    MessageType
	From    NodeID
	To      NodeID
	Term    Term
	LogTerm Term
	Index   Index
	Entries []Entry
	Commit  Index
	Reject  bool
	// RejectHint is, on a rejected MsgAppResp, the highest index at which
	// the follower's log might still match the leader's; LogTerm is the
	// follower's term at that index.
	RejectHint Index
	// Snapshot is set on MsgSnap.
	Snapshot *SnapshotMeta
	// Context is a read round (MsgHeartbeat, MsgHeartbeatResp) or a
	// follower's read batch (MsgReadIndex, MsgReadIndexResp).
	Context uint64
	// Transfer marks a MsgVote or MsgPreVote sent because of a leadership
	// transfer: receivers grant it even while they believe a leader is alive.
	Transfer bool
}

// ReadState answers a ReadIndex request: once the local state machine has
// applied Index, a read of it reflects every write acknowledged before the
// request was made (linearizable read, thesis §6.4).
type ReadState struct {
	ID    ReadID
	Index Index
}

// SoftState is volatile state that is useful to the driver (who leads) and
// need not be persisted.
type SoftState struct {
	Lead NodeID
	Role Role
}

// Ready is one batch of work the core hands to its driver. The driver must
// do it in this order (doc.go explains why):
//
//  1. Send Messages. They depend only on state made durable by earlier
//     batches, so sending them while this batch is written lets the
//     leader's disk write overlap with replication.
//  2. Persist Snapshot (if any), Entries (replacing any stored entries at
//     the same or higher indexes) and HardState (if not empty), syncing
//     when MustSync is set.
//  3. Send MessagesAfterPersist: votes granted, log appends acknowledged,
//     votes requested by a candidate all vouch for what step 2 wrote.
//  4. Restore the state machine from Snapshot (if any), then apply
//     CommittedEntries in order, and hand ReadStates to the readers waiting
//     for them once their index is applied.
//  5. Call Node.Advance with this Ready.
type Ready struct {
	// SoftState is nil unless the role or leader changed.
	SoftState *SoftState
	// HardState is empty unless it changed.
	HardState HardState
	// Entries are to be appended to stable storage.
	Entries []Entry
	// Snapshot, when non-nil, must be persisted and installed.
	Snapshot *SnapshotMeta
	// CommittedEntries are to be applied to the state machine, in order.
	CommittedEntries []Entry
	// Messages may be sent at once (step 1).
	Messages []Message
	// MessagesAfterPersist may be sent only after step 2 is durable.
	MessagesAfterPersist []Message
	// ReadStates answer ReadIndex requests.
	ReadStates []ReadState
	// MustSync says whether step 2 must be synced to disk before step 3.
	MustSync bool
}

// IsEmpty reports whether the Ready holds no work at all.
func (rd *Ready) IsEmpty() bool {
	return rd.SoftState == nil && rd.HardState.IsEmpty() && len(rd.Entries) == 0 &&
		rd.Snapshot == nil && len(rd.CommittedEntries) == 0 && len(rd.Messages) == 0 &&
		len(rd.MessagesAfterPersist) == 0 && len(rd.ReadStates) == 0
}

// Errors returned by the core. Callers branch on them with errors.Is.
var (
	// ErrNotLeader is returned by Propose and TransferLeadership on a node
	// that is not the leader. Status().Lead may name who is.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrTransferInProgress is returned by Propose while the leader is
	// handing leadership to another node.
	ErrTransferInProgress = errors.New("raft: leadership transfer in progress")
	// ErrUncommittedLimit is returned by Propose when accepting the
	// proposal would push the size of the leader's uncommitted log past
	// Config.MaxUncommittedEntriesSize. Retry after the log commits.
	ErrUncommittedLimit = errors.New("raft: too much uncommitted data; proposal refused")
	// ErrConfChangeInProgress is returned by ProposeConfChange while an
	// earlier configuration change is not yet committed: configurations
	// change one at a time.
	ErrConfChangeInProgress = errors.New("raft: a configuration change is already in progress")
	// ErrEmptyProposal is returned by Propose when given no data.
	ErrEmptyProposal = errors.New("raft: empty proposal")
	// ErrUnknownPeer is returned by Step for a message from or to a node
	// that is not this node, and by TransferLeadership for a target that is
	// not a voter.
	ErrUnknownPeer = errors.New("raft: unknown peer")
	// ErrInvalidMessage is returned by Step for a message that is malformed
	// (a peer that lies or a corrupt frame); the message is ignored.
	ErrInvalidMessage = errors.New("raft: invalid message")
)

// Errors a Storage returns.
var (
	// ErrCompacted means the requested index is behind the first index
	// still held: it has been folded into a snapshot.
	ErrCompacted = errors.New("raft: requested index is compacted")
	// ErrUnavailable means the requested index is beyond the last index.
	ErrUnavailable = errors.New("raft: requested entry is unavailable")
	// ErrSnapshotTemporarilyUnavailable means a snapshot is being made; the
	// core retries later.
	ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot temporarily unavailable")
	// ErrSnapOutOfDate means a snapshot older than the stored one was
	// offered.
	ErrSnapOutOfDate = errors.New("raft: snapshot is older than the stored one")
)

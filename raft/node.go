package raft

// Node is one replica's Raft consensus state machine. It is deterministic:
// no goroutines, clock, locks or I/O. Its inputs are the methods below;
// its output is the Ready batch. A Node is not safe for concurrent use: one
// goroutine (the driver) owns it.
type Node struct {
	r *raft
	// prevSoft and prevHard are what the last accepted Ready reported, so
	// the next one reports only changes.
	prevSoft SoftState
	prevHard HardState
}

// NewNode returns a Node restored from cfg.Storage. A brand-new group's
// storage must first be bootstrapped (see Bootstrap).
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, err := newRaft(&cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{r: r}
	n.prevSoft = r.softState()
	n.prevHard = r.hardState()
	return n, nil
}

// Tick advances the node's logical clock by one tick. Election timeouts and
// heartbeats are counted in ticks.
func (n *Node) Tick() { n.r.tick() }

// Campaign makes the node start an election now (with pre-vote when
// enabled), as if its election timeout had elapsed.
func (n *Node) Campaign() { n.r.hup(false) }

// Propose appends commands to the leader's log, one entry each, and starts
// replicating them. It returns the index of the first new entry and the
// term they were appended in: an entry is committed with this (index, term)
// or not at all, which is how a driver tells its own result from a
// successor's. It returns ErrNotLeader, ErrTransferInProgress,
// ErrUncommittedLimit or ErrEmptyProposal, and then appends nothing.
func (n *Node) Propose(cmds ...[]byte) (Index, Term, error) {
	return n.r.propose(EntryNormal, cmds)
}

// ProposeConfChange proposes cs as the group's new configuration. It takes
// effect on each node as soon as the node appends it (thesis §4.1).
// Membership changes beyond bootstrap arrive with the membership work.
func (n *Node) ProposeConfChange(cs ConfState) (Index, Term, error) {
	return n.r.propose(EntryConfChange, [][]byte{cs.Marshal()})
}

// ReadIndex asks for a linearizable read point (thesis §6.4). The answer is
// a ReadState with the same id in a later Ready; if leadership is lost
// first, no answer comes and the caller retries after its own timeout. On a
// follower the request is forwarded to the leader; with no known leader it
// is dropped.
func (n *Node) ReadIndex(id ReadID) { n.r.readIndex(id) }

// LeaseRead is ReadIndex without the heartbeat round while the leader's
// lease holds: the answer comes in the next Ready, at no network cost. It
// needs check-quorum and assumes bounded clock drift (Config.
// MaxClockDriftTicks); without a valid lease, or on a follower, it is
// ReadIndex.
func (n *Node) LeaseRead(id ReadID) { n.r.leaseRead(id) }

// TransferLeadership asks the leader to hand leadership to the voter to
// (thesis §3.10): proposals are refused while the transfer runs, the target
// is brought up to date and then told to campaign at once. The transfer is
// abandoned after an election timeout.
func (n *Node) TransferLeadership(to NodeID) error { return n.r.transferLeadership(to) }

// Step feeds the node a message received from a peer. Messages from
// unknown senders or that are malformed return an error and change nothing.
func (n *Node) Step(m Message) error { return n.r.step(m) }

// ReportUnreachable tells the leader that a message to id could not be
// delivered, so it stops pipelining to that follower and probes instead.
func (n *Node) ReportUnreachable(id NodeID) { n.r.reportUnreachable(id) }

// ReportSnapshot tells the leader whether the snapshot it asked to send to
// id was delivered. After a failure it probes again, which may send a new
// snapshot.
func (n *Node) ReportSnapshot(id NodeID, ok bool) { n.r.reportSnapshot(id, ok) }

// HasReady reports whether Ready would return a non-empty batch.
func (n *Node) HasReady() bool {
	return n.r.hasReady(n.prevSoft, n.prevHard)
}

// Ready returns the work accumulated since the last Ready. The caller
// must process it as the Ready type describes and then call Advance before
// calling Ready again; other methods may be called in between.
func (n *Node) Ready() Ready {
	rd := n.r.ready(n.prevSoft, n.prevHard)
	if rd.SoftState != nil {
		n.prevSoft = *rd.SoftState
	}
	if !rd.HardState.IsEmpty() {
		n.prevHard = rd.HardState
	}
	return rd
}

// Advance tells the node that rd has been processed: its entries and hard
// state are durable, its snapshot installed and its committed entries
// applied. Only now do the leader's own entries count toward commitment.
func (n *Node) Advance(rd Ready) { n.r.advance(&rd) }

// Status returns a copy of the node's current state.
func (n *Node) Status() Status { return n.r.status() }

// Status describes a node for observers (tests, the status command,
// metrics).
type Status struct {
	ID        NodeID
	Role      Role
	Lead      NodeID
	Term      Term
	Vote      NodeID
	Commit    Index
	Applied   Index
	LastIndex Index
	// Config is the configuration in force.
	Config ConfState
	// LeadTransferee is the target of a leadership transfer in progress.
	LeadTransferee NodeID
	// Progress is set on the leader: what it knows of each voter.
	Progress map[NodeID]ProgressStatus
}

// ProgressStatus is what a leader knows about one follower's log.
type ProgressStatus struct {
	Match    Index
	Next     Index
	State    ProgressState
	Inflight int
	Active   bool
}

// Bootstrap prepares brand-new storage for a group whose initial voters are
// voters: every voter's storage gets the same first entry (a configuration
// entry at index 1, term 1), committed. Starting every replica from an
// identical log keeps the configuration in the log, where later changes
// will be made.
func Bootstrap(s *MemoryStorage, voters ...NodeID) error {
	return bootstrapStorage(s, NewConfState(voters...))
}

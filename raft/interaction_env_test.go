package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// interactionEnv is the harness behind the datadriven scenarios in
// testdata/: a handful of Nodes, each with a MemoryStorage and a trivial
// state machine (the list of applied entries), wired together by a network
// that holds messages until a command delivers them. Nothing happens on its
// own: every tick, every Ready and every delivery is a command, so the
// golden output is exactly what the core did, in order.
//
// The driver follows the Ready contract (doc.go): send Messages, persist
// Snapshot, Entries and HardState, send MessagesAfterPersist, apply,
// Advance. A crash loses what the Node held in memory (its unprocessed
// Ready, its state machine) and keeps what was persisted.
//
// Commands (ids are node IDs; "ids..." means one or more):
//
//	add-nodes N [prevote=bool] [checkquorum=bool] [election=T] [heartbeat=T]
//	          [max-size-per-msg=B] [max-inflight=N] [max-uncommitted=B]
//	    Create nodes 1..N, all voters, bootstrapped (term 1, a committed
//	    configuration entry at index 1). Once per file.
//	campaign ID                    Node.Campaign.
//	tick-election ID               Tick until the election timeout fires
//	                               once (a leader: until its next
//	                               check-quorum point).
//	tick-heartbeat ID              Tick until the leader's next heartbeat
//	                               (HeartbeatTick ticks on other roles).
//	tick ID [count=N]              Tick N times (default 1).
//	propose ID data... | propose ID count=N [prefix=p]
//	                               One Propose call with these commands.
//	process-ready ids...           Handle each node's Ready, if it has one.
//	deliver-msgs [ids...] [drop=(ids)]
//	                               Step every queued message addressed to
//	                               ids into them; discard those to drop.
//	stabilize [ids...]             Handle Readies and deliver messages until
//	                               nothing is left to do (only among ids,
//	                               if given).
//	isolate ID | cut A B... | heal Cut ID from everyone; cut A from each of
//	                               B...; mend every link. A message crossing
//	                               a cut link when delivered is dropped.
//	crash ID | restart ID          Lose the Node; recreate it from storage.
//	transfer-leadership from=ID to=ID
//	read-index ID id=N
//	status ID | raft-log ID
//	compact ID INDEX               Snapshot the node's state machine at
//	                               INDEX and compact its stored log.
type interactionEnv struct {
	nodes map[NodeID]*envNode
	ids   []NodeID
	// queue holds messages sent and not yet delivered, in send order.
	queue []Message
	// cut holds the directed links that drop messages.
	cut map[[2]NodeID]bool
}

type envNode struct {
	id      NodeID
	cfg     Config
	storage *MemoryStorage
	// node is nil while the node is crashed.
	node *Node
	// applied is the state machine: the entries applied, in order, since
	// the last (re)start, and appliedIndex the index of the last one.
	applied      []Entry
	appliedIndex Index
	// reads wait for the state machine to reach their index.
	reads []ReadState
}

func newInteractionEnv() *interactionEnv {
	return &interactionEnv{nodes: map[NodeID]*envNode{}, cut: map[[2]NodeID]bool{}}
}

// discardLogger keeps the core's log lines out of test output: the golden
// files show behaviour through Readies and messages, not logs.
var discardLogger = slog.New(slog.DiscardHandler)

func (env *interactionEnv) handle(t *testing.T, d *datadriven.TestData) string {
	var b strings.Builder
	if err := env.dispatch(t, d, &b); err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	return b.String()
}

func (env *interactionEnv) dispatch(t *testing.T, d *datadriven.TestData, b *strings.Builder) error {
	switch d.Cmd {
	case "add-nodes":
		return env.addNodes(t, d, b)
	case "campaign":
		n, err := env.liveNode(firstID(t, d))
		if err != nil {
			return err
		}
		n.node.Campaign()
		env.writeRole(b, n)
	case "tick-election":
		n, err := env.liveNode(firstID(t, d))
		if err != nil {
			return err
		}
		r := n.node.r
		ticks := r.randomizedElectionTimeout - r.electionElapsed
		if r.role == Leader {
			ticks = r.cfg.ElectionTick - r.electionElapsed
		}
		for range max(ticks, 1) {
			n.node.Tick()
		}
		env.writeRole(b, n)
	case "tick-heartbeat":
		n, err := env.liveNode(firstID(t, d))
		if err != nil {
			return err
		}
		r := n.node.r
		ticks := r.cfg.HeartbeatTick
		if r.role == Leader {
			ticks -= r.heartbeatElapsed
		}
		for range max(ticks, 1) {
			n.node.Tick()
		}
		env.writeRole(b, n)
	case "tick":
		n, err := env.liveNode(firstID(t, d))
		if err != nil {
			return err
		}
		count := 1
		d.MaybeScanArgs(t, "count", &count)
		for range count {
			n.node.Tick()
		}
		env.writeRole(b, n)
	case "propose":
		return env.propose(t, d, b)
	case "process-ready":
		for _, id := range idArgs(t, d) {
			if err := env.processReady(id, b); err != nil {
				return err
			}
		}
	case "deliver-msgs":
		var drop []NodeID
		if arg, ok := d.Arg("drop"); ok {
			for _, v := range arg.Vals {
				drop = append(drop, parseID(t, v))
			}
		}
		for _, id := range drop {
			env.dropMsgs(id, b)
		}
		for _, id := range idArgs(t, d) {
			env.deliverMsgs(id, b)
		}
	case "stabilize":
		ids := idArgs(t, d)
		if len(ids) == 0 {
			ids = env.ids
		}
		return env.stabilize(ids, b)
	case "isolate":
		id := firstID(t, d)
		for _, o := range env.ids {
			if o != id {
				env.setCut(id, o, true)
			}
		}
	case "cut":
		ids := idArgs(t, d)
		for _, o := range ids[1:] {
			env.setCut(ids[0], o, true)
		}
	case "heal":
		clear(env.cut)
	case "crash":
		n := env.nodes[firstID(t, d)]
		n.crash()
		fmt.Fprintf(b, "%d: crashed\n", n.id)
	case "restart":
		n := env.nodes[firstID(t, d)]
		if err := n.restart(); err != nil {
			return err
		}
		env.writeRole(b, n)
	case "transfer-leadership":
		var from, to uint64
		d.ScanArgs(t, "from", &from)
		d.ScanArgs(t, "to", &to)
		n, err := env.liveNode(NodeID(from))
		if err != nil {
			return err
		}
		if err := n.node.TransferLeadership(NodeID(to)); err != nil {
			return err
		}
		env.writeStatus(b, n, false)
	case "read-index":
		n, err := env.liveNode(firstID(t, d))
		if err != nil {
			return err
		}
		var id uint64
		d.ScanArgs(t, "id", &id)
		n.node.ReadIndex(ReadID(id))
	case "status":
		for _, id := range idArgs(t, d) {
			n, err := env.liveNode(id)
			if err != nil {
				return err
			}
			env.writeStatus(b, n, true)
		}
	case "raft-log":
		return env.raftLog(firstID(t, d), b)
	case "compact":
		ids := idArgs(t, d)
		if len(ids) != 2 {
			t.Fatalf("%s: compact ID INDEX", d.Pos)
		}
		n, err := env.liveNode(ids[0])
		if err != nil {
			return err
		}
		at := Index(ids[1])
		if at > n.appliedIndex {
			return fmt.Errorf("node %d has applied only up to %d", n.id, n.appliedIndex)
		}
		snap, err := n.storage.CreateSnapshot(at, n.node.Status().Config)
		if err != nil {
			return err
		}
		if err := n.storage.Compact(at); err != nil {
			return err
		}
		fmt.Fprintf(b, "%d: snapshot %s, log compacted up to %d\n", n.id, DescribeSnapshot(snap), at)
	default:
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	}
	return nil
}

func (env *interactionEnv) addNodes(t *testing.T, d *datadriven.TestData, b *strings.Builder) error {
	if len(env.nodes) > 0 {
		return errors.New("add-nodes: nodes already exist")
	}
	count := int(firstID(t, d))
	prevote, checkquorum := true, true
	d.MaybeScanArgs(t, "prevote", &prevote)
	d.MaybeScanArgs(t, "checkquorum", &checkquorum)
	tmpl := Config{DisablePreVote: !prevote, DisableCheckQuorum: !checkquorum, Logger: discardLogger}
	d.MaybeScanArgs(t, "election", &tmpl.ElectionTick)
	d.MaybeScanArgs(t, "heartbeat", &tmpl.HeartbeatTick)
	d.MaybeScanArgs(t, "max-size-per-msg", &tmpl.MaxSizePerMsg)
	d.MaybeScanArgs(t, "max-inflight", &tmpl.MaxInflightMsgs)
	d.MaybeScanArgs(t, "max-uncommitted", &tmpl.MaxUncommittedEntriesSize)
	return env.bootstrap(count, tmpl, b)
}

// bootstrap creates nodes 1..count from the template tmpl (ID and Storage
// are filled in), all voters, and prints each one's summary to b.
func (env *interactionEnv) bootstrap(count int, tmpl Config, b *strings.Builder) error {
	for i := 1; i <= count; i++ {
		env.ids = append(env.ids, NodeID(i))
	}
	for _, id := range env.ids {
		s := NewMemoryStorage()
		if err := Bootstrap(s, env.ids...); err != nil {
			return err
		}
		cfg := tmpl
		cfg.ID, cfg.Storage, cfg.Seed = id, s, uint64(id)
		node, err := NewNode(cfg)
		if err != nil {
			return err
		}
		n := &envNode{id: id, cfg: cfg, storage: s, node: node}
		// A bootstrapped state machine starts from the configuration entry
		// the bootstrap committed; the node hands it out as committed.
		env.nodes[id] = n
		env.writeRole(b, n)
	}
	return nil
}

// crash loses everything but the storage: the Node, its unprocessed
// Ready, the state machine and the reads waiting on it.
func (n *envNode) crash() {
	n.node = nil
	n.applied, n.appliedIndex, n.reads = nil, 0, nil
}

// restart recreates the Node from storage; the state machine starts from
// the storage's snapshot and re-applies the committed entries after it.
func (n *envNode) restart() error {
	if n.node != nil {
		return fmt.Errorf("node %d is running", n.id)
	}
	node, err := NewNode(n.cfg)
	if err != nil {
		return err
	}
	snap, err := n.storage.Snapshot()
	if err != nil {
		return err
	}
	n.node, n.appliedIndex = node, snap.Index
	return nil
}

func (env *interactionEnv) liveNode(id NodeID) (*envNode, error) {
	n, ok := env.nodes[id]
	if !ok {
		return nil, fmt.Errorf("no node %d", id)
	}
	if n.node == nil {
		return nil, fmt.Errorf("node %d is down", id)
	}
	return n, nil
}

func (env *interactionEnv) setCut(a, b NodeID, cut bool) {
	env.cut[[2]NodeID{a, b}] = cut
	env.cut[[2]NodeID{b, a}] = cut
}

func (env *interactionEnv) propose(t *testing.T, d *datadriven.TestData, b *strings.Builder) error {
	n, err := env.liveNode(firstID(t, d))
	if err != nil {
		return err
	}
	var cmds [][]byte
	if d.HasArg("count") {
		var count int
		prefix := "x"
		d.ScanArgs(t, "count", &count)
		d.MaybeScanArgs(t, "prefix", &prefix)
		for i := 1; i <= count; i++ {
			cmds = append(cmds, []byte(prefix+strconv.Itoa(i)))
		}
	} else {
		for _, arg := range d.CmdArgs[1:] {
			cmds = append(cmds, []byte(arg.Key))
		}
	}
	index, term, err := n.node.Propose(cmds...)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "proposed at %d/%d\n", term, index)
	return nil
}

// processReady handles one Ready of node id in the order the Ready type
// prescribes, printing it.
func (env *interactionEnv) processReady(id NodeID, b *strings.Builder) error {
	n, err := env.liveNode(id)
	if err != nil {
		return err
	}
	if !n.node.HasReady() {
		return nil
	}
	rd := n.node.Ready()
	fmt.Fprintf(b, "> %d handling Ready\n", id)
	writeIndented(b, DescribeReady(rd))
	// 1. Messages may leave before the write.
	env.queue = append(env.queue, rd.Messages...)
	// 2. Persist.
	if rd.Snapshot != nil {
		if err := n.storage.ApplySnapshot(*rd.Snapshot); err != nil {
			return err
		}
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return err
	}
	if !rd.HardState.IsEmpty() {
		n.storage.SetHardState(rd.HardState)
	}
	// 3. Messages that vouch for the write.
	env.queue = append(env.queue, rd.MessagesAfterPersist...)
	// 4. Apply.
	if rd.Snapshot != nil {
		n.applied = nil
		n.appliedIndex = rd.Snapshot.Index
	}
	for _, e := range rd.CommittedEntries {
		if e.Index != n.appliedIndex+1 {
			return fmt.Errorf("node %d applied %d after %d", id, e.Index, n.appliedIndex)
		}
		n.applied = append(n.applied, e)
		n.appliedIndex = e.Index
	}
	n.reads = append(n.reads, rd.ReadStates...)
	n.reads = slices.DeleteFunc(n.reads, func(rs ReadState) bool {
		if rs.Index > n.appliedIndex {
			return false
		}
		fmt.Fprintf(b, "  serve read %d (read index %d, applied %d)\n", rs.ID, rs.Index, n.appliedIndex)
		return true
	})
	// 5.
	n.node.Advance(rd)
	return nil
}

func (env *interactionEnv) takeMsgs(to NodeID) []Message {
	var out []Message
	env.queue = slices.DeleteFunc(env.queue, func(m Message) bool {
		if m.To == to {
			out = append(out, m)
			return true
		}
		return false
	})
	return out
}

func (env *interactionEnv) dropMsgs(to NodeID, b *strings.Builder) {
	msgs := env.takeMsgs(to)
	if len(msgs) == 0 {
		return
	}
	fmt.Fprintf(b, "> dropping messages to %d\n", to)
	for _, m := range msgs {
		fmt.Fprintf(b, "  drop %s\n", DescribeMessage(m))
	}
}

func (env *interactionEnv) deliverMsgs(to NodeID, b *strings.Builder) bool {
	msgs := env.takeMsgs(to)
	if len(msgs) == 0 {
		return false
	}
	fmt.Fprintf(b, "> %d receiving messages\n", to)
	n := env.nodes[to]
	for _, m := range msgs {
		switch {
		case n == nil || n.node == nil:
			fmt.Fprintf(b, "  drop %s (%d is down)\n", DescribeMessage(m), to)
		case env.cut[[2]NodeID{m.From, m.To}]:
			fmt.Fprintf(b, "  drop %s (link cut)\n", DescribeMessage(m))
		default:
			fmt.Fprintf(b, "  %s\n", DescribeMessage(m))
			if err := n.node.Step(m); err != nil {
				fmt.Fprintf(b, "  error: %v\n", err)
			}
			env.reportSnapshot(m, true, b)
			continue
		}
		env.reportSnapshot(m, false, b)
	}
	return true
}

// reportSnapshot tells the sender of a MsgSnap whether it arrived, as a
// driver's transport does once it has streamed (or failed to stream) the
// snapshot's data.
func (env *interactionEnv) reportSnapshot(m Message, ok bool, b *strings.Builder) {
	if m.Type != MsgSnap {
		return
	}
	if from := env.nodes[m.From]; from != nil && from.node != nil {
		from.node.ReportSnapshot(m.To, ok)
		fmt.Fprintf(b, "  report to %d: snapshot to %d delivered=%t\n", m.From, m.To, ok)
	}
}

// stabilize alternates between handling every Ready and delivering every
// message until the nodes in ids are quiet.
func (env *interactionEnv) stabilize(ids []NodeID, b *strings.Builder) error {
	for range 10000 {
		done := true
		for _, id := range ids {
			if n := env.nodes[id]; n.node != nil && n.node.HasReady() {
				done = false
				if err := env.processReady(id, b); err != nil {
					return err
				}
			}
		}
		for _, id := range ids {
			if env.deliverMsgs(id, b) {
				done = false
			}
		}
		if done {
			return nil
		}
	}
	return errors.New("stabilize: no quiescence after 10000 rounds")
}

func (env *interactionEnv) raftLog(id NodeID, b *strings.Builder) error {
	n := env.nodes[id]
	if n == nil {
		return fmt.Errorf("no node %d", id)
	}
	first, _ := n.storage.FirstIndex()
	last, _ := n.storage.LastIndex()
	if snap, _ := n.storage.Snapshot(); !snap.IsEmpty() {
		fmt.Fprintf(b, "snapshot %s\n", DescribeSnapshot(snap))
	}
	ents, err := n.storage.Entries(first, last+1, ^uint64(0))
	if err != nil {
		return err
	}
	for _, e := range ents {
		fmt.Fprintf(b, "%s\n", DescribeEntry(e))
	}
	if n.node != nil {
		for _, e := range n.node.r.log.unstable.entries {
			fmt.Fprintf(b, "%s (unstable)\n", DescribeEntry(e))
		}
	}
	if b.Len() == 0 {
		b.WriteString("log is empty\n")
	}
	return nil
}

// writeRole prints the one-line summary of a node.
func (env *interactionEnv) writeRole(b *strings.Builder, n *envNode) {
	env.writeStatus(b, n, false)
}

func (env *interactionEnv) writeStatus(b *strings.Builder, n *envNode, progress bool) {
	st := n.node.Status()
	fmt.Fprintf(b, "%d: %s term=%d lead=%d vote=%d commit=%d applied=%d last=%d",
		st.ID, st.Role, st.Term, st.Lead, st.Vote, st.Commit, n.appliedIndex, st.LastIndex)
	if st.LeadTransferee != None {
		fmt.Fprintf(b, " transferee=%d", st.LeadTransferee)
	}
	b.WriteString("\n")
	if !progress {
		return
	}
	ids := make([]NodeID, 0, len(st.Progress))
	for id := range st.Progress {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := st.Progress[id]
		fmt.Fprintf(b, "  %d: %s match=%d next=%d", id, p.State, p.Match, p.Next)
		if p.Inflight > 0 {
			fmt.Fprintf(b, " inflight=%d", p.Inflight)
		}
		if id != n.id && !p.Active {
			b.WriteString(" inactive")
		}
		b.WriteString("\n")
	}
}

func writeIndented(b *strings.Builder, s string) {
	for line := range strings.Lines(s) {
		b.WriteString("  ")
		b.WriteString(line)
	}
}

func parseID(t *testing.T, s string) NodeID {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		t.Fatalf("bad node id %q", s)
	}
	return NodeID(id)
}

// idArgs returns the positional (valueless, numeric) arguments as IDs.
func idArgs(t *testing.T, d *datadriven.TestData) []NodeID {
	var ids []NodeID
	for _, arg := range d.CmdArgs {
		if len(arg.Vals) > 0 {
			continue
		}
		ids = append(ids, parseID(t, arg.Key))
	}
	return ids
}

func firstID(t *testing.T, d *datadriven.TestData) NodeID {
	if len(d.CmdArgs) == 0 || len(d.CmdArgs[0].Vals) > 0 {
		t.Fatalf("%s: %s needs a node id", d.Pos, d.Cmd)
	}
	return parseID(t, d.CmdArgs[0].Key)
}

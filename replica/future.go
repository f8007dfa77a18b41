package replica

import (
	"container/heap"
	"context"

	"github.com/cairnkv/cairn/raft"
)

// Proposal is the future of one proposed command (see Replica.ProposeAsync).
// It resolves exactly once, when the outcome is known:
//
//   - the entry was committed and applied: Wait returns the state
//     machine's result for it;
//   - the command was refused before it entered the log (not the leader,
//     too much uncommitted data, ...): the error says why, and the command
//     had no effect;
//   - the entry entered the log but another leader's entry took its
//     index, or an entry of a later term was committed before it:
//     ErrNotCommitted, and the command had no effect;
//   - its index was folded into a snapshot from the leader, which does
//     not say whether the entry was ours: ErrOutcomeUnknown;
//   - the replica stopped first: ErrStopped, and the outcome is unknown.
//
// The proposal is identified by the (index, term) its entry was appended
// at: an entry committed at that index with another term is someone else's,
// so a proposer never receives another command's result.
type Proposal struct {
	cmd  []byte
	done chan struct{}
	// older is another pending proposal at the same index, appended in an
	// earlier term and still waiting to learn its fate (owned by the run
	// goroutine).
	older *Proposal

	// Written by the run goroutine, read by others only after done is
	// closed (the close orders the writes before the reads).
	index  raft.Index
	term   raft.Term
	result any
	err    error
}

func newProposal(cmd []byte) *Proposal {
	return &Proposal{cmd: cmd, done: make(chan struct{})}
}

// finish resolves the proposal. Called once, by the run goroutine (or by
// ProposeAsync for a proposal that never reached it).
func (p *Proposal) finish(result any, err error) {
	p.result, p.err = result, err
	close(p.done)
}

// Done is closed when the proposal's outcome is known.
func (p *Proposal) Done() <-chan struct{} { return p.done }

// Wait waits for the outcome and returns the state machine's result for
// the command, or why there is none.
//
// If ctx ends first, Wait returns ctx.Err() and the outcome is unknown: the
// command may still be committed and applied later (or may already have
// been). Like any request that timed out, retrying it may apply it twice
// unless the command is idempotent or deduplicated by the state machine.
func (p *Proposal) Wait(ctx context.Context) (any, error) {
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Index returns the index and term the command's entry was appended at,
// once Done is closed; both are zero if it never entered the log.
func (p *Proposal) Index() (raft.Index, raft.Term) {
	select {
	case <-p.done:
		return p.index, p.term
	default:
		return 0, 0
	}
}

// waiter is one caller waiting for the state machine to reach an index:
// a linearizable read (whose index the leader tells us first) or a
// WaitApplied call.
type waiter struct {
	ctx context.Context
	// read is set for a ReadIndex call, whose index is not yet known.
	read  bool
	index raft.Index
	done  chan struct{}
	// err is written by the run goroutine before done is closed.
	err error

	// Owned by the run goroutine. pos is 1 + w's position in the wait
	// registry, or 0 while w is not in it. unwatch ends the watch on ctx
	// that takes w out of the registry when ctx ends (see
	// Replica.waitApplied).
	pos     int
	unwatch func() bool
}

func (w *waiter) finish(err error) {
	if w.unwatch != nil {
		w.unwatch()
		w.unwatch = nil
	}
	w.err = err
	close(w.done)
}

// wait waits for w to resolve or ctx to end.
func (w *waiter) wait(ctx context.Context) (raft.Index, error) {
	select {
	case <-w.done:
		return w.index, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// readBatch is the reads that share one ReadIndex request to the core.
type readBatch struct {
	id      raft.ReadID
	issued  uint64 // the replica's tick count when the request was made
	waiters []*waiter
}

// applyWaits is the wait registry: waiters keyed by the index the state
// machine must reach, as a min-heap so that each apply releases the
// waiters it satisfies in O(log n) each, with no polling. A waiter whose
// context ends leaves it at once (remove), so the registry holds only
// callers still waiting.
//
// Invariant: h[i].pos == i+1 for every i.
type applyWaits []*waiter

func (h applyWaits) Len() int           { return len(h) }
func (h applyWaits) Less(i, j int) bool { return h[i].index < h[j].index }
func (h applyWaits) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i+1, j+1
}
func (h *applyWaits) Push(x any) {
	w := x.(*waiter)
	w.pos = len(*h) + 1
	*h = append(*h, w)
}
func (h *applyWaits) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.pos = 0
	return w
}

// add registers w.
func (h *applyWaits) add(w *waiter) { heap.Push(h, w) }

// remove takes w out of the registry, if it is there, and reports whether
// it was.
func (h *applyWaits) remove(w *waiter) bool {
	if w.pos == 0 {
		return false
	}
	heap.Remove(h, w.pos-1)
	return true
}

// release resolves every waiter whose index is at most applied.
func (h *applyWaits) release(applied raft.Index) {
	for h.Len() > 0 && (*h)[0].index <= applied {
		heap.Pop(h).(*waiter).finish(nil)
	}
}

// transfer is a TransferLeadership call waiting for its target to lead.
type transfer struct {
	to       raft.NodeID
	deadline uint64 // in the replica's ticks
	done     chan error
}

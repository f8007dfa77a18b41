package replica

import (
	"context"

	"github.com/cairnkv/cairn/raft"
)

// LeaseRead is ReadIndex served from the leader's lease when it holds
// (raft.Node.LeaseRead, thesis §6.4.1): a leader whose lease is valid
// answers at once from its commit index, without a round of heartbeats;
// otherwise (no valid lease, a follower, check-quorum off) it is exactly
// ReadIndex. It waits, as ReadIndex does, until this replica has applied
// the index, and returns it.
//
// A lease read is linearizable provided no node's clock gains more than
// raft.Config.MaxClockDriftTicks ticks on the leader's over one election
// timeout (the assumption the core documents). A read that is not
// answered within an election timeout is asked again as a plain ReadIndex.
func (r *Replica) LeaseRead(ctx context.Context) (raft.Index, error) {
	w := &waiter{ctx: ctx, read: true, done: make(chan struct{})}
	err := r.call(ctx, func() {
		r.nextReadID++
		b := &readBatch{id: r.nextReadID, issued: r.tick, waiters: []*waiter{w}}
		r.reads[b.id] = b
		r.node.LeaseRead(b.id)
	})
	if err != nil {
		return 0, err
	}
	return w.wait(ctx)
}

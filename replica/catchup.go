package replica

import "github.com/cairnkv/cairn/raft"

// This file is the catch-up mode of a replica that starts from an empty
// log store: no hard state, no entries, no snapshot. Every replica of a
// new group starts from the bootstrap state (raft.BootstrapState), so an
// empty store means the replica is joining an existing group, or is being
// repaired: its data directory was wiped (docs/storage.md) and it starts
// again under its old ID.
//
// Such a replica has forgotten whom it voted for and which entries it
// acknowledged. If it voted now, it could vote twice in a term it voted in
// before, or help elect a candidate that lacks entries committed with its
// own (forgotten) acknowledgement: either way a committed entry could be
// lost. So, until it has caught up, it neither votes nor campaigns: it
// drops vote and pre-vote requests and does not tick its core (whose only
// use of ticks on a follower is the election timer). It still accepts
// appends and snapshots from the leader and acknowledges what it has
// written, which is all a follower's acknowledgement has ever promised.
//
// It has caught up once it has applied an entry of the term of the leader
// it follows. That leader was elected by replicas that kept their state (or
// caught up themselves), so it holds every entry committed before this
// replica lost its data (Leader Completeness, §5.4), and all of them
// precede its term's first entry, which this replica has now applied.
//
// What remains unsafe, and why a replaced disk should eventually rejoin
// under a new ID through a membership change: a leader of an older term
// that is paused for longer than an election timeout (so it never noticed
// its successor) could, on waking, be followed by this replica and commit
// with its help entries that conflict with ones committed after it was
// paused. docs/storage.md says more.

// maybeCaughtUp ends catch-up mode once the replica has applied an entry
// of its leader's term.
func (r *Replica) maybeCaughtUp() {
	if r.lead == raft.None || r.applied == 0 || r.appliedTerm != r.term {
		return
	}
	r.catchingUp = false
	r.logger.Info("caught up with the leader: voting and campaigning again",
		"term", uint64(r.term), "lead", uint64(r.lead), "applied", uint64(r.applied))
}

// isEmptyLog reports whether a log store holds no state at all.
func isEmptyLog(log LogStore) (bool, error) {
	hs, _, err := log.InitialState()
	if err != nil {
		return false, err
	}
	last, err := log.LastIndex()
	if err != nil {
		return false, err
	}
	snap, err := log.Snapshot()
	if err != nil {
		return false, err
	}
	return hs.IsEmpty() && last == 0 && snap.IsEmpty(), nil
}

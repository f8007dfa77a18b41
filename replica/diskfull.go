package replica

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/cairnkv/cairn/raft"
)

// This file is what a replica does when its disk is full. Everything here
// runs on the run goroutine.
//
// The log store refuses a Save it has no room for, having written nothing
// (LogStore's contract; *wal.WAL finds out when it cannot preallocate its
// next segment), and stays usable. The replica then holds the Ready's
// unwritten state in the core and retries writing it at every tick:
//
//   - It sends nothing that vouches for what it could not write: the
//     Ready's MessagesAfterPersist (votes, vote requests, append
//     acknowledgements) are dropped, as a network may drop them. A follower
//     whose disk is full never acknowledges entries it does not hold, and
//     never grants a vote it could not record.
//   - It applies only the committed entries its log store already holds
//     (matched by index and term, so they are the committed ones), and
//     hands the core an Advance that reports exactly that and nothing
//     else: the core keeps the rest unstable and hands it out again in the
//     next Ready (entries, snapshot, committed entries). The hard state is
//     the one thing the core reports only when it changes, so the replica
//     keeps the unwritten one and writes it with the next Save.
//   - It keeps serving reads: read states are answers from the leader and
//     do not depend on this node's disk, so they are served once the index
//     they name is applied. Serializable reads of the state machine never
//     touch the disk.
//   - It processes at most one Ready per tick while the disk is full, each
//     one a retry of the write. Messages the core produces meanwhile go out
//     with the next one, a tick late at most; a leader's heartbeats, made
//     at ticks, go out at once.
//   - A leader refuses proposals with ErrNoSpace before they reach the
//     core, so that what it holds is bounded (by what it had accepted, at
//     most raft.Config.MaxUncommittedEntriesSize), and it keeps its
//     leadership: a group whose every disk is full keeps serving
//     linearizable reads, and takes the held writes as soon as space is
//     freed. If the followers have committed everything the leader holds
//     without it, the leader hands one of them its leadership, so that a
//     group whose leader alone is full goes on taking writes.
//   - A follower holds what its leader sends it until that exceeds
//     MaxUncommittedEntriesSize; then it restarts its core from the log
//     store, as a process restart would, dropping what it held (the leader
//     sends it again).
//
// A crash at any point is as safe as in the ordinary Ready order: the
// core's state beyond the disk's was never vouched for.

// fullDisk is the replica's state while its disk is full.
type fullDisk struct {
	on bool
	// hs is the newest hard state the core reported but no Save wrote,
	// and sync says whether writing it needs a sync (a changed term or
	// vote).
	hs   raft.HardState
	sync bool
	// retryAt is the tick count at which the next Ready (a retry) may be
	// processed.
	retryAt uint64
}

// isNoSpace reports whether a log store's error says the disk is full.
func isNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC)
}

// persist is step 2 of a Ready: it writes rd's snapshot, entries and hard
// state, adding a hard state that an earlier, failed Save did not write.
// It reports whether the write happened. A full disk is not an error;
// anything else is fatal.
func (r *Replica) persist(rd *raft.Ready) (bool, error) {
	hs, sync := rd.HardState, rd.MustSync
	if r.full.on {
		if hs.IsEmpty() {
			hs = r.full.hs
		}
		sync = sync || r.full.sync
	}
	err := r.cfg.Log.Save(hs, rd.Entries, rd.Snapshot, sync)
	if err == nil {
		if r.full.on {
			r.full = fullDisk{}
			r.logger.Info("disk accepts writes again", "term", uint64(hs.Term))
		}
		if !hs.IsEmpty() {
			r.term = hs.Term
		}
		return true, nil
	}
	if !isNoSpace(err) {
		return false, fmt.Errorf("%w: persist ready: %w", ErrLogFailed, err)
	}
	if !r.full.on {
		r.logger.Warn("disk full: holding what could not be written, retrying at every tick; proposals are refused and nothing unwritten is acknowledged",
			"term", uint64(r.term), "role", r.role.String(), "err", err)
	}
	r.full.on = true
	if !rd.HardState.IsEmpty() {
		r.full.hs = rd.HardState
	}
	r.full.sync = sync
	r.full.retryAt = r.tick + 1
	return false, nil
}

// holdReady finishes a Ready whose Save found the disk full (see above):
// it applies the committed entries the log already holds, serves the read
// states, and advances the core by exactly that, or restarts the core if
// this follower holds too much.
func (r *Replica) holdReady(rd *raft.Ready) error {
	var durable []raft.Entry
	if rd.Snapshot == nil { // entries after an uninstalled snapshot wait for it
		durable = r.durablePrefix(rd.CommittedEntries)
	}
	if err := r.apply(durable); err != nil {
		return err
	}
	r.serveReads(rd.ReadStates)
	r.waits.release(r.applied)
	if r.role != raft.Leader && entriesSize(rd.Entries) > r.maxHeld() {
		return r.restartCore()
	}
	r.node.Advance(raft.Ready{CommittedEntries: durable})
	if r.role == raft.Leader {
		r.handOff()
	}
	return nil
}

// durablePrefix returns the longest prefix of the committed entries ents
// that the log store holds: the same index and term, so the same entry.
func (r *Replica) durablePrefix(ents []raft.Entry) []raft.Entry {
	for i := range ents {
		if t, err := r.cfg.Log.Term(ents[i].Index); err != nil || t != ents[i].Term {
			return ents[:i]
		}
	}
	return ents
}

// maxHeld is how many bytes of entries a follower holds unwritten before
// it drops them.
func (r *Replica) maxHeld() uint64 {
	if n := r.cfg.Raft.MaxUncommittedEntriesSize; n > 0 {
		return n
	}
	return raft.DefaultMaxUncommittedEntriesSize
}

func entriesSize(ents []raft.Entry) uint64 {
	var n uint64
	for i := range ents {
		n += uint64(len(ents[i].Data))
	}
	return n
}

// restartCore replaces the core with one created from the log store and
// the state machine's applied index, as a restart of the process would
// (the state machine holds only durable entries), dropping whatever the
// old core held unwritten.
func (r *Replica) restartCore() error {
	node, err := r.newNode()
	if err != nil {
		return fmt.Errorf("%w: restart the consensus core: %w", ErrLogFailed, err)
	}
	r.logger.Info("disk full: dropped what could not be written; restarted the consensus core", "term", uint64(r.term))
	r.node = node
	r.full = fullDisk{}
	st := node.Status()
	r.lead, r.role, r.term = st.Lead, st.Role, st.Term
	r.publishLeader()
	// Reads asked of the old core will never be answered.
	r.retryReads(true)
	return nil
}

// handOff transfers the leadership of a leader whose disk is full to a
// follower that holds everything the leader does, once the followers have
// committed all of it without the leader: they can then take writes
// without it. While they have not, the leader keeps its leadership, so
// that the group keeps serving reads (a new leader could not commit even
// its first entry without a quorum that has room).
func (r *Replica) handOff() {
	st := r.node.Status()
	if st.Role != raft.Leader || st.LeadTransferee != raft.None || st.Commit < st.LastIndex {
		return
	}
	to := raft.None
	for id, pr := range st.Progress {
		if id != r.id && pr.Match >= st.LastIndex && (to == raft.None || id < to) {
			to = id
		}
	}
	if to == raft.None {
		return
	}
	if err := r.node.TransferLeadership(to); err != nil {
		r.logger.Warn("disk full: cannot hand leadership off", "term", uint64(r.term), "to", uint64(to), "err", err)
		return
	}
	r.logger.Info("disk full: handing leadership to a follower that holds the whole log", "term", uint64(r.term), "to", uint64(to))
}

// noSpaceRefusal returns the error a proposal gets from a leader whose
// disk is full, or nil if it may go to the core.
func (r *Replica) noSpaceRefusal() error {
	if !r.full.on || r.role != raft.Leader {
		return nil
	}
	return fmt.Errorf("%w: replica %d refuses writes until its disk has room for what it holds", ErrNoSpace, r.id)
}

package rafttest

import (
	"fmt"
	"math/rand/v2"

	"github.com/cairnkv/cairn/raft"
)

// The Figure 8 adversary.
//
// Figure 8 of the paper (§5.4.2) is why a leader commits by counting
// replicas only entries of its own term: an entry X of an earlier term can
// sit on a majority and still be overwritten, by a node whose last entry is
// of a later term than X's but which never received X. A core that breaks
// the rule is caught by the checker the moment it commits such an X while
// such a node exists (see checkQuorumHolds), but random chaos almost never
// builds that state: each new leader's no-op travels with X or right behind
// it, and once the no-op is on a majority X is committed for real. The
// adversary builds it on purpose, round after round:
//
//  1. A random node that is up campaigns (after the followers' lease has
//     run out, with check-quorum on), so leaders are elected among nodes
//     with stale and diverging logs.
//  2. During the round, appends (MsgApps with entries, sent one entry per
//     message when Options.MaxSizePerMsg is 1) travel only along a random
//     set of links, and are lost at random even there: each leader's
//     entries, its no-op first, reach only some nodes, and a follower can
//     receive an old entry X without the no-op behind it.
//  3. Proposals are rare, so the no-op is mostly the only entry of its
//     term.
//  4. The round's leader is crashed (or cut off) right after, and stays out
//     for a round or three, keeping a majority up: the next round elects
//     someone else.

// Figure8Options shapes the Figure 8 adversary (Sim.RunFigure8).
type Figure8Options struct {
	// Rounds is how many elections the adversary forces.
	Rounds int
	// Reach is the chance that, in a round, appends from a node reach
	// another one; Loss the chance that an append that may reach its
	// destination is lost anyway.
	Reach, Loss float64
	// Isolate cuts each round's leader off from everyone instead of
	// crashing it.
	Isolate bool
	// PPropose and PRead are the chances that a round's leader is given a
	// proposal, and that a node is asked for a read (see randomRead).
	PPropose, PRead float64
}

func (o Figure8Options) String() string {
	how := "crash"
	if o.Isolate {
		how = "isolate"
	}
	return fmt.Sprintf("{rounds=%d reach=%.2f loss=%.2f %s propose=%.2f read=%.2f}", o.Rounds, o.Reach, o.Loss, how, o.PPropose, o.PRead)
}

// NewFigure8ScheduleConfig draws a schedule whose chaotic phase is the
// Figure 8 adversary (see RunFigure8) instead of random chaos: three or
// five nodes, one entry per MsgApp, check-quorum and pre-vote on or off,
// leaders crashed or cut off, on a perfect or an unreliable network. The
// final phase is RunSchedule's.
func NewFigure8ScheduleConfig(seed uint64) ScheduleConfig {
	r := rand.New(rand.NewPCG(seed, 0xf1605e8))
	c := ScheduleConfig{Seed: seed}
	o := &c.Options
	o.Seed = seed
	o.Nodes = 3 + 2*r.IntN(2)
	o.MaxSizePerMsg = 1
	o.DisableCheckQuorum = r.IntN(2) == 0
	o.DisablePreVote = r.IntN(4) == 0
	if r.IntN(3) == 0 {
		o.SnapshotEvery, o.SnapshotKeep = 4+r.IntN(8), r.IntN(3)
	}
	f := Figure8Options{Rounds: 80 + r.IntN(40), Reach: 0.3, Loss: 0.3, PPropose: 0.25, PRead: 0.2}
	f.Isolate = r.IntN(2) == 0
	if r.IntN(2) == 0 {
		o.Net = NetOptions{Loss: 0.1 * r.Float64(), Dup: 0.05 * r.Float64(), Reorder: true, MaxDelay: 1 + r.IntN(3)}
	}
	c.Figure8 = &f
	return c
}

// RunFigure8 runs the Figure 8 adversary on s, drawing its choices from r,
// and leaves every node it took out up and connected again.
func (s *Sim) RunFigure8(r *rand.Rand, o Figure8Options) {
	s.tb.Helper()
	ids := s.IDs()
	// back[id] is the round in which a node taken out returns; zero while
	// it is in. At most maxOut are out, so a majority can always elect.
	back := make([]int, len(ids)+1)
	maxOut := (len(ids) - 1) / 2
	out := 0
	bringBack := func(id raft.NodeID) {
		if o.Isolate {
			s.Reconnect(id)
		} else {
			s.Restart(id)
		}
		back[id] = 0
		out--
	}
	reach := make([][]bool, len(ids)+1)
	for i := range reach {
		reach[i] = make([]bool, len(ids)+1)
	}
	undrop := s.DropIf(func(m raft.Message) bool {
		return carriesEntries(&m) && (!reach[m.From][m.To] || r.Float64() < o.Loss)
	})
	defer undrop()
	var in []raft.NodeID
	for round := 1; round <= o.Rounds && !s.failed; round++ {
		for _, id := range ids {
			if back[id] != 0 && back[id] <= round {
				bringBack(id)
			}
		}
		for _, a := range ids {
			for _, b := range ids {
				reach[a][b] = r.Float64() < o.Reach
			}
		}
		if !s.opts.DisableCheckQuorum {
			// Followers that heard from a leader within an election
			// timeout refuse to vote (the lease): wait it out.
			s.Run(s.electionTick())
		}
		in = in[:0]
		for _, id := range ids {
			if back[id] == 0 {
				in = append(in, id)
			}
		}
		c := in[r.IntN(len(in))]
		s.Note("figure 8 round %d: %d campaigns", round, c)
		s.Campaign(c)
		s.RunUntil(2*s.net.opts.MaxDelay+2, func() bool {
			role := s.nodes[c].role
			return role != raft.PreCandidate && role != raft.Candidate
		})
		l := s.LeaderAmong(in)
		if l == raft.None {
			s.Run(r.IntN(s.electionTick()))
			continue
		}
		if r.Float64() < o.PPropose {
			s.Propose(l, fmt.Appendf(nil, "f8.%d", round))
		}
		if r.Float64() < o.PRead {
			s.randomRead(r)
		}
		s.Run(r.IntN(3))
		if s.failed {
			return
		}
		if out == maxOut {
			// Bring back the node out longest (the lowest ID among ties).
			first := raft.None
			for _, id := range ids {
				if back[id] != 0 && (first == raft.None || back[id] < back[first]) {
					first = id
				}
			}
			bringBack(first)
		}
		if o.Isolate {
			s.Isolate(l)
		} else {
			s.Crash(l)
		}
		back[l] = round + 1 + r.IntN(3)
		out++
	}
	for _, id := range ids {
		if back[id] != 0 {
			bringBack(id)
		}
	}
}

// carriesEntries reports whether m is an append with entries.
func carriesEntries(m *raft.Message) bool { return m.Type == raft.MsgApp && len(m.Entries) > 0 }

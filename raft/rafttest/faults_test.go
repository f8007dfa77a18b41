package rafttest

import (
	"testing"

	"github.com/cairnkv/cairn/raft"
)

// Targeted fault points: random crashes rarely land on the one Ready where
// a crash matters, so each run here aims a crash at one kind of Ready (a
// vote granted, a leader's first append, an acknowledgement, ...) at one
// point of its processing, on top of a randomized schedule of proposals,
// reads, partitions and elections. Every step is checked as usual.
func TestTargetedFaults(t *testing.T) {
	triggers := []Trigger{GrantsVote, RequestsVote, BecomesLeader, LeaderAppends, AcksAppend, Applies, InstallsSnapshot, AdvancesCommit}
	points := []FaultPoint{BeforePersist, AfterPersist, BeforeApply, MidApply, BeforeAdvance}
	const perCombo = 12
	for _, trig := range triggers {
		t.Run(trig.String(), func(t *testing.T) {
			for _, p := range points {
				t.Run(p.String(), func(t *testing.T) {
					t.Parallel()
					for k := range uint64(perCombo) {
						seed := 1000*uint64(trig) + 100*uint64(p) + k + 1
						if *seedFlag != 0 {
							if k > 0 {
								break
							}
							seed = *seedFlag
						}
						c := targetedConfig(seed, Fault{Trigger: trig, Point: p, Prob: 0.5, RestartAfter: int(seed % 5)})
						c.Options.Trace = *traceFlag
						s := RunSchedule(t, c)
						if s.Failed() {
							return
						}
					}
				})
			}
		})
	}
}

// targetedConfig is a randomized schedule shaped to produce the Readys a
// fault aims at: frequent elections (campaigns, transfers, partitions), a
// busy log with snapshots and lagging followers, and that one fault.
func targetedConfig(seed uint64, f Fault) ScheduleConfig {
	c := newChaosScheduleConfig(seed)
	c.Options.Faults = []Fault{f}
	c.Options.SnapshotEvery, c.Options.SnapshotKeep = 5, int(seed%3)
	c.Ticks = 120
	c.PPropose = 0.7
	c.PCrash = 0.01
	c.PNet = 0.05
	c.PCampaign = 0.03
	c.PTransfer = 0.02
	c.PCalm = 0 // calm would pause the fault
	return c
}

// A vote must be durable before it is sent (§5.2, Figure 2: votedFor is
// persistent state). The scenario: nodes 1 and 2 are candidates in the same
// term; node 3 grants its vote to 1 and crashes before its Ready is
// persisted; it restarts and is asked by 2. A node that sent the vote
// before writing it has forgotten it and votes again: two leaders in one
// term. The contract checks are off, so it is the crash that must catch it.
func TestVoteDurableBeforeSent(t *testing.T) {
	for _, point := range []FaultPoint{BeforePersist, AfterPersist} {
		t.Run(point.String(), func(t *testing.T) {
			s := newSim(t, 1, Options{Nodes: 3, DisablePreVote: true, SkipContractChecks: true})
			s.Run(1)
			// 1 and 2 must not hear each other's requests (each would just
			// be refused), and 2's request to 3 waits until 3 restarts.
			s.DropIf(func(m raft.Message) bool {
				return m.Type == raft.MsgVote && (m.From == 1 && m.To == 2 || m.From == 2 && m.To == 1)
			})
			release := s.Hold(func(m raft.Message) bool { return m.Type == raft.MsgVote && m.From == 2 && m.To == 3 })
			crashed := false
			s.CrashHook = func(id raft.NodeID, p FaultPoint, rd *raft.Ready) bool {
				if id != 3 || p != point || crashed || !GrantsVote.matches(rd, 0, 0, 0) {
					return false
				}
				crashed = true
				return true
			}
			s.Campaign(1)
			s.Campaign(2)
			s.Settle()
			if !crashed {
				s.Fatalf("node 3 never granted a vote")
			}
			s.Restart(3)
			release()
			s.Settle()
			// A correct core: before the write, 3's vote was never sent,
			// so 2 gets it after the restart; after the write, 3 still
			// remembers voting for 1 and refuses 2, and nobody wins this
			// term. The Sim has checked that no node voted twice.
			if ls := s.Leaders(); len(ls) > 1 {
				s.Fatalf("leaders %v after the vote race; want at most one", ls)
			}
			s.Heal()
			s.CheckLiveness(s.IDs(), LivenessTicks(s.opts))
		})
	}
}

// The election restriction (§5.4.1): a node whose log lacks committed
// entries cannot win an election, even when the only other live node has
// no leader to be loyal to. Here node 3 missed entries while cut off; the
// leader crashes; 3 campaigns. It must lose (the Sim would report it
// becoming leader without committed entries).
func TestElectionRestriction(t *testing.T) {
	for _, seed := range seeds(1, 2, 3) {
		s := newSim(t, seed, Options{Nodes: 3})
		l := waitLeader(s)
		stale := except(s, l)[1]
		other := except(s, l)[0]
		s.Isolate(stale)
		for i := range 5 {
			s.Agree(val("c%d", i), 2, liveness)
		}
		s.Crash(l)
		// other cannot campaign (its messages go nowhere) until its lease
		// on the dead leader has run out; then stale comes back and tries.
		undrop := s.DropIf(func(m raft.Message) bool { return m.From == other })
		s.Run(2 * et)
		undrop()
		s.Reconnect(stale)
		s.DropIf(func(m raft.Message) bool {
			return m.From == other && (m.Type == raft.MsgVote || m.Type == raft.MsgPreVote)
		})
		s.Campaign(stale)
		s.Run(3 * et)
		if s.Status(stale).Role == raft.Leader {
			s.Fatalf("node %d, missing committed entries, won an election", stale)
		}
		s.Heal()
		s.Restart(l)
		s.Agree(val("end"), 3, liveness)
	}
}

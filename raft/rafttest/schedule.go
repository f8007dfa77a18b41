package rafttest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairnkv/cairn/raft"
)

// livenessTimeouts bounds, in election timeouts, how long a connected, live
// majority may take to elect a leader and commit a proposal once the
// network is healed. With pre-vote, a healed group may first wait out a
// stale leader's lease and a follower's randomized timeout, and each split
// vote costs a round; over 27,000 schedules the worst took 6.7 timeouts
// (p99: 3). Without pre-vote a node with a stale log keeps disrupting the
// group (each of its elections resets everyone's timers) until a node with
// a good log times out first: the worst of 3,000 took 15.6 timeouts.
const (
	livenessTimeouts          = 10
	livenessTimeoutsNoPreVote = 25
)

// LivenessTicks returns the liveness bound, in ticks, for a group
// configured by o.
func LivenessTicks(o Options) int {
	et := o.ElectionTick
	if et == 0 {
		et = raft.DefaultElectionTick
	}
	if o.DisablePreVote {
		return livenessTimeoutsNoPreVote * et
	}
	return livenessTimeouts * et
}

// ScheduleConfig is what one randomized schedule was drawn to be. It is
// derived entirely from the seed; Describe prints it in failure reports.
type ScheduleConfig struct {
	Seed    uint64
	Options Options
	// Ticks is the length of the chaotic phase.
	Ticks int
	// Per-tick probabilities of each kind of action. Reads are ReadIndex
	// or LeaseRead, even odds.
	PPropose, PRead, PCrash, PNet, PTransfer, PCampaign, PProbe float64

	// PCalm is the per-tick probability of a calm stretch (see
	// calmStretch), in which the liveness monitor can check the group.
	PCalm float64

	// Figure8, when set, replaces the chaotic phase with the Figure 8
	// adversary (see NewFigure8ScheduleConfig); the per-tick probabilities
	// are then unused.
	Figure8 *Figure8Options
}

// figure8Share is the share of NewScheduleConfig's schedules that run the
// Figure 8 adversary instead of random chaos: one in figure8Share.
const figure8Share = 50

// NewScheduleConfig draws a schedule's shape from seed: cluster size,
// network, snapshots, the core's options, targeted faults and how busy the
// chaos is. One schedule in figure8Share is a Figure 8 schedule
// (NewFigure8ScheduleConfig) instead; which ones is drawn from a stream of
// its own, so the others keep their shape.
func NewScheduleConfig(seed uint64) ScheduleConfig {
	if rand.New(rand.NewPCG(seed, 0xf18)).IntN(figure8Share) == 0 {
		return NewFigure8ScheduleConfig(seed)
	}
	return newChaosScheduleConfig(seed)
}

// newChaosScheduleConfig draws a schedule of random chaos.
func newChaosScheduleConfig(seed uint64) ScheduleConfig {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	c := ScheduleConfig{Seed: seed}
	o := &c.Options
	o.Seed = seed
	switch p := r.Float64(); {
	case p < 0.6:
		o.Nodes = 3
	case p < 0.95:
		o.Nodes = 5
	default:
		o.Nodes = 7
	}
	if r.IntN(2) == 0 {
		o.Net.Loss = r.Float64() * 0.15
	}
	if r.IntN(3) == 0 {
		o.Net.Dup = r.Float64() * 0.1
	}
	o.Net.Reorder = r.IntN(2) == 0
	o.Net.MaxDelay = r.IntN(4)
	switch r.IntN(3) {
	case 1:
		o.SnapshotEvery, o.SnapshotKeep = 4, r.IntN(3)
	case 2:
		o.SnapshotEvery, o.SnapshotKeep = 10, r.IntN(3)
	}
	switch r.IntN(10) {
	case 0:
		o.DisablePreVote = true
	case 1:
		o.DisableCheckQuorum = true
	}
	if r.IntN(5) == 0 {
		o.MaxSizePerMsg = 1 // one entry per MsgApp: many round trips
	}
	if r.IntN(5) == 0 {
		o.MaxInflightMsgs = 1 + r.IntN(3)
	}
	if r.IntN(2) == 0 {
		for range 1 + r.IntN(3) {
			o.Faults = append(o.Faults, Fault{
				Trigger:      Trigger(r.IntN(int(numTriggers))),
				Point:        FaultPoint(r.IntN(int(numFaultPoints))),
				Prob:         0.1 + 0.4*r.Float64(),
				RestartAfter: r.IntN(20),
			})
		}
	}
	c.Ticks = 80 + r.IntN(80)
	c.PPropose = 0.2 + 0.6*r.Float64()
	c.PRead = 0.1 * r.Float64()
	c.PCrash = 0.04 * r.Float64()
	c.PNet = 0.06 * r.Float64()
	c.PTransfer = 0.02 * r.Float64()
	c.PCampaign = 0.02 * r.Float64()
	c.PProbe = 0.01
	// Drawn from a stream of its own, so the shape above stays the same.
	if rand.New(rand.NewPCG(seed, 0xca1)).IntN(10) == 0 {
		c.PCalm = 0.01
	}
	return c
}

// NewWALScheduleConfig draws a schedule like NewScheduleConfig (the same
// shape for the same seed), run on WALStorage disks with power losses at
// random disk operations: a few per node and run, some during recovery,
// on top of the schedule's own crashes and targeted faults, and in a third
// of them I/O errors, which halt a node until it restarts. Segments are
// small and snapshots frequent, so that segment rolls, compactions,
// snapshot files and their removal are all crashed in.
func NewWALScheduleConfig(seed uint64) ScheduleConfig {
	c := newChaosScheduleConfig(seed)
	c.PCalm = 0 // calm would pause the disk faults
	r := rand.New(rand.NewPCG(seed, 0xd15c))
	o := &c.Options
	o.Storage = WALStorage
	o.SegmentSize = []int64{4 << 10, 16 << 10, 64 << 10}[r.IntN(3)]
	if o.SnapshotEvery == 0 && r.IntN(2) == 0 {
		o.SnapshotEvery, o.SnapshotKeep = 4+r.IntN(8), r.IntN(3)
	}
	o.DiskFaults = DiskFaults{
		CrashEvery:     40 + r.IntN(200),
		DuringRecovery: 0.25,
		RestartAfter:   r.IntN(10),
	}
	if r.IntN(3) == 0 {
		o.DiskFaults.EIOEvery = 100 + r.IntN(400)
	}
	return c
}

// Describe renders the schedule's shape on one line.
func (c *ScheduleConfig) Describe() string {
	o := &c.Options
	d := ""
	if c.Figure8 != nil {
		d = fmt.Sprintf("figure8=%v ", *c.Figure8)
	}
	d += fmt.Sprintf("seed=%d nodes=%d ticks=%d net=%+v snap=%d/%d prevote=%v checkquorum=%v maxmsg=%d inflight=%d faults=%v",
		c.Seed, o.Nodes, c.Ticks, o.Net, o.SnapshotEvery, o.SnapshotKeep, !o.DisablePreVote, !o.DisableCheckQuorum,
		o.MaxSizePerMsg, o.MaxInflightMsgs, o.Faults)
	if o.Storage != MemStorage {
		d += fmt.Sprintf(" storage=%v segment=%d diskfaults=%+v", o.Storage, o.SegmentSize, o.DiskFaults)
	}
	return d
}

// RunSchedule runs one randomized schedule: a chaotic phase of random
// proposals, reads, crashes, partitions, lossy links, leadership transfers
// and the configuration's targeted faults, with liveness probes (a random
// majority healed and checked) along the way; then a final phase that heals
// everything and checks that the group elects a leader, commits, converges,
// and lost no committed write. Every step is checked by the Sim.
func RunSchedule(tb testing.TB, c ScheduleConfig) *Sim {
	tb.Helper()
	opts := c.Options
	if opts.ReproArgs == "" {
		opts.ReproArgs = "-schedules=1"
	}
	s := New(tb, opts)
	s.Note("schedule %s", c.Describe())
	// The schedule's own choices come from a stream separate from the
	// Sim's, so that they do not shift when the core's behaviour does.
	r := rand.New(rand.NewPCG(c.Seed, 0x5c4ed))
	ids := s.IDs()
	pick := func() raft.NodeID { return ids[r.IntN(len(ids))] }
	writes := 0

	if c.Figure8 != nil {
		s.RunFigure8(r, *c.Figure8)
		c.Ticks = 0
	}
	for range c.Ticks {
		if s.failed {
			return s
		}
		c.clientTick(s, r, &writes, 3)
		if r.Float64() < c.PCrash {
			if id := pick(); s.Alive(id) {
				if r.IntN(4) == 0 {
					s.Crash(id) // until the final phase
				} else {
					s.CrashFor(id, 1+r.IntN(30))
				}
			}
		}
		if r.Float64() < c.PNet {
			s.randomNetChange(r)
		}
		if r.Float64() < c.PTransfer {
			if l := s.Leader(); l != raft.None {
				_ = s.TransferLeadership(l, pick())
			}
		}
		if r.Float64() < c.PCampaign {
			s.Campaign(pick())
		}
		if r.Float64() < c.PProbe {
			s.livenessProbe(r)
		}
		if c.PCalm > 0 && r.Float64() < c.PCalm {
			s.calmStretch(r, c, &writes)
		}
		s.Tick()
	}

	// Final phase: everyone up, everything healed.
	s.Note("final phase: heal, restart all, check liveness and convergence")
	s.ClearFaults()
	s.Heal()
	s.SetNet(NetOptions{})
	for _, id := range ids {
		s.Restart(id)
	}
	s.CheckLiveness(ids, LivenessTicks(opts))
	s.WaitConverged(LivenessTicks(opts))
	s.CheckProposals()
	return s
}

// clientTick is what the clients do in one tick of a schedule: propose
// (1..most commands) to the leader or to a random node, and read.
func (c *ScheduleConfig) clientTick(s *Sim, r *rand.Rand, writes *int, most int) {
	if r.Float64() < c.PPropose {
		target := s.Leader()
		if target == raft.None || r.IntN(5) == 0 {
			target = s.ids[r.IntN(len(s.ids))]
		}
		for range 1 + r.IntN(most) {
			*writes++
			if _, _, err := s.Propose(target, fmt.Appendf(nil, "w%d", *writes)); err != nil {
				break
			}
		}
	}
	if r.Float64() < c.PRead {
		s.randomRead(r)
	}
}

// calmStretch pauses the chaos (the schedule's crashes, network changes,
// campaigns, transfers, and the armed faults) for long enough that the
// liveness monitor must check the group at least once, while clients keep
// proposing (at a quarter of the rate, one command at a time, so that the
// backlog stays small) and reading, on a network that duplicates and
// reorders as the schedule has it but neither loses nor delays anything
// (see livenessMonitor). Half the time, if the chaos has left a quorum on an
// island, the stretch starts from that; otherwise from a random quorum
// restarted and put on an island of its own.
func (s *Sim) calmStretch(r *rand.Rand, c ScheduleConfig, writes *int) {
	if s.island() == 0 || r.IntN(2) == 0 {
		perm := r.Perm(len(s.ids))
		var group, rest []raft.NodeID
		for i, k := range perm {
			if i < s.quorum() {
				group = append(group, s.ids[k])
			} else {
				rest = append(rest, s.ids[k])
			}
		}
		for _, id := range group {
			s.Restart(id)
		}
		s.Partition(group, rest)
	}
	ticks := s.mon.bound + r.IntN(s.mon.bound/4+1)
	s.Note("calm for %d ticks", ticks)
	faults, diskFaults, net := s.faults, s.diskFaults, s.net.opts
	s.faults = nil
	s.setDiskFaults(DiskFaults{RestartAfter: diskFaults.RestartAfter})
	prompt := net
	prompt.Loss, prompt.MaxDelay = 0, 0
	s.SetNet(prompt)
	calm := c
	calm.PPropose /= 4
	for range ticks {
		if s.failed {
			return
		}
		calm.clientTick(s, r, writes, 1)
		s.Tick()
	}
	s.SetNet(net)
	s.faults = faults
	s.setDiskFaults(diskFaults)
}

// randomRead asks a node for a read, ReadIndex or LeaseRead: a random
// node, or one that believes it leads (stale leaders included, where a
// read is most likely to go wrong).
func (s *Sim) randomRead(r *rand.Rand) *Read {
	id := s.ids[r.IntN(len(s.ids))]
	if ls := s.Leaders(); len(ls) > 0 && r.IntN(2) == 0 {
		id = ls[r.IntN(len(ls))]
	}
	if r.IntN(2) == 0 {
		return s.LeaseRead(id)
	}
	return s.ReadIndex(id)
}

// randomNetChange changes the shape of the network at random.
func (s *Sim) randomNetChange(r *rand.Rand) {
	ids := s.IDs()
	switch r.IntN(5) {
	case 0:
		s.Isolate(ids[r.IntN(len(ids))])
	case 1:
		// A random split into two sides.
		var a, b []raft.NodeID
		for _, id := range ids {
			if r.IntN(2) == 0 {
				a = append(a, id)
			} else {
				b = append(b, id)
			}
		}
		s.Partition(a, b)
	case 2:
		// A one-way link failure.
		from, to := ids[r.IntN(len(ids))], ids[r.IntN(len(ids))]
		if from != to {
			s.Cut(from, to)
		}
	case 3:
		s.Reconnect(ids[r.IntN(len(ids))])
	default:
		s.Heal()
	}
}

// livenessProbe heals a random majority (restarting its crashed members and
// connecting it fully, on a reliable network, with faults paused), checks
// that it elects a leader and commits within LivenessTicks, and then puts
// the network's unreliability and the faults back.
func (s *Sim) livenessProbe(r *rand.Rand) {
	ids := s.IDs()
	perm := r.Perm(len(ids))
	group := make([]raft.NodeID, 0, s.quorum())
	for _, k := range perm[:s.quorum()] {
		group = append(group, ids[k])
	}
	var rest []raft.NodeID
	for _, k := range perm[s.quorum():] {
		rest = append(rest, ids[k])
	}
	s.Note("liveness probe: %v", group)
	for _, id := range group {
		s.Restart(id)
	}
	net, faults, diskFaults := s.net.opts, s.faults, s.diskFaults
	s.faults = nil
	s.setDiskFaults(DiskFaults{RestartAfter: diskFaults.RestartAfter})
	s.SetNet(NetOptions{})
	s.net.drops = nil
	s.Partition(group, rest)
	s.CheckLiveness(group, LivenessTicks(s.opts))
	s.SetNet(net)
	s.faults = faults
	s.setDiskFaults(diskFaults)
}

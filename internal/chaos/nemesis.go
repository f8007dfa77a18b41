package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/raft"
)

// Event is something the nemesis did, At a time since the run began.
type Event struct {
	At   time.Duration
	Step int // the schedule step it belongs to (0-based), or -1
	What string
}

func (e Event) String() string {
	if e.Step < 0 {
		return fmt.Sprintf("%7.2fs        %s", e.At.Seconds(), e.What)
	}
	return fmt.Sprintf("%7.2fs step %2d %s", e.At.Seconds(), e.Step, e.What)
}

// Bounds of the nemesis's own calls.
const (
	leaderLookup = 5 * time.Second  // finding the leader a step targets
	restartLimit = 60 * time.Second // restarting a killed node
	adminLimit   = 10 * time.Second // one fault-injection RPC
)

// nemesis carries out a schedule on a cluster.
type nemesis struct {
	c     *Cluster
	sched Schedule
	start time.Time
	logf  func(format string, args ...any)

	mu           sync.Mutex
	events       []Event
	injected     map[Fault]int
	leaderMisses int
}

func newNemesis(c *Cluster, sched Schedule, start time.Time, logf func(string, ...any)) *nemesis {
	return &nemesis{c: c, sched: sched, start: start, logf: logf, injected: map[Fault]int{}}
}

// record notes an event and logs it.
func (n *nemesis) record(step int, format string, args ...any) {
	e := Event{At: time.Since(n.start), Step: step, What: fmt.Sprintf(format, args...)}
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
	n.logf("nemesis: %s", e)
}

// Events returns what the nemesis did so far.
func (n *nemesis) Events() []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.events)
}

// Injected counts the faults injected, by kind, and the leader-targeted
// steps that found no leader.
func (n *nemesis) Injected() (map[Fault]int, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.injected), n.leaderMisses
}

// run carries out every step of the schedule, each at its time, and
// heals each fault when its hold ends. It returns when the schedule is
// done or ctx ends, with everything healed in either case. An error means
// a fault could not be injected or healed (the run proves less than it
// claims, so it fails).
func (n *nemesis) run(ctx context.Context) error {
	var errs []error
	for i, st := range n.sched.Steps {
		if err := waitUntil(ctx, n.start.Add(st.At)); err != nil {
			break
		}
		heal, err := n.inject(ctx, i, st)
		if err != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %w", i, st.Fault, err))
			n.record(i, "injecting %s failed: %v", st.Fault, err)
		} else {
			n.mu.Lock()
			n.injected[st.Fault]++
			n.mu.Unlock()
		}
		_ = waitUntil(ctx, n.start.Add(st.At+st.For))
		if heal != nil {
			// Healing must happen even when ctx has ended.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restartLimit)
			if err := heal(hctx); err != nil {
				errs = append(errs, fmt.Errorf("step %d (%s): healing: %w", i, st.Fault, err))
				n.record(i, "healing %s failed: %v", st.Fault, err)
			} else {
				n.record(i, "healed %s", st.Fault)
			}
			cancel()
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// waitUntil waits for the wall clock to reach t, or ctx to end.
func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inject starts step i's fault and returns how to heal it. On an error
// it returns the healing of whatever part it did inject (or nil).
func (n *nemesis) inject(ctx context.Context, i int, st Step) (heal func(context.Context) error, err error) {
	p := newPicker(st.Seed)
	ids := n.c.IDs()
	pickNode := func() raft.NodeID { return ids[p.intn(len(ids))] }
	shuffled := func() []raft.NodeID {
		perm := p.perm(len(ids))
		out := make([]raft.NodeID, len(ids))
		for j, k := range perm {
			out[j] = ids[k]
		}
		return out
	}
	// leader finds the leader, waiting up to leaderLookup for an election
	// to end; with none by then, the step falls back to a node drawn from
	// the seed, and the miss is counted (Report.LeaderMisses).
	leader := func() raft.NodeID {
		fallback := pickNode()
		lctx, cancel := context.WithTimeout(ctx, leaderLookup)
		defer cancel()
		id, err := waitLeader(lctx, n.c)
		if err != nil {
			n.mu.Lock()
			n.leaderMisses++
			n.mu.Unlock()
			n.record(i, "no leader found within %v (%v): targeting n%d instead", leaderLookup, err, fallback)
			return fallback
		}
		return id
	}
	mode := LinkDropped
	if p.intn(2) == 0 {
		mode = LinkBlackholed
	}
	healNetwork := func(context.Context) error { n.c.HealNetwork(); return nil }
	cut := func(from, to raft.NodeID) { n.c.SetLink(from, to, mode) }

	switch st.Fault {
	case KillNodes:
		victims := shuffled()[:1+p.intn(len(ids)-1)]
		slices.Sort(victims)
		return n.kill(i, victims)
	case KillLeader:
		return n.kill(i, []raft.NodeID{leader()})
	case KillAll:
		return n.kill(i, ids)
	case LoseAllData:
		heal, err := n.kill(i, ids)
		if err != nil {
			return heal, err
		}
		for _, id := range ids {
			if err := n.c.WipeData(id); err != nil {
				return heal, err
			}
		}
		n.record(i, "deleted every node's data directory")
		return heal, nil
	case PauseLeader, PauseNode:
		id := pickNode()
		if st.Fault == PauseLeader {
			id = leader()
		}
		if err := n.c.Pause(id); err != nil {
			return nil, err
		}
		n.record(i, "paused n%d (SIGSTOP)", id)
		return func(context.Context) error {
			n.record(i, "resuming n%d (SIGCONT)", id)
			return n.c.Resume(id)
		}, nil
	case IsolateLeader:
		l := leader()
		for _, id := range ids {
			if id != l {
				cut(l, id)
				cut(id, l)
			}
		}
		n.record(i, "isolated leader n%d (%v)", l, mode)
		return healNetwork, nil
	case SplitMajority:
		order := shuffled()
		minority, majority := order[:(len(order)-1)/2], order[(len(order)-1)/2:]
		for _, a := range minority {
			for _, b := range majority {
				cut(a, b)
				cut(b, a)
			}
		}
		n.record(i, "split minority %v from majority %v (%v)", nodes(minority), nodes(majority), mode)
		return healNetwork, nil
	case Bridge:
		order := shuffled()
		bridge, rest := order[0], order[1:]
		a, b := rest[:len(rest)/2], rest[len(rest)/2:]
		for _, x := range a {
			for _, y := range b {
				cut(x, y)
				cut(y, x)
			}
		}
		n.record(i, "bridge n%d between %v and %v, which cannot reach each other (%v)", bridge, nodes(a), nodes(b), mode)
		return healNetwork, nil
	case LeaderCannotSend, LeaderCannotHear:
		l := leader()
		for _, id := range ids {
			if id == l {
				continue
			}
			if st.Fault == LeaderCannotSend {
				cut(l, id)
			} else {
				cut(id, l)
			}
		}
		n.record(i, "%s: leader n%d (%v)", st.Fault, l, mode)
		return healNetwork, nil
	case RandomLinks:
		var links []string
		for _, from := range ids {
			for _, to := range ids {
				if from != to && p.intn(3) == 0 {
					cut(from, to)
					links = append(links, fmt.Sprintf("n%d->n%d", from, to))
				}
			}
		}
		if len(links) == 0 {
			from := pickNode()
			to := ids[(slices.Index(ids, from)+1)%len(ids)]
			cut(from, to)
			links = append(links, fmt.Sprintf("n%d->n%d", from, to))
		}
		n.record(i, "cut links %s (%v)", strings.Join(links, " "), mode)
		return healNetwork, nil
	case Flaky:
		rule := &adminpb.FaultRule{
			Direction: adminpb.Direction_OUTBOUND,
			Loss:      0.05 + float64(p.intn(21))/100, // 5-25%
			Duplicate: float64(p.intn(11)) / 100,      // 0-10%
			DelayMs:   uint32(p.intn(20)),
			JitterMs:  uint32(p.intn(30)),
		}
		heal := n.forEach(ids, func(ctx context.Context, id raft.NodeID) error {
			return n.c.SetNetFaults(ctx, id, nil)
		})
		if err := n.forEach(ids, func(ctx context.Context, id raft.NodeID) error {
			return n.c.SetNetFaults(ctx, id, []*adminpb.FaultRule{rule})
		})(ctx); err != nil {
			return heal, err
		}
		n.record(i, "flaky network on every node: loss %.2f, duplicate %.2f, delay %dms + up to %dms",
			rule.Loss, rule.Duplicate, rule.DelayMs, rule.JitterMs)
		return heal, nil
	case SlowDisk:
		id := pickNode()
		if p.intn(2) == 0 {
			id = leader()
		}
		f := &adminpb.DiskFaults{SyncDelayMs: uint32(20 + p.intn(281)), WriteDelayMs: uint32(p.intn(20))}
		return n.disk(ctx, i, []raft.NodeID{id}, f, fmt.Sprintf("slow disk on n%d: fsync +%dms, write +%dms", id, f.SyncDelayMs, f.WriteDelayMs))
	case FullDiskLeader:
		id := leader()
		return n.disk(ctx, i, []raft.NodeID{id}, &adminpb.DiskFaults{NoSpace: true}, fmt.Sprintf("full disk on leader n%d", id))
	case FullDiskAll:
		return n.disk(ctx, i, ids, &adminpb.DiskFaults{NoSpace: true}, "full disk on every node")
	}
	return nil, fmt.Errorf("unknown fault %v", st.Fault)
}

// kill kill -9s victims and returns their restart.
func (n *nemesis) kill(i int, victims []raft.NodeID) (func(context.Context) error, error) {
	var killed []raft.NodeID
	restart := func(ctx context.Context) error {
		n.record(i, "restarting %v", nodes(killed))
		var errs []error
		for _, id := range killed {
			if err := n.c.Start(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("restarting n%d: %w", id, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, id := range victims {
		if err := n.c.Kill(id); err != nil {
			return restart, fmt.Errorf("killing n%d: %w", id, err)
		}
		killed = append(killed, id)
	}
	n.record(i, "killed %v (SIGKILL)", nodes(killed))
	return restart, nil
}

// disk sets the disk faults f on ids and returns their healing.
func (n *nemesis) disk(ctx context.Context, i int, ids []raft.NodeID, f *adminpb.DiskFaults, what string) (func(context.Context) error, error) {
	heal := n.forEach(ids, func(ctx context.Context, id raft.NodeID) error {
		return n.c.SetDiskFaults(ctx, id, &adminpb.DiskFaults{})
	})
	if err := n.forEach(ids, func(ctx context.Context, id raft.NodeID) error {
		return n.c.SetDiskFaults(ctx, id, f)
	})(ctx); err != nil {
		return heal, err
	}
	n.record(i, "%s", what)
	return heal, nil
}

// forEach returns a function that calls fn for each id, each call bounded
// by adminLimit, and joins their errors.
func (n *nemesis) forEach(ids []raft.NodeID, fn func(context.Context, raft.NodeID) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, id := range ids {
			cctx, cancel := context.WithTimeout(ctx, adminLimit)
			if err := fn(cctx, id); err != nil {
				errs = append(errs, fmt.Errorf("n%d: %w", id, err))
			}
			cancel()
		}
		return errors.Join(errs...)
	}
}

// healAll undoes every fault there may be: links up, paused nodes
// resumed, stopped nodes started, disk and network failpoints cleared.
func (n *nemesis) healAll(ctx context.Context) error {
	n.c.HealNetwork()
	var errs []error
	for _, id := range n.c.IDs() {
		switch n.c.State(id) {
		case Paused:
			if err := n.c.Resume(id); err != nil {
				errs = append(errs, fmt.Errorf("resuming n%d: %w", id, err))
			}
		case Stopped:
			n.record(-1, "starting n%d, found stopped", id)
			if err := n.c.Start(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("starting n%d: %w", id, err))
			}
		}
	}
	errs = append(errs, n.forEach(n.c.IDs(), func(ctx context.Context, id raft.NodeID) error {
		return errors.Join(n.c.SetDiskFaults(ctx, id, &adminpb.DiskFaults{}), n.c.SetNetFaults(ctx, id, nil))
	})(ctx))
	return errors.Join(errs...)
}

// nodes formats node IDs as [n1 n3].
func nodes(ids []raft.NodeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprintf("n%d", id)
	}
	return "[" + strings.Join(s, " ") + "]"
}

package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// gen makes a seeded random stream of commands: every operation, on a few
// keys, in and out of sessions, with retries, acknowledgements, limit
// changes, malformed commands, and a clock that mostly moves forward.
type gen struct {
	rng      *rand.Rand
	sessions []*genSession
}

type genSession struct {
	id, next, ack uint64
}

func newGen(seed uint64) *gen { return &gen{rng: rand.New(rand.NewPCG(seed, 7))} }

func (g *gen) key() []byte { return fmt.Appendf(nil, "k%d", g.rng.IntN(8)) }

func (g *gen) value() []byte {
	if g.rng.IntN(50) == 0 {
		return make([]byte, 300) // over the small limits below
	}
	return fmt.Appendf(nil, "v%d", g.rng.IntN(100))
}

func (g *gen) tick() time.Duration {
	if g.rng.IntN(20) == 0 {
		return -time.Duration(g.rng.IntN(5)) * time.Second // a slow leader clock
	}
	return time.Duration(g.rng.IntN(1000)) * time.Millisecond
}

func (g *gen) cas() *kvpb.CompareAndSwapRequest {
	r := &kvpb.CompareAndSwapRequest{Key: g.key()}
	if g.rng.IntN(2) == 0 {
		r.Expected = &kvpb.CompareAndSwapRequest_ExpectedValue{ExpectedValue: g.value()}
	} else {
		r.Expected = &kvpb.CompareAndSwapRequest_ExpectedVersion{ExpectedVersion: uint64(g.rng.IntN(40))}
	}
	if g.rng.IntN(4) == 0 {
		r.Delete = true
	} else {
		r.NewValue = g.value()
	}
	return r
}

// write makes a write request with the given header.
func (g *gen) write(h *kvpb.WriteHeader) proto.Message {
	switch g.rng.IntN(5) {
	case 0:
		return &kvpb.PutRequest{Header: h, Key: g.key(), Value: g.value()}
	case 1:
		return &kvpb.DeleteRequest{Header: h, Key: g.key()}
	case 2:
		r := g.cas()
		r.Header = h
		return r
	case 3:
		return &kvpb.AppendRequest{Header: h, Key: g.key(), Suffix: g.value()}
	}
	b := &kvpb.BatchRequest{Header: h}
	for range 1 + g.rng.IntN(4) {
		var op *kvpb.BatchOp
		switch g.rng.IntN(4) {
		case 0:
			op = &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: g.key(), Value: g.value()}}}
		case 1:
			op = &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: g.key()}}}
		case 2:
			op = &kvpb.BatchOp{Op: &kvpb.BatchOp_CompareAndSwap{CompareAndSwap: g.cas()}}
		case 3:
			op = &kvpb.BatchOp{Op: &kvpb.BatchOp_Append{Append: &kvpb.AppendRequest{Key: g.key(), Suffix: g.value()}}}
		}
		b.Ops = append(b.Ops, op)
	}
	return b
}

// next makes the command for the entry at index.
func (g *gen) next(index raft.Index) proto.Message {
	n := g.rng.IntN(100)
	var s *genSession
	if len(g.sessions) > 0 {
		s = g.sessions[g.rng.IntN(len(g.sessions))]
	}
	if s == nil && n >= 25 && n < 88 {
		n = 70 // open one first
	}
	switch {
	case n < 25:
		return g.write(nil)
	case n < 68:
		seq := s.next
		switch {
		case s.ack > 1 && g.rng.IntN(20) == 0:
			seq = s.ack - 1 // a late duplicate of an acknowledged request
		case s.next > s.ack && g.rng.IntN(4) == 0:
			seq = max(1, s.ack+uint64(g.rng.Int64N(int64(s.next-s.ack)))) // a retry
		default:
			s.next++
		}
		if g.rng.IntN(3) == 0 && s.ack < seq {
			s.ack += uint64(g.rng.Int64N(int64(seq - s.ack + 1)))
		}
		return g.write(hdr(s.id, seq, s.ack))
	case n < 73:
		if len(g.sessions) == 3 {
			g.sessions = g.sessions[1:] // forgotten: it expires
		}
		g.sessions = append(g.sessions, &genSession{id: uint64(index), next: 1})
		return &kvpb.OpenSessionRequest{}
	case n < 85:
		return &kvpb.KeepAliveRequest{SessionId: s.id, LowestUnackedSeq: s.ack}
	case n < 88:
		g.sessions = slices.DeleteFunc(g.sessions, func(x *genSession) bool { return x == s })
		return &kvpb.CloseSessionRequest{SessionId: s.id}
	case n < 95:
		return &kvpb.Limits{
			MaxValueSize:         uint64(100 + g.rng.IntN(200)),
			MaxSessions:          uint64(2 + g.rng.IntN(6)),
			MaxPendingPerSession: uint64(1 + g.rng.IntN(8)),
			SessionTtlMs:         int64(10000 + g.rng.IntN(50000)),
			MaxKeySize:           uint64(max(0, g.rng.IntN(12)-9)), // mostly the default; 1: "k1" too long
		}
	case n < 97:
		return &kvpb.Command{TimeUnixNano: 1} // no operation
	}
	return &kvpb.Limits{MaxKeySize: 1 << 40} // invalid
}

// run is one way of applying a stream of entries.
type run struct {
	name    string
	sm      *StateMachine
	results []string
}

// TestDeterminism applies one seeded stream of commands several ways: one
// entry per Apply, random groupings, with a restart in the middle, via a
// snapshot restored into a fresh engine in the middle, with different
// engine configurations. All must give identical results and identical
// engines, and the data must match a plain map model.
func TestDeterminism(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 4
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkDeterminism(t, seed, 400) })
	}
}

func checkDeterminism(t *testing.T, seed uint64, n int) {
	// The stream.
	g := newGen(seed)
	stamp := &testLog{t: t, now: t0}
	var entries []raft.Entry
	for range n {
		entries = append(entries, stamp.entry(g.next(stamp.index+1)))
		stamp.now = stamp.now.Add(g.tick())
	}

	rng := rand.New(rand.NewPCG(seed, 13))
	applyAll := func(r *run, es []raft.Entry, grouping func() int) {
		for len(es) > 0 {
			k := min(len(es), grouping())
			res, err := r.sm.Apply(es[:k])
			if err != nil {
				t.Fatalf("%s: Apply: %v", r.name, err)
			}
			for _, x := range res {
				r.results = append(r.results, resultString(x))
			}
			es = es[k:]
		}
	}
	one := func() int { return 1 }
	random := func() int { return 1 + rng.IntN(16) }
	half := n / 2

	var runs []*run
	// One entry per call.
	a := &run{name: "one-by-one", sm: openMem(t, nil)}
	applyAll(a, entries, one)
	runs = append(runs, a)

	// Random groupings, another configuration.
	b := &run{name: "grouped", sm: openMem(t, nil, func(c *Config) { c.CacheSize = 64 << 10; c.SnapshotChunkSize = 100 })}
	applyAll(b, entries, random)
	runs = append(runs, b)

	// Restarted halfway, from a crash image after a Sync.
	fs := vfs.NewCrashableMem()
	c := &run{name: "restarted", sm: openMem(t, fs)}
	applyAll(c, entries[:half], random)
	if _, err := c.sm.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = c.sm.Close()
	c.sm = openMem(t, crashed)
	applyAll(c, entries[half:], random)
	runs = append(runs, c)

	// Restored from a snapshot halfway, into an engine that had other data.
	d := &run{name: "restored", sm: openMem(t, nil)}
	donor := openMem(t, nil, func(c *Config) { c.SnapshotChunkSize = 50 })
	applyAll(&run{sm: donor}, entries[:half], random)
	var snap bytes.Buffer
	if err := donor.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	_ = donor.Close()
	applyAll(&run{sm: d.sm}, entries[:10], one) // to be replaced
	if err := d.sm.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	d.results = slices.Clone(a.results[:half])
	applyAll(d, entries[half:], random)
	runs = append(runs, d)

	for _, r := range runs {
		defer r.sm.Close()
	}
	for _, r := range runs[1:] {
		if len(r.results) != len(a.results) {
			t.Fatalf("%s: %d results, want %d", r.name, len(r.results), len(a.results))
		}
		for i := range r.results {
			if r.results[i] != a.results[i] {
				t.Fatalf("%s: entry %d: %s\n%s: %s", r.name, i+1, r.results[i], a.name, a.results[i])
			}
		}
		equalDumps(t, r.name+" vs "+a.name, dump(t, a.sm), dump(t, r.sm))
		if r.sm.AppliedIndex() != a.sm.AppliedIndex() {
			t.Fatalf("%s: applied %d", r.name, r.sm.AppliedIndex())
		}
	}

	// The data matches a map model driven by the results.
	checkModel(t, entries, a.results, a.sm)

	// The stream exercised what it should.
	var dups, fails, ok int
	for _, r := range a.results {
		switch {
		case bytes.Contains([]byte(r), []byte("dup=true")):
			dups++
		case bytes.HasPrefix([]byte(r), []byte("err")):
			fails++
		default:
			ok++
		}
	}
	if testing.Verbose() {
		codes := map[string]int{}
		for _, r := range a.results {
			if i := bytes.Index([]byte(r), []byte("code:")); i >= 0 {
				codes[string(bytes.Fields([]byte(r[i+5:]))[0])]++
			}
		}
		t.Logf("%d ok, %d failed, %d duplicates; failures %v", ok, fails, dups, codes)
	}
	if dups == 0 || fails == 0 || ok < n/3 {
		t.Fatalf("weak stream: %d ok, %d failed, %d duplicates", ok, fails, dups)
	}
}

// checkModel replays the entries that executed (fresh successes) on a map
// and compares it with the engine's data.
func checkModel(t *testing.T, entries []raft.Entry, results []string, sm *StateMachine) {
	t.Helper()
	type val struct {
		v   string
		ver uint64
	}
	m := map[string]val{}
	for i, e := range entries {
		res := results[i]
		if bytes.HasPrefix([]byte(res), []byte("err")) || bytes.Contains([]byte(res), []byte("dup=true")) {
			continue
		}
		cmd, err := DecodeCommand(e.Data)
		if err != nil {
			continue
		}
		idx := uint64(e.Index)
		// Apply a write to a copy; keep it if the command did not abort.
		var ops []*kvpb.BatchOp
		switch op := cmd.GetOp().(type) {
		case *kvpb.Command_Put:
			ops = []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Put{Put: op.Put}}}
		case *kvpb.Command_Delete:
			ops = []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Delete{Delete: op.Delete}}}
		case *kvpb.Command_CompareAndSwap:
			ops = []*kvpb.BatchOp{{Op: &kvpb.BatchOp_CompareAndSwap{CompareAndSwap: op.CompareAndSwap}}}
		case *kvpb.Command_Append:
			ops = []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Append{Append: op.Append}}}
		case *kvpb.Command_Batch:
			ops = op.Batch.GetOps()
		default:
			continue
		}
		next := make(map[string]val, len(m))
		for k, v := range m {
			next[k] = v
		}
		aborted := false
		for _, op := range ops {
			switch o := op.GetOp().(type) {
			case *kvpb.BatchOp_Put:
				next[string(o.Put.GetKey())] = val{string(o.Put.GetValue()), idx}
			case *kvpb.BatchOp_Delete:
				delete(next, string(o.Delete.GetKey()))
			case *kvpb.BatchOp_Append:
				k := string(o.Append.GetKey())
				next[k] = val{next[k].v + string(o.Append.GetSuffix()), idx}
			case *kvpb.BatchOp_CompareAndSwap:
				c := o.CompareAndSwap
				cur, found := next[string(c.GetKey())]
				var match bool
				switch e := c.GetExpected().(type) {
				case *kvpb.CompareAndSwapRequest_ExpectedValue:
					match = found && cur.v == string(e.ExpectedValue)
				case *kvpb.CompareAndSwapRequest_ExpectedVersion:
					match = cur.ver == e.ExpectedVersion
				}
				switch {
				case !match:
					aborted = true
				case c.GetDelete():
					delete(next, string(c.GetKey()))
				default:
					next[string(c.GetKey())] = val{string(c.GetNewValue()), idx}
				}
			}
			if aborted {
				break
			}
		}
		if !aborted {
			m = next
		}
	}
	var want []string
	for k, v := range m {
		want = append(want, fmt.Sprintf("%s=%s@%d", k, v.v, v.ver))
	}
	slices.Sort(want)
	equalDumps(t, "engine data vs model", want, dataDump(t, sm))
}

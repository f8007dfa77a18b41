package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// logStore is replica.LogStore, restated here so that storage does not
// depend on replica (which will depend on storage). TestLogStoreShape
// keeps them in step: a *WAL must satisfy it.
type logStore interface {
	raft.Storage
	Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, sync bool) error
	Compact(meta raft.SnapshotMeta, compactTo raft.Index) error
}

var _ logStore = (*WAL)(nil)

// refStore is the obviously-correct reference: raft.MemoryStorage driven
// exactly as replica.MemoryLogStore drives it.
type refStore struct{ *raft.MemoryStorage }

func newRef() refStore { return refStore{raft.NewMemoryStorage()} }

func (s refStore) Save(hs raft.HardState, ents []raft.Entry, snap *raft.SnapshotMeta, _ bool) error {
	if snap != nil {
		if err := s.ApplySnapshot(*snap); err != nil {
			return err
		}
	}
	if err := s.Append(ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		s.SetHardState(hs)
	}
	return nil
}

func (s refStore) Compact(meta raft.SnapshotMeta, compactTo raft.Index) error {
	got, err := s.CreateSnapshot(meta.Index, meta.ConfState)
	if err != nil {
		return err
	}
	if got.Term != meta.Term {
		return fmt.Errorf("term mismatch")
	}
	first, _ := s.FirstIndex()
	if compactTo < first {
		return nil
	}
	return s.MemoryStorage.Compact(compactTo)
}

// describe renders everything a raft.Storage shows, canonically.
func describe(s raft.Storage) string {
	hs, cs, err := s.InitialState()
	if err != nil {
		return "InitialState: " + err.Error()
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	snap, _ := s.Snapshot()
	t0, err0 := s.Term(first - 1)
	var b strings.Builder
	fmt.Fprintf(&b, "hs=%s conf=%v snap=%s first=%d last=%d term(first-1)=%d/%v",
		raft.DescribeHardState(hs), cs.Voters, raft.DescribeSnapshot(snap), first, last, t0, err0)
	if last >= first {
		ents, err := s.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			fmt.Fprintf(&b, " Entries: %v", err)
		}
		for _, e := range ents {
			fmt.Fprintf(&b, " %d/%d/%d:%x", e.Term, e.Index, e.Type, e.Data)
		}
	}
	return b.String()
}

// op is one step of a workload: a Save, a Compact or a reopen.
type op struct {
	kind    string // "save", "compact", "reopen"
	hs      raft.HardState
	ents    []raft.Entry
	snap    *raft.SnapshotMeta
	sync    bool
	meta    raft.SnapshotMeta
	compact raft.Index
}

func (o op) String() string {
	switch o.kind {
	case "save":
		s := fmt.Sprintf("save hs=%s sync=%v ents=%d", raft.DescribeHardState(o.hs), o.sync, len(o.ents))
		if len(o.ents) > 0 {
			s += fmt.Sprintf("[%d..%d]", o.ents[0].Index, o.ents[len(o.ents)-1].Index)
		}
		if o.snap != nil {
			s += " snap=" + raft.DescribeSnapshot(*o.snap)
		}
		return s
	case "compact":
		return fmt.Sprintf("compact meta=%s to=%d", raft.DescribeSnapshot(o.meta), o.compact)
	}
	return o.kind
}

func (o op) apply(s logStore) error {
	switch o.kind {
	case "save":
		return s.Save(o.hs, o.ents, o.snap, o.sync)
	case "compact":
		return s.Compact(o.meta, o.compact)
	}
	return nil
}

// gen produces a random workload that obeys Raft's rules: commits never
// go back, truncations stay above the commit index, compactions stay at or
// below it, snapshots describe the configuration at their index.
type gen struct {
	rng  *rand.Rand
	hs   raft.HardState
	snap raft.SnapshotMeta
	// first is the first index held; hist holds terms, types and data of
	// every entry from base+1 to last, never compacted (to know the
	// configuration at any index).
	first    raft.Index
	base     raft.Index
	baseConf raft.ConfState
	hist     []raft.Entry
	// snapProb and syncProb tune the mix.
	noSync bool
}

func newGen(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 7)), first: 1}
	return g
}

func (g *gen) last() raft.Index { return g.base + raft.Index(len(g.hist)) }

func (g *gen) term(i raft.Index) raft.Term {
	if i == g.base {
		return g.snap.Term
	}
	return g.hist[i-g.base-1].Term
}

func (g *gen) confAt(i raft.Index) raft.ConfState {
	cs := g.baseConf
	for _, e := range g.hist {
		if e.Index > i {
			break
		}
		if e.Type == raft.EntryConfChange {
			cs, _ = raft.UnmarshalConfState(e.Data)
		}
	}
	return cs
}

func (g *gen) entries(from raft.Index, n int, term raft.Term) []raft.Entry {
	ents := make([]raft.Entry, n)
	for i := range ents {
		e := raft.Entry{Term: term, Index: from + raft.Index(i)}
		switch r := g.rng.IntN(20); {
		case r == 0:
			e.Type = raft.EntryConfChange
			voters := []raft.NodeID{1, 2, 3, raft.NodeID(4 + g.rng.IntN(3))}
			e.Data = raft.NewConfState(voters[:2+g.rng.IntN(3)]...).Marshal()
		case r == 1:
			e.Type = raft.EntryNoop
		default:
			e.Data = make([]byte, g.rng.IntN(300))
			for j := range e.Data {
				e.Data[j] = byte(g.rng.Uint32())
			}
		}
		ents[i] = e
	}
	return ents
}

// bootstrap returns the first Save of a new group.
func (g *gen) bootstrap() op {
	hs, ents := raft.BootstrapState(1, 2, 3)
	g.hs = hs
	g.hist = append(g.hist, ents...)
	return op{kind: "save", hs: hs, ents: ents, sync: true}
}

func (g *gen) next() op {
	for {
		switch r := g.rng.IntN(100); {
		case r < 45: // append
			n := 1 + g.rng.IntN(8)
			ents := g.entries(g.last()+1, n, max(g.hs.Term, 1))
			g.hist = append(g.hist, ents...)
			o := op{kind: "save", ents: ents, sync: !g.noSync || g.rng.IntN(4) == 0}
			if g.rng.IntN(2) == 0 && g.hs.Commit < g.last() {
				g.hs.Commit += raft.Index(1 + g.rng.IntN(int(g.last()-g.hs.Commit)))
				o.hs = g.hs
			}
			return o
		case r < 55: // new term, conflicting suffix
			lo := max(g.hs.Commit+1, g.first, g.snap.Index+1)
			if lo > g.last() {
				continue
			}
			at := lo + raft.Index(g.rng.IntN(int(g.last()-lo+1)))
			g.hs.Term++
			g.hs.Vote = raft.NodeID(1 + g.rng.IntN(3))
			ents := g.entries(at, 1+g.rng.IntN(5), g.hs.Term)
			g.hist = append(g.hist[:at-g.base-1], ents...)
			return op{kind: "save", hs: g.hs, ents: ents, sync: true}
		case r < 65: // hard state only
			if g.rng.IntN(2) == 0 {
				g.hs.Term++
				g.hs.Vote = 0
				return op{kind: "save", hs: g.hs, sync: true}
			}
			if g.hs.Commit == g.last() {
				continue
			}
			g.hs.Commit++
			return op{kind: "save", hs: g.hs, sync: !g.noSync && g.rng.IntN(2) == 0}
		case r < 80: // compact
			lo := max(g.first, g.snap.Index+1)
			if g.hs.Commit < lo {
				continue
			}
			idx := lo + raft.Index(g.rng.IntN(int(g.hs.Commit-lo+1)))
			meta := raft.SnapshotMeta{Index: idx, Term: g.term(idx), ConfState: g.confAt(idx)}
			to := g.first - 1 + raft.Index(g.rng.IntN(int(idx-g.first+2)))
			if g.rng.IntN(3) == 0 {
				to = idx
			}
			g.snap = meta
			if to >= g.first {
				g.first = to + 1
			}
			return op{kind: "compact", meta: meta, compact: to}
		case r < 84: // snapshot from a leader
			n := int64(g.last()) + int64(g.rng.IntN(10)) - 3
			if n < 1 || raft.Index(n) <= g.snap.Index || raft.Index(n) < g.hs.Commit {
				continue
			}
			idx := raft.Index(n)
			g.hs.Term++
			meta := raft.SnapshotMeta{Index: idx, Term: g.hs.Term, ConfState: raft.NewConfState(1, 2, raft.NodeID(3+g.rng.IntN(4)))}
			g.hs.Commit = idx
			g.snap, g.first, g.base, g.baseConf, g.hist = meta, idx+1, idx, meta.ConfState, nil
			return op{kind: "save", hs: g.hs, snap: &meta, sync: true}
		case r < 88:
			return op{kind: "reopen"}
		default: // several appends and a commit, as a leader's Ready does
			ents := g.entries(g.last()+1, 1+g.rng.IntN(30), max(g.hs.Term, 1))
			g.hist = append(g.hist, ents...)
			g.hs.Commit = g.last() - raft.Index(g.rng.IntN(len(ents)))
			return op{kind: "save", hs: g.hs, ents: ents, sync: true}
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func memOpts(fs vfs.FS, segSize int64) Options {
	return Options{FS: fs, SegmentSize: segSize, Logger: quiet()}
}

func mustOpen(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func isCorrupt(err error) (*CorruptError, bool) {
	var ce *CorruptError
	ok := errors.As(err, &ce)
	return ce, ok && errors.Is(err, ErrCorrupt)
}

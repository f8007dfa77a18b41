package wal

import (
	"fmt"
	"testing"

	"github.com/cairnkv/cairn/storage/vfs"
)

// crashPoint is a crash image taken just before one filesystem operation,
// with what had been acknowledged by then.
type crashPoint struct {
	fs *vfs.MemFS
	op vfs.Op
	// acked is the number of the last state known durable (a Save with
	// sync that returned, a Compact, an Open); started is the number of the
	// last state whose operation had begun. A crash must recover to one of
	// states[acked..started]: every acknowledged batch survives, and each
	// batch is all or nothing.
	acked, started int
}

// TestCrashAtEveryPoint crashes the filesystem before every write, sync,
// create, rename and remove of random workloads, including crashes in the
// middle of recovery, and checks each image recovers to a state between
// the last acknowledged one and the last started one, and goes on working.
func TestCrashAtEveryPoint(t *testing.T) {
	seeds := uint64(6)
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		for _, segSize := range []int64{MinSegmentSize, 64 << 10} {
			t.Run(fmt.Sprintf("seed=%d/seg=%d", seed, segSize), func(t *testing.T) {
				crashWorkload(t, seed, segSize, 120)
			})
		}
	}
}

func crashWorkload(t *testing.T, seed uint64, segSize int64, nops int) {
	fs := vfs.NewMem(seed)
	opts := memOpts(fs, segSize)
	ref := newRef()
	states := []string{describe(ref)}
	acked, started := 0, 0
	var points []crashPoint
	fs.SetInjector(func(o vfs.Op) error {
		points = append(points, crashPoint{fs: fs.CrashClone(), op: o, acked: acked, started: started})
		return nil
	})
	w := mustOpen(t, "/wal", opts)
	g := newGen(seed)
	g.noSync = seed%2 == 1
	steps := []op{g.bootstrap()}
	for range nops {
		steps = append(steps, g.next())
	}
	for i, o := range steps {
		if o.kind == "reopen" {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w = mustOpen(t, "/wal", opts)
			acked = started // Open syncs what it replayed
			continue
		}
		started++
		if err := o.apply(ref); err != nil {
			t.Fatalf("step %d %v: reference: %v", i, o, err)
		}
		states = append(states, describe(ref))
		if err := o.apply(w); err != nil {
			t.Fatalf("step %d %v: %v", i, o, err)
		}
		if o.kind == "compact" || o.sync {
			acked = started
		}
	}
	fs.SetInjector(nil)
	points = append(points, crashPoint{fs: fs.CrashClone(), op: vfs.Op{Kind: 0, Path: "end"}, acked: acked, started: started})

	torn := 0
	for pi, p := range points {
		w, err := Open("/wal", memOpts(p.fs, segSize))
		if err != nil {
			t.Fatalf("crash point %d (before %v): Open: %v", pi, p.op, err)
		}
		if w.Recovery().TornBytes > 0 {
			torn++
		}
		got := describe(w)
		found := -1
		for j := p.started; j >= p.acked; j-- {
			if states[j] == got {
				found = j
				break
			}
		}
		if found < 0 {
			t.Fatalf("crash point %d (before %v): recovered a state that is not one of states[%d..%d]:\n got %s\nacked %s",
				pi, p.op, p.acked, p.started, got, states[p.acked])
		}
		// The recovered log keeps working: append, reopen, compare.
		ref := newRef()
		replayTo(t, ref, steps, found)
		last, _ := w.LastIndex()
		more := op{kind: "save", ents: newGen(seed+1).entries(last+1, 3, 99), sync: true}
		if err := more.apply(w); err != nil {
			t.Fatalf("crash point %d: append after recovery: %v", pi, err)
		}
		more.apply(ref)
		w.Close()
		w2, err := Open("/wal", memOpts(p.fs, segSize))
		if err != nil {
			t.Fatalf("crash point %d: reopen after recovery and append: %v", pi, err)
		}
		if got, want := describe(w2), describe(ref); got != want {
			t.Fatalf("crash point %d: after recovery and append:\n got %s\nwant %s", pi, got, want)
		}
		w2.Close()
	}
	if torn == 0 {
		t.Errorf("none of %d crash points left a torn tail", len(points))
	}
	t.Logf("%d crash points checked, %d with a torn tail", len(points), torn)
}

// replayTo applies to ref the first n state-changing steps.
func replayTo(t *testing.T, ref refStore, steps []op, n int) {
	for _, o := range steps {
		if n == 0 {
			return
		}
		if o.kind == "reopen" {
			continue
		}
		if err := o.apply(ref); err != nil {
			t.Fatal(err)
		}
		n--
	}
}

// TestCrashDuringRecovery crashes a recovery itself (which erases a torn
// tail, syncs, and removes leftovers) at every point, and recovers again.
func TestCrashDuringRecovery(t *testing.T) {
	torn := 0
	defer func() {
		if torn == 0 {
			t.Error("no recovery found a torn tail: the test exercised nothing")
		}
	}()
	for seed := range uint64(20) {
		fs := vfs.NewMem(seed)
		opts := memOpts(fs, MinSegmentSize)
		w := mustOpen(t, "/wal", opts)
		g := newGen(seed)
		g.noSync = true
		ref := newRef()
		steps := []op{g.bootstrap()}
		for range 60 {
			steps = append(steps, g.next())
		}
		for _, o := range steps {
			if o.kind == "reopen" {
				continue
			}
			o.apply(ref)
			if err := o.apply(w); err != nil {
				t.Fatal(err)
			}
		}
		crashed := fs.Crash()
		var images []*vfs.MemFS
		crashed.SetInjector(func(vfs.Op) error {
			images = append(images, crashed.CrashClone())
			return nil
		})
		w1 := mustOpen(t, "/wal", memOpts(crashed, MinSegmentSize))
		first := describe(w1)
		if w1.Recovery().TornBytes > 0 {
			torn++
		}
		for i, img := range images {
			w2, err := Open("/wal", memOpts(img, MinSegmentSize))
			if err != nil {
				t.Fatalf("seed %d: crash %d during recovery: Open: %v", seed, i, err)
			}
			// Recovery only erases what no one acknowledged and syncs; a
			// second recovery finds what the first would have, or (if the
			// first had not yet erased a torn tail) the same thing again.
			if got := describe(w2); got != first {
				t.Fatalf("seed %d: crash %d during recovery:\n got %s\nwant %s", seed, i, got, first)
			}
		}
	}
}

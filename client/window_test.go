package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestWindowLowestUnackedOutOfOrder: the lowest unacknowledged seq is the
// smallest seq not yet released, whatever order seqs complete in.
func TestWindowLowestUnackedOutOfOrder(t *testing.T) {
	ctx := context.Background()
	w := newWindow(10)
	for want := Seq(1); want <= 5; want++ {
		if got, err := w.acquire(ctx); err != nil || got != want {
			t.Fatalf("acquire = %d, %v; want %d", got, err, want)
		}
	}
	steps := []struct {
		release Seq
		want    Seq
	}{
		{3, 1}, // 1 still in flight
		{2, 1},
		{1, 4}, // 1, 2, 3 done: 4 is the oldest in flight
		{5, 4},
		{4, 6}, // all done: the next seq
		{4, 6}, // a second release is a no-op
	}
	for _, s := range steps {
		w.release(s.release)
		if got := w.lowestUnacked(); got != s.want {
			t.Fatalf("after release(%d): lowestUnacked = %d, want %d", s.release, got, s.want)
		}
	}
}

// TestWindowProperty compares the window with an obviously correct model
// (the minimum of the in-flight set, or next) under random operations.
func TestWindowProperty(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		w := newWindow(1 << 20)
		inflight := map[Seq]bool{}
		next := Seq(1)
		for range 500 {
			if len(inflight) == 0 || rng.IntN(2) == 0 {
				s, err := w.acquire(context.Background())
				if err != nil || s != next {
					t.Fatalf("seed %d: acquire = %d, %v; want %d", seed, s, err, next)
				}
				inflight[s] = true
				next++
			} else {
				var pick []Seq
				for s := range inflight {
					pick = append(pick, s)
				}
				s := pick[rng.IntN(len(pick))]
				delete(inflight, s)
				w.release(s)
			}
			want := next
			for s := range inflight {
				want = min(want, s)
			}
			if got := w.lowestUnacked(); got != want {
				t.Fatalf("seed %d: lowestUnacked = %d, want %d (in flight %v)", seed, got, want, inflight)
			}
		}
	}
}

// TestWindowFull: acquire waits while next - lowest unacked == max, wakes
// when the lowest completes, and gives up with ctx or close.
func TestWindowFull(t *testing.T) {
	w := newWindow(2)
	ctx := context.Background()
	s1, _ := w.acquire(ctx)
	s2, _ := w.acquire(ctx)
	w.release(s2) // completing a later seq does not free the window
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := w.acquire(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire on a full window with a canceled ctx = %v", err)
	}

	got := make(chan Seq)
	go func() {
		s, _ := w.acquire(ctx)
		got <- s
	}()
	w.release(s1)
	if s := <-got; s != 3 {
		t.Fatalf("acquire after release = %d, want 3", s)
	}

	// Now 3 is in flight and the window [3, 4) has room for one more.
	if s, _ := w.acquire(ctx); s != 4 {
		t.Fatalf("acquire = %d, want 4", s)
	}
	done := make(chan error)
	go func() {
		_, err := w.acquire(ctx)
		done <- err
	}()
	w.close()
	if err := <-done; !errors.Is(err, errWindowClosed) {
		t.Fatalf("acquire after close = %v, want errWindowClosed", err)
	}
}

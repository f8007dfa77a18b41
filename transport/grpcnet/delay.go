package grpcnet

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// maxDelayed bounds the packets a filter may hold back at once; beyond
// it, delayed packets are dropped.
const maxDelayed = 1 << 16

// delayer runs the actions a filter postponed (Verdict.Delay), each at its
// time, from one goroutine: the transport's only timer wheel. Actions must
// not block for long: they queue a packet, or step it with a deadline.
type delayer struct {
	wake chan struct{} // capacity 1: the heap's head may have changed

	mu struct {
		sync.Mutex
		h delayHeap
	}
}

type delayed struct {
	at  time.Time
	seq uint64 // equal times run in order of arrival
	fn  func()
}

type delayHeap struct {
	items []delayed
	seq   uint64
}

func (h *delayHeap) Len() int { return len(h.items) }
func (h *delayHeap) Less(i, j int) bool {
	a, b := &h.items[i], &h.items[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.seq < b.seq
}
func (h *delayHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *delayHeap) Push(x any)    { h.items = append(h.items, x.(delayed)) }
func (h *delayHeap) Pop() any {
	n := len(h.items) - 1
	d := h.items[n]
	h.items[n] = delayed{}
	h.items = h.items[:n]
	return d
}

func newDelayer() *delayer { return &delayer{wake: make(chan struct{}, 1)} }

// add schedules fn to run after d. It reports false (and drops fn) when
// too many actions wait already.
func (dl *delayer) add(d time.Duration, fn func()) bool {
	dl.mu.Lock()
	if dl.mu.h.Len() >= maxDelayed {
		dl.mu.Unlock()
		return false
	}
	dl.mu.h.seq++
	heap.Push(&dl.mu.h, delayed{at: time.Now().Add(d), seq: dl.mu.h.seq, fn: fn})
	dl.mu.Unlock()
	select {
	case dl.wake <- struct{}{}:
	default:
	}
	return true
}

// due pops the actions whose time has come, and returns when the next one
// is due (zero if none waits).
func (dl *delayer) due(now time.Time, out []func()) ([]func(), time.Time) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for dl.mu.h.Len() > 0 && !dl.mu.h.items[0].at.After(now) {
		out = append(out, heap.Pop(&dl.mu.h).(delayed).fn)
	}
	if dl.mu.h.Len() == 0 {
		return out, time.Time{}
	}
	return out, dl.mu.h.items[0].at
}

// run is the delayer's goroutine. When ctx ends, actions still waiting
// are dropped.
func (dl *delayer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var fns []func()
	for {
		var next time.Time
		fns, next = dl.due(time.Now(), fns[:0])
		for i, fn := range fns {
			fn()
			fns[i] = nil
		}
		var tc <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-dl.wake:
			timer.Stop()
		case <-tc:
		}
	}
}

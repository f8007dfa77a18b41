package replica

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// TickSource is a replica's clock. Raft counts time in ticks; the tick
// source decides how long a tick is. One source can drive many replicas
// (one process hosting many groups shares one clock), and tests can drive
// replicas with a clock of their own.
type TickSource interface {
	// Subscribe returns a channel that receives one value per tick, and a
	// function that ends the subscription. A subscriber that falls behind
	// misses ticks rather than blocking the source: a missed tick only
	// makes Raft's timers a little slower.
	Subscribe() (ticks <-chan struct{}, cancel func())
}

// Ticker is a TickSource driven by a time.Ticker: one goroutine, however
// many subscribers.
type Ticker struct {
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	// subs is the current subscriber list. It is replaced, never modified,
	// so the ticking goroutine reads it without a lock; mu serializes the
	// replacements.
	subs atomic.Pointer[[]chan struct{}]
	mu   sync.Mutex
}

var _ TickSource = (*Ticker)(nil)

// NewTicker starts a Ticker that ticks every d. Stop it when done.
func NewTicker(d time.Duration) *Ticker {
	t := &Ticker{stop: make(chan struct{}), done: make(chan struct{})}
	t.subs.Store(new([]chan struct{}))
	tk := time.NewTicker(d)
	go func() {
		defer close(t.done)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				// Offer one tick to every subscriber, never blocking: a
				// channel that still holds the previous tick is skipped.
				for _, c := range *t.subs.Load() {
					select {
					case c <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return t
}

// Subscribe implements TickSource.
func (t *Ticker) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	t.mu.Lock()
	subs := append(slices.Clone(*t.subs.Load()), c)
	t.subs.Store(&subs)
	t.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			subs := slices.DeleteFunc(slices.Clone(*t.subs.Load()), func(s chan struct{}) bool { return s == c })
			t.subs.Store(&subs)
		})
	}
}

// Stop stops the ticker's goroutine and waits for it to exit. Subscribers
// receive no more ticks. Stop may be called more than once.
func (t *Ticker) Stop() {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
}

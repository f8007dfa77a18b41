package client

import (
	"context"
	"errors"
	"sync"
)

// errWindowClosed is returned by window.acquire once the window's session
// has ended: the caller gets a seq on the next session instead.
var errWindowClosed = errors.New("client: session ended")

// window hands out one session's sequence numbers and tracks which are in
// flight, so that every request can carry the session's lowest
// unacknowledged seq.
//
// A seq is in flight from acquire until release, which the caller does
// once the result (or a final error) of that request is in hand. Seqs
// complete in any order.
//
// Invariants (under mu):
//   - 1 <= low <= next.
//   - every seq in [1, low) is released; low == next or low is in flight:
//     low is the smallest seq whose result the caller has not received,
//     which is what lowest_unacked_seq means on the wire.
//   - inflight holds exactly the acquired, unreleased seqs, all in
//     [low, next).
//   - next - low <= max: the server never needs to keep more than max
//     results for this session (see acquire).
type window struct {
	max uint64

	mu struct {
		sync.Mutex
		next     Seq
		low      Seq
		inflight map[Seq]struct{}
		closed   bool
		// changed is closed, and replaced, whenever low moves or the
		// window closes; acquire waits on it.
		changed chan struct{}
	}
}

func newWindow(max int) *window {
	w := &window{max: uint64(max)}
	w.mu.next, w.mu.low = 1, 1
	w.mu.inflight = make(map[Seq]struct{})
	w.mu.changed = make(chan struct{})
	return w
}

// acquire returns the next seq, waiting while the window is full: while
// next - low == max, that is, while the server may already keep max
// results of this session. Keeping max at or below the server's
// max_pending_per_session means a request never meets TOO_MANY_PENDING:
// every request acknowledges everything below low, and the only results
// the server keeps are of seqs in [low, next).
//
// It fails with ctx's cause, or errWindowClosed once close was called.
func (w *window) acquire(ctx context.Context) (Seq, error) {
	for {
		w.mu.Lock()
		if w.mu.closed {
			w.mu.Unlock()
			return 0, errWindowClosed
		}
		if uint64(w.mu.next-w.mu.low) < w.max {
			seq := w.mu.next
			w.mu.next++
			w.mu.inflight[seq] = struct{}{}
			w.mu.Unlock()
			return seq, nil
		}
		changed := w.mu.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// release marks seq's result as received by the caller. Releasing a seq
// not in flight is a no-op.
func (w *window) release(seq Seq) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.mu.inflight[seq]; !ok {
		return
	}
	delete(w.mu.inflight, seq)
	if seq != w.mu.low {
		return
	}
	for w.mu.low < w.mu.next {
		if _, ok := w.mu.inflight[w.mu.low]; ok {
			break
		}
		w.mu.low++
	}
	w.notifyLocked()
}

// lowestUnacked is the smallest seq whose result the caller has not
// received: the lowest in flight, or the next to be handed out.
func (w *window) lowestUnacked() Seq {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.low
}

// close wakes and fails every acquire, now and later.
func (w *window) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.mu.closed {
		w.mu.closed = true
		w.notifyLocked()
	}
}

func (w *window) notifyLocked() {
	close(w.mu.changed)
	w.mu.changed = make(chan struct{})
}

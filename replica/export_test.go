package replica

import "context"

// This file exports internals to the package's external tests.

// ObserveWaits makes the run goroutine call f with the size of its wait
// registry after every input or Ready it handles. f must not block.
func (r *Replica) ObserveWaits(ctx context.Context, f func(waits int)) error {
	return r.call(ctx, func() {
		r.testHook = func() { f(r.waits.Len()) }
	})
}

// Block occupies the run goroutine until release is called, so that a test
// can fill its queues. It returns at once if the replica has stopped.
func (r *Replica) Block() (release func()) {
	rel := make(chan struct{})
	select {
	case r.ctlc <- func() { <-rel }:
	case <-r.done:
	}
	return func() { close(rel) }
}

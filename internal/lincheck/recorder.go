package lincheck

import (
	"slices"
	"sync"
	"time"
)

// Recorder collects a history from many goroutines. Each operation is
// begun (its call time taken) before its request is sent, and ended with
// its output after the answer; an operation not ended when History is
// called is in it as open-ended. Nothing begun is ever dropped.
//
// Times are nanoseconds since NewRecorder on Go's monotonic clock, so
// wall-clock jumps cannot reorder them.
type Recorder struct {
	start time.Time

	mu struct {
		sync.Mutex
		ops []Op
		// ended[i] says whether ops[i] has been ended.
		ended []bool
	}
}

// NewRecorder returns an empty Recorder whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the recorder's clock: nanoseconds since NewRecorder.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Pending is a begun operation, to be ended exactly once.
type Pending struct {
	r *Recorder
	i int
}

// Begin records that client calls in, now. Call it immediately before
// sending the request.
func (r *Recorder) Begin(client int, in Input) Pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The call time is taken under the lock, so that ops are in call
	// order (cheap to keep, and makes history files easy to read).
	r.mu.ops = append(r.mu.ops, Op{Client: client, Input: in, Call: r.Now(), Return: Open})
	r.mu.ended = append(r.mu.ended, false)
	return Pending{r: r, i: len(r.mu.ops) - 1}
}

// End records that the operation returned out, now. Call it immediately
// after the answer. An Unknown output leaves the operation open-ended
// (Return Open): it may take effect after it returned.
func (p Pending) End(out Output) {
	now := p.r.Now()
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.mu.ended[p.i] {
		panic("lincheck: operation ended twice")
	}
	p.r.mu.ended[p.i] = true
	op := &p.r.mu.ops[p.i]
	op.Output = out
	if out.Outcome != Unknown {
		op.Return = max(now, op.Call)
	}
}

// History returns every operation begun so far, in call order; those not
// yet ended are open-ended with an Unknown output. The recorder may go on
// recording.
func (r *Recorder) History() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.mu.ops)
}

// Len returns how many operations were begun.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.ops)
}

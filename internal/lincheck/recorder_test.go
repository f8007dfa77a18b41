package lincheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/cairnkv/cairn/client"
)

// TestRecorderConcurrent records from many goroutines at once (run with
// -race): every operation is there, in call order, with Return >= Call.
func TestRecorderConcurrent(t *testing.T) {
	rec := NewRecorder()
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				p := rec.Begin(w, Input{Kind: Put, Key: "k", Value: fmt.Sprintf("%d-%d", w, i)})
				p.End(Output{Outcome: OK})
			}
		})
	}
	wg.Wait()
	h := rec.History()
	if len(h) != workers*each {
		t.Fatalf("%d ops, want %d", len(h), workers*each)
	}
	for i, op := range h {
		if op.Return < op.Call || op.IsOpen() {
			t.Fatalf("op %d: %v", i, op)
		}
		if i > 0 && op.Call < h[i-1].Call {
			t.Fatalf("op %d called at %d, before op %d at %d", i, op.Call, i-1, h[i-1].Call)
		}
	}
}

// TestRecorderOpenEnded: an operation not ended, or ended Unknown, is
// open-ended; nothing is dropped.
func TestRecorderOpenEnded(t *testing.T) {
	rec := NewRecorder()
	rec.Begin(0, Input{Kind: Put, Key: "k", Value: "in-flight"})
	rec.Begin(1, Input{Kind: Put, Key: "k", Value: "timed-out"}).End(Output{Outcome: Unknown, Err: "deadline"})
	rec.Begin(2, Input{Kind: Put, Key: "k", Value: "done"}).End(Output{Outcome: OK})
	h := rec.History()
	if len(h) != 3 {
		t.Fatalf("history %v", h)
	}
	for i, want := range []bool{true, true, false} {
		if h[i].IsOpen() != want || (h[i].Return == Open) != want {
			t.Errorf("op %d: %v, open-ended %v", i, h[i], want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("ending an operation twice did not panic")
		}
	}()
	p := rec.Begin(3, Input{Kind: Get, Key: "k"})
	p.End(Output{Outcome: OK})
	p.End(Output{Outcome: OK})
}

func TestHistoryFileRoundTrip(t *testing.T) {
	ops := []Op{
		put(0, 1, 2, "k", "a"),
		casFailed(1, 3, 4, "k", "x", "y", "a"),
		opOf(2, 5, Open, Input{Kind: Append, Key: "log", Value: "t;"}, Output{}),
		notApplied(del(3, 6, 7, "k", false)),
		casAbsent(0, 8, 9, "j", "v"),
	}
	var buf bytes.Buffer
	if err := WriteHistory(&buf, ops); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Fatalf("read back\n%v\nwant\n%v", got, ops)
	}
}

func TestClassify(t *testing.T) {
	unknown := &client.OutcomeUnknownError{Op: "put", Err: fmt.Errorf("gave up: %w", client.ErrUnavailable)}
	for _, tc := range []struct {
		kind Kind
		err  error
		want Output
	}{
		{Put, nil, Output{Outcome: OK}},
		{Get, client.ErrKeyNotFound, Output{Outcome: OK}},
		{Get, fmt.Errorf("x: %w", client.ErrUnavailable), Output{Outcome: Unknown}},
		{Put, unknown, Output{Outcome: Unknown}},
		{Put, fmt.Errorf("client: put: %w", unknown), Output{Outcome: Unknown}},
		{Put, fmt.Errorf("client: put: %w", client.ErrUnavailable), Output{Outcome: NotApplied}},
		{Put, fmt.Errorf("client: put: %w", client.ErrKeyTooLarge), Output{Outcome: NotApplied}},
		{Put, fmt.Errorf("client: put: %w", client.ErrSessionExpired), Output{Outcome: NotApplied}},
		{Put, context.DeadlineExceeded, Output{Outcome: Unknown}},
		{Put, errors.New("something else"), Output{Outcome: Unknown}},
		{CompareAndSwap, &client.CASFailedError{Current: &client.KeyValue{Value: []byte("cur")}}, Output{Outcome: CASFailed, Found: true, Value: "cur"}},
		{CompareAndSwap, &client.CASFailedError{}, Output{Outcome: CASFailed}},
	} {
		got := Classify(tc.kind, tc.err)
		got.Err = ""
		if got != tc.want {
			t.Errorf("Classify(%v, %v) = %+v, want %+v", tc.kind, tc.err, got, tc.want)
		}
	}
}

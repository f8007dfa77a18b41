package kv

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/replica"
)

var _ replica.StateMachine = (*StateMachine)(nil)

// Readers on other goroutines, beside Apply and Restore, never see a torn
// state: keys a and b are only ever written together (one Batch), so
// every read sees them equal, with an applied index that does not go
// back. During Restore they fail fast with ErrUnavailable.
func TestReadsBesideApplyAndRestore(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	pair := func(i int) *kvpb.BatchRequest {
		v := []byte(fmt.Sprint(i))
		return &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{
			{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("a"), Value: v}}},
			{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("b"), Value: v}}},
		}}
	}
	l.ok(pair(0))
	var snap bytes.Buffer
	if err := sm.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}

	var restoresStarted, restoresFinished atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Go(func() {
			var last, finishedBeforeLast uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				finishedBefore := restoresFinished.Load()
				resp, err := sm.Scan(&kvpb.ScanRequest{Start: []byte("a"), End: []byte("c")})
				if errors.Is(err, ErrUnavailable) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				kvs := resp.GetKvs()
				if len(kvs) != 2 || !bytes.Equal(kvs[0].GetValue(), kvs[1].GetValue()) {
					errs <- fmt.Errorf("reader %d: torn scan %v", r, kvs)
					return
				}
				// The applied index only grows, but for a Restore (which
				// goes back to the snapshot's) that started after the
				// previous read began.
				startedAfter := restoresStarted.Load()
				if idx := resp.GetHeader().GetAppliedIndex(); idx < last && startedAfter <= finishedBeforeLast {
					errs <- fmt.Errorf("reader %d: applied index went from %d to %d", r, last, idx)
					return
				} else {
					last, finishedBeforeLast = idx, finishedBefore
				}
				if _, err := sm.Get([]byte("a")); err != nil && !errors.Is(err, ErrUnavailable) {
					errs <- err
					return
				}
			}
		})
	}
	for i := 1; i <= 300; i++ {
		l.ok(pair(i))
		if i%100 == 0 {
			restoresStarted.Add(1)
			if err := sm.Restore(bytes.NewReader(snap.Bytes())); err != nil {
				t.Fatal(err)
			}
			restoresFinished.Add(1)
			l.index = sm.AppliedIndex()
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

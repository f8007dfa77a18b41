package replica_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/raft"
)

// TestReportUnreachableRacesLoop: transports report unreachable peers
// from their own goroutines while the replica's loop drains the reports.
// Under -race this fails if the loop ever touches a map a reporter can
// still write (it did: it iterated the mailbox's own map when it was
// empty, which the chaos runner's race-built servers caught). The cluster
// must also keep committing.
func TestReportUnreachableRacesLoop(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lead := c.waitLeader(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range c.ids {
		r := c.r(id)
		wg.Go(func() {
			for peer := raft.NodeID(1); ; peer = peer%3 + 1 {
				select {
				case <-stop:
					return
				default:
					r.ReportUnreachable(peer)
					runtime.Gosched()
				}
			}
		})
	}
	for i := range 20 {
		c.propose(ctx, fmt.Sprintf("k%d=v", i))
	}
	close(stop)
	wg.Wait()
	if c.r(lead) == nil {
		t.Fatal("the leader stopped")
	}
}

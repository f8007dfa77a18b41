package replica_test

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkPropose measures committed proposals through a 3-replica
// cluster on the in-memory network: many concurrent proposers, so the
// replica batches them. Reported per committed proposal.
func BenchmarkPropose(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := newCluster(b, 3, nil)
	r := c.r(c.waitLeader(ctx))
	cmd := []byte("k=" + strconv.Itoa(1))
	b.ReportAllocs()
	b.SetParallelism(32) // proposers per CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Propose(ctx, cmd); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

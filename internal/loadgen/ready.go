package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotReady is returned (wrapped, with the last failure) by WaitReady when
// the store did not answer in time.
var ErrNotReady = errors.New("loadgen: store not ready")

// WaitReady returns once a linearizable Get of key succeeds through d (which
// needs a leader and a quorum), retrying every 100ms, or fails with
// ErrNotReady after timeout. A freshly started cluster is ready when it has
// elected a leader; benchmarking it before that measures the election.
func WaitReady(ctx context.Context, d Driver, key []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		opCtx, opCancel := context.WithTimeout(ctx, time.Second)
		_, err := d.Get(opCtx, key, Linearizable)
		opCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %v: %w", ErrNotReady, timeout, err)
		case <-retry.C:
		}
	}
}

package loadgen

import (
	"context"
	"sync"
	"time"
)

// MemDriver is an in-memory Driver: a map under a mutex, with an optional
// fixed delay per operation. It measures the load generator itself (what it
// can issue with no store behind it) and serves the package's tests. One
// MemDriver may be handed out for every connection, as MemDialer does.
type MemDriver struct {
	// Delay, if positive, is slept (honouring the context) in every
	// operation, to stand in for a store's latency.
	Delay time.Duration

	mu struct {
		sync.Mutex
		data       map[string][]byte
		puts, gets int64
	}
}

// NewMemDriver returns an empty MemDriver.
func NewMemDriver() *MemDriver {
	m := &MemDriver{}
	m.mu.data = make(map[string][]byte)
	return m
}

// MemDialer returns a Dialer that hands out m for every connection.
func MemDialer(m *MemDriver) Dialer {
	return func(context.Context, int) (Driver, error) { return m, nil }
}

func (m *MemDriver) wait(ctx context.Context) error {
	if m.Delay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(m.Delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Put implements Driver.
func (m *MemDriver) Put(ctx context.Context, key, value []byte) error {
	if err := m.wait(ctx); err != nil {
		return err
	}
	v := append([]byte(nil), value...)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.data[string(key)] = v
	m.mu.puts++
	return nil
}

// Get implements Driver; level makes no difference to a single map.
func (m *MemDriver) Get(ctx context.Context, key []byte, _ ReadLevel) (bool, error) {
	if err := m.wait(ctx); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.mu.data[string(key)]
	m.mu.gets++
	return ok, nil
}

// Close implements Driver; it does nothing.
func (m *MemDriver) Close() error { return nil }

// Counts returns the number of Puts and Gets that completed, and the number
// of distinct keys stored.
func (m *MemDriver) Counts() (puts, gets int64, keys int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.puts, m.mu.gets, len(m.mu.data)
}

package etcddriver

import (
	"context"
	"errors"
	"testing"
)

// The driver itself is exercised against a real etcd cluster by
// bench/vs-etcd.sh; these tests cover what needs no server.

func TestDialerWithoutEndpoints(t *testing.T) {
	_, err := Dialer(Config{})(context.Background(), 0)
	if !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("err = %v, want ErrNoEndpoints", err)
	}
	if _, err := LeaderEndpoint(context.Background(), Config{}); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("LeaderEndpoint err = %v, want ErrNoEndpoints", err)
	}
}

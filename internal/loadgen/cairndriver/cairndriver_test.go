package cairndriver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/loadgen"
	"github.com/cairnkv/cairn/internal/testcluster"
)

func TestDialerWithoutEndpoints(t *testing.T) {
	if _, err := Dialer(Config{})(context.Background(), 0); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("err = %v, want ErrNoEndpoints", err)
	}
}

// TestDriver runs the driver against an in-process cluster: a Put is
// found by Gets at both levels, a missing key is a miss, not an error.
func TestDriver(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := Dialer(Config{Endpoints: c.Endpoints()})(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := loadgen.WaitReady(ctx, d, []byte("ready"), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	// (A serializable read of k may be served by a follower that has not
	// applied the put yet, so only the linearizable one must find it.)
	if found, err := d.Get(ctx, []byte("k"), loadgen.Linearizable); err != nil || !found {
		t.Fatalf("Get(k, linearizable) = %v, %v", found, err)
	}
	for _, level := range []loadgen.ReadLevel{loadgen.Linearizable, loadgen.Serializable} {
		if found, err := d.Get(ctx, []byte("missing"), level); err != nil || found {
			t.Errorf("Get(missing, %v) = %v, %v; want a miss", level, found, err)
		}
	}
	if _, err := d.Get(ctx, []byte("k"), loadgen.ReadLevel(9)); err == nil {
		t.Error("an unknown read level was accepted")
	}
}

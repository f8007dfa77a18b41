package replica_test

import (
	"testing"
	"time"

	"github.com/cairnkv/cairn/replica"
)

func TestTickerFansOut(t *testing.T) {
	tk := replica.NewTicker(time.Millisecond)
	defer tk.Stop()
	a, cancelA := tk.Subscribe()
	b, cancelB := tk.Subscribe()
	defer cancelB()
	timeout := time.After(10 * time.Second)
	for _, c := range []<-chan struct{}{a, b, a, b} {
		select {
		case <-c:
		case <-timeout:
			t.Fatal("no tick")
		}
	}
	cancelA()
	cancelA() // idempotent
	tk.Stop()
	tk.Stop() // idempotent
}

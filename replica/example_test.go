package replica_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/replica"
	"github.com/cairnkv/cairn/replica/memnet"
)

// counter is the smallest useful state machine: every command adds its
// length to a total, and the result of a command is the new total.
type counter struct {
	mu    sync.Mutex
	total uint64
}

func (c *counter) Apply(ents []raft.Entry) ([]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]any, len(ents))
	for i, e := range ents {
		c.total += uint64(len(e.Data))
		out[i] = c.total
	}
	return out, nil
}

func (c *counter) Snapshot(w io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.Write(w, binary.BigEndian, c.total)
}

func (c *counter) Restore(r io.Reader) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.Read(r, binary.BigEndian, &c.total)
}

func (c *counter) get() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Three replicas of one group in one process, over the in-memory network
// and one shared clock: propose on whoever leads, read linearizably on any.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	net := memnet.New()
	defer net.Close()
	clock := replica.NewTicker(2 * time.Millisecond)
	defer clock.Stop()

	ids := []raft.NodeID{1, 2, 3}
	replicas := map[raft.NodeID]*replica.Replica{}
	counters := map[raft.NodeID]*counter{}
	for _, id := range ids {
		storage := raft.NewMemoryStorage()
		if err := raft.Bootstrap(storage, ids...); err != nil {
			panic(err)
		}
		counters[id] = &counter{}
		r, err := replica.New(replica.Config{
			ID:           id,
			Raft:         raft.Config{ElectionTick: 20, HeartbeatTick: 2},
			Log:          replica.NewMemoryLogStore(storage),
			Snapshots:    replica.NewMemorySnapshotStore(),
			StateMachine: counters[id],
			Transport:    net.Endpoint(id),
			Ticks:        clock,
			Logger:       slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		defer r.Stop()
		net.Endpoint(id).Attach(r)
		replicas[id] = r
	}

	// Propose anywhere; a follower names the leader.
	propose := func(cmd string) any {
		to := ids[0]
		for {
			res, err := replicas[to].Propose(ctx, []byte(cmd))
			var nl *replica.NotLeaderError
			switch {
			case err == nil:
				return res
			case errors.As(err, &nl) && nl.Leader != raft.None:
				to = nl.Leader
			case errors.As(err, &nl):
				// No leader known yet: wait until the replica asked sees a
				// change of leadership (without polling), then ask again.
				if st, changed := replicas[to].Leader(); st.Lead == raft.None {
					select {
					case <-changed:
					case <-ctx.Done():
						panic(ctx.Err())
					}
				}
			case errors.Is(err, replica.ErrNotCommitted):
				// Another leader's entry took its place: it had no
				// effect, and may be proposed again.
			default:
				panic(err)
			}
		}
	}
	fmt.Println(propose("abc"))
	fmt.Println(propose("de"))

	// A linearizable read on a follower (or the leader).
	if _, err := replicas[3].ReadIndex(ctx); err != nil {
		panic(err)
	}
	fmt.Println(counters[3].get())
	// Output:
	// 3
	// 5
	// 5
}

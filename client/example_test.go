package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/client/internal/fakekv"
)

// startCluster starts the in-process fake 3-node cluster the examples run
// against. Against a real cluster, Endpoints are its nodes' addresses.
func startCluster() *fakekv.Cluster {
	cluster, err := fakekv.Start(fakekv.Config{Nodes: 3})
	if err != nil {
		log.Fatal(err)
	}
	return cluster
}

func Example() {
	cluster := startCluster()
	defer cluster.Close()

	c, err := client.New(client.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Put(ctx, []byte("greeting"), []byte("hello")); err != nil {
		log.Fatal(err)
	}
	got, err := c.Get(ctx, []byte("greeting")) // linearizable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", got.Value)

	// A possibly stale read, served by any node.
	got, err = c.Get(ctx, []byte("greeting"), client.WithConsistency(client.Serializable))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", got.Value)

	_, err = c.Get(ctx, []byte("farewell"))
	fmt.Println(errors.Is(err, client.ErrKeyNotFound))
	// Output:
	// hello
	// hello
	// true
}

// A read-modify-write loop: CompareAndSwap on the version read, and read
// again when someone else got there first.
func ExampleClient_CompareAndSwap() {
	cluster := startCluster()
	defer cluster.Close()
	c, err := client.New(client.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	key := []byte("counter")

	increment := func() error {
		for {
			expect, n := client.IfAbsent(), 0
			cur, err := c.Get(ctx, key)
			switch {
			case errors.Is(err, client.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				expect = client.IfVersion(cur.Version)
				if n, err = strconv.Atoi(string(cur.Value)); err != nil {
					return err
				}
			}
			_, err = c.CompareAndSwap(ctx, key, expect, []byte(strconv.Itoa(n+1)))
			if errors.Is(err, client.ErrCASFailed) {
				continue // changed since we read it: again
			}
			return err
		}
	}
	for range 3 {
		if err := increment(); err != nil {
			log.Fatal(err)
		}
	}

	// A failed condition says what is there instead.
	_, err = c.CompareAndSwap(ctx, key, client.IfValue([]byte("41")), []byte("42"))
	var failed *client.CASFailedError
	if errors.As(err, &failed) {
		fmt.Printf("counter is %s, not 41\n", failed.Current.Value)
	}
	// Output:
	// counter is 3, not 41
}

func ExampleClient_ScanAll() {
	cluster := startCluster()
	defer cluster.Close()
	c, err := client.New(client.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	for _, fruit := range []string{"apple", "banana", "cherry", "damson", "elderberry"} {
		if _, err := c.Put(ctx, []byte("fruit/"+fruit), []byte(strconv.Itoa(len(fruit)))); err != nil {
			log.Fatal(err)
		}
	}
	// Two keys a page, following the continuations; [fruit/b, fruit/e).
	for kv, err := range c.ScanAll(ctx, []byte("fruit/b"), []byte("fruit/e"), client.WithPageSize(2)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
	}
	// Output:
	// fruit/banana=6
	// fruit/cherry=6
	// fruit/damson=6
}

// A transfer between two accounts: both writes or neither, and only if
// the source is as we read it.
func ExampleClient_Batch() {
	cluster := startCluster()
	defer cluster.Close()
	c, err := client.New(client.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	alice, err := c.Put(ctx, []byte("balance/alice"), []byte("100"))
	if err != nil {
		log.Fatal(err)
	}
	transfer := client.NewBatch().
		CompareAndSwap([]byte("balance/alice"), client.IfVersion(alice.Version), []byte("70")).
		Put([]byte("balance/bob"), []byte("30"))
	if _, err := c.Batch(ctx, transfer); err != nil {
		log.Fatal(err)
	}

	// The same batch again: alice's version has moved on, so nothing applies.
	_, err = c.Batch(ctx, transfer)
	var failed *client.CASFailedError
	if errors.As(err, &failed) {
		fmt.Printf("op %d failed: %s is %s\n", failed.Op, failed.Key, failed.Current.Value)
	}
	for kv, err := range c.ScanAll(ctx, []byte("balance/"), []byte("balance0")) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
	}
	// Output:
	// op 0 failed: balance/alice is 70
	// balance/alice=70
	// balance/bob=30
}

// What to do when a write's outcome is unknown. Here the fake cluster
// applies the append, loses the reply, and expires the client's session
// before the retry arrives: the server can no longer tell the client
// whether the append applied, and retrying it on a new session might
// apply it twice, so the client reports the outcome as unknown. The
// caller reads the key to find out.
func ExampleOutcomeUnknownError() {
	cluster := startCluster()
	defer cluster.Close()
	cluster.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method != "Append" {
			return fakekv.Action{}
		}
		if call.Attempt == 1 {
			return fakekv.Action{DropReply: true}
		}
		cluster.ExpireSession(call.Session)
		return fakekv.Action{}
	})
	c, err := client.New(client.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	_, err = c.Append(ctx, []byte("log"), []byte("entry;"))
	var unknown *client.OutcomeUnknownError
	switch {
	case errors.As(err, &unknown):
		fmt.Println("outcome unknown:", errors.Is(err, client.ErrSessionExpired))
		got, err := c.Get(ctx, []byte("log"))
		if err != nil && !errors.Is(err, client.ErrKeyNotFound) {
			log.Fatal(err)
		}
		if got != nil {
			fmt.Printf("it applied: log=%s\n", got.Value)
		}
	case err != nil:
		log.Fatal(err)
	}
	// Output:
	// outcome unknown: true
	// it applied: log=entry;
}

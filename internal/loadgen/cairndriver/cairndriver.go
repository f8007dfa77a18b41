// Package cairndriver drives a cairn cluster with cairn's load generator,
// through cairn's own Go client (package client), so that cairn and etcd
// (internal/loadgen/etcddriver) are measured by the same code doing the
// same work.
//
// Each loadgen connection is one client.Client: one gRPC connection per
// endpoint, one session for its writes. A Put is client.Put: exactly-once,
// through the leader, acknowledged once committed by a majority (every WAL
// write is fsynced). A Linearizable Get is client.Get at
// client.Linearizable (ReadIndex at the leader); a Serializable Get is
// client.Get at client.Serializable, which the client spreads over all the
// endpoints, each answering from its local state.
package cairndriver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/loadgen"
)

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are the nodes' client (KV service) addresses, host:port.
	Endpoints []string
	// DialTimeout bounds one attempt to connect to a node. Default: the
	// client's (client.DefaultDialTimeout).
	DialTimeout time.Duration
	// RequestTimeout bounds one operation with its retries when the
	// runner's context has no earlier deadline (it always has one:
	// loadgen.Config.OpTimeout). Default: the client's.
	RequestTimeout time.Duration
	// MaxInflight is each connection's window of writes in flight.
	// Default: the client's (client.DefaultMaxInflight).
	MaxInflight int
}

// ErrNoEndpoints is returned by Dialer's connections when Config has none.
var ErrNoEndpoints = errors.New("cairndriver: no endpoints")

// Dialer returns a loadgen.Dialer that opens one cairn client per
// connection. New does no I/O, so a dial succeeds even when the cluster
// is down: use loadgen.WaitReady to wait for it.
func Dialer(cfg Config) loadgen.Dialer {
	return func(_ context.Context, conn int) (loadgen.Driver, error) {
		if len(cfg.Endpoints) == 0 {
			return nil, ErrNoEndpoints
		}
		c, err := client.New(client.Config{
			Endpoints:      cfg.Endpoints,
			DialTimeout:    cfg.DialTimeout,
			RequestTimeout: cfg.RequestTimeout,
			MaxInflight:    cfg.MaxInflight,
		})
		if err != nil {
			return nil, fmt.Errorf("cairndriver: connection %d to %v: %w", conn, cfg.Endpoints, err)
		}
		return &driver{c: c}, nil
	}
}

// driver is one cairn client; client.Client is safe for concurrent use and
// retains neither key nor value after a call returns.
type driver struct {
	c *client.Client
}

func (d *driver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.c.Put(ctx, key, value)
	return err
}

func (d *driver) Get(ctx context.Context, key []byte, level loadgen.ReadLevel) (bool, error) {
	var cons client.Consistency
	switch level {
	case loadgen.Linearizable:
		cons = client.Linearizable
	case loadgen.Serializable:
		cons = client.Serializable
	default:
		return false, fmt.Errorf("cairndriver: unsupported read level %v", level)
	}
	_, err := d.c.Get(ctx, key, client.WithConsistency(cons))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, client.ErrKeyNotFound):
		return false, nil
	}
	return false, err
}

func (d *driver) Close() error { return d.c.Close() }

// Package etcddriver drives an etcd cluster with cairn's load generator,
// through etcd's own Go client (go.etcd.io/etcd/client/v3), so that cairn and
// etcd are measured by the same code doing the same work.
//
// Each loadgen connection is one clientv3.Client, that is one gRPC
// connection, balanced by the client over all the endpoints given (as etcd's
// own benchmark tool does). Puts are plain Puts; a Linearizable Get is etcd's
// default Range, served through ReadIndex on whichever member receives it; a
// Serializable Get adds WithSerializable, served from that member's local
// state.
package etcddriver

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cairnkv/cairn/internal/loadgen"
)

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are the members' client URLs, e.g. http://127.0.0.1:2379.
	Endpoints []string
	// DialTimeout bounds opening each connection. Default 5s.
	DialTimeout time.Duration
}

// ErrNoEndpoints is returned by Dialer's connections when Config has none.
var ErrNoEndpoints = errors.New("etcddriver: no endpoints")

// Dialer returns a loadgen.Dialer that opens one etcd client per connection.
func Dialer(cfg Config) loadgen.Dialer {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	return func(ctx context.Context, conn int) (loadgen.Driver, error) {
		if len(cfg.Endpoints) == 0 {
			return nil, ErrNoEndpoints
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.Endpoints,
			DialTimeout: cfg.DialTimeout,
			Context:     ctx,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("etcddriver: connection %d to %v: %w", conn, cfg.Endpoints, err)
		}
		return &driver{cli: cli}, nil
	}
}

// driver is one etcd client; clientv3.Client is safe for concurrent use.
type driver struct {
	cli *clientv3.Client
}

func (d *driver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.cli.Put(ctx, string(key), string(value))
	return err
}

func (d *driver) Get(ctx context.Context, key []byte, level loadgen.ReadLevel) (bool, error) {
	var opts []clientv3.OpOption
	switch level {
	case loadgen.Linearizable:
	case loadgen.Serializable:
		opts = append(opts, clientv3.WithSerializable())
	default:
		return false, fmt.Errorf("etcddriver: unsupported read level %v", level)
	}
	resp, err := d.cli.Get(ctx, string(key), opts...)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}

func (d *driver) Close() error { return d.cli.Close() }

// ErrNoLeader is returned by LeaderEndpoint when no endpoint reports being
// the leader.
var ErrNoLeader = errors.New("etcddriver: no endpoint is the leader")

// LeaderEndpoint returns the endpoint of the current leader, asking each
// endpoint for its status. Sending every request there ("leader only" in
// etcd's own benchmark documentation) spares puts the follower-to-leader
// forwarding hop that etcd's client, which balances over all endpoints,
// otherwise pays on two requests in three.
func LeaderEndpoint(ctx context.Context, cfg Config) (string, error) {
	if len(cfg.Endpoints) == 0 {
		return "", ErrNoEndpoints
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return "", fmt.Errorf("etcddriver: %w", err)
	}
	defer cli.Close()
	var errs []error
	for _, ep := range cfg.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		if st.Header != nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
			return ep, nil
		}
	}
	return "", fmt.Errorf("%w among %v: %w", ErrNoLeader, cfg.Endpoints, errors.Join(errs...))
}

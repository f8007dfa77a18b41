package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// serverOptions are cairn server's flags.
type serverOptions struct {
	configFile string

	id           uint64
	clusterID    uint64
	peers        string
	dataDir      string
	listenPeer   string
	listenClient string
	join         bool

	tick           time.Duration
	electionTicks  int
	heartbeatTicks int

	maxKeySize, maxValueSize, maxRequestSize uint64
	snapshotEvery                            uint64

	requestTimeout  time.Duration
	shutdownTimeout time.Duration
	faultInjection  bool

	logFormat string
	logLevel  string
}

// envPrefix starts the environment variable of every cairn server flag:
// --cluster-id is CAIRN_CLUSTER_ID.
const envPrefix = "CAIRN_"

const serverLong = `Run one node of a cairn cluster.

A node is named by its id (unique in the cluster, never reused) and needs
the address of every node of the cluster, itself included, as
ID=PEER_ADDR/CLIENT_ADDR: the peer address carries Raft traffic between
nodes, the client address the KV and Admin services (what --endpoints of
the other commands lists). Start every node of a new cluster with the same
--cluster-id and --peers; each bootstraps the cluster on its first start,
in its own --data-dir. A node whose data directory belongs to another
cluster or node refuses to start.

A three-node cluster on one machine:

  cairn server --id 1 --cluster-id 7 --data-dir /tmp/cairn1 \
    --peers 1=127.0.0.1:8001/127.0.0.1:7001,2=127.0.0.1:8002/127.0.0.1:7002,3=127.0.0.1:8003/127.0.0.1:7003
  cairn server --id 2 ... --data-dir /tmp/cairn2   (the same --cluster-id and --peers)
  cairn server --id 3 ... --data-dir /tmp/cairn3
  cairn put greeting hello                          (--endpoints defaults to 127.0.0.1:7001-7003)

Every flag can also come from the environment, as CAIRN_ and the flag's
name in capitals with underscores (--cluster-id: CAIRN_CLUSTER_ID), or from
a JSON config file (--config, or CAIRN_CONFIG) whose keys are the flags'
names:

  {
    "id": 1,
    "cluster-id": 7,
    "peers": "1=10.0.0.1:8001/10.0.0.1:7001,2=10.0.0.2:8001/10.0.0.2:7001,3=10.0.0.3:8001/10.0.0.3:7001",
    "data-dir": "/var/lib/cairn",
    "log-format": "json"
  }

A flag on the command line wins over the environment, which wins over the
file. Durations are written as "50ms", "5s". A list (peers) may also be a
JSON array of "ID=PEER/CLIENT" strings.

SIGTERM or SIGINT shuts the node down cleanly: it stops accepting requests,
hands the leadership of its groups to a follower, lets requests in flight
finish (up to --shutdown-timeout), then syncs and closes its storage. A
node whose disk fails exits with status 1 and must be restarted.`

func newServerCmd() *cobra.Command {
	cmd, _ := newServerCommand()
	return cmd
}

// newServerCommand returns cairn server's command and the options its
// flags set.
func newServerCommand() (*cobra.Command, *serverOptions) {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one node of a cluster",
		Long:  serverLong,
		Args:  argsUsage(0, 0, "(none)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := o.resolve(cmd.Flags(), os.LookupEnv, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runServer(cmd, cfg, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "a JSON config file whose keys are these flags' names (flags and CAIRN_* variables win over it)")
	f.Uint64Var(&o.id, "id", 0, "this node's id: unique in the cluster, never reused (required)")
	f.Uint64Var(&o.clusterID, "cluster-id", 0, "the cluster's id, the same on every node (required)")
	f.StringVar(&o.peers, "peers", "", "every node of the cluster, itself included: ID=PEER_ADDR/CLIENT_ADDR,... (required)")
	f.StringVar(&o.dataDir, "data-dir", "", "the node's data directory, created on first start (required)")
	f.StringVar(&o.listenPeer, "listen-peer", "", "the address to listen on for peers (default: this node's peer address in --peers)")
	f.StringVar(&o.listenClient, "listen-client", "", "the address to listen on for clients (default: this node's client address in --peers)")
	f.BoolVar(&o.join, "join", false, "on a first start, join a running cluster instead of bootstrapping a new one (also: rejoin after the data directory was wiped)")
	f.DurationVar(&o.tick, "tick", server.DefaultTickInterval, "the length of a Raft tick")
	f.IntVar(&o.electionTicks, "election-ticks", server.DefaultElectionTicks, "the election timeout, in ticks")
	f.IntVar(&o.heartbeatTicks, "heartbeat-ticks", server.DefaultHeartbeatTicks, "the leader's heartbeat interval, in ticks")
	f.Uint64Var(&o.maxKeySize, "max-key-size", 0, fmt.Sprintf("a new cluster's key size limit, in bytes (default %d)", kv.DefaultLimits.MaxKeySize))
	f.Uint64Var(&o.maxValueSize, "max-value-size", 0, fmt.Sprintf("a new cluster's value size limit, in bytes (default %d)", kv.DefaultLimits.MaxValueSize))
	f.Uint64Var(&o.maxRequestSize, "max-request-size", 0, fmt.Sprintf("a new cluster's request size limit, in bytes (default %d)", kv.DefaultLimits.MaxRequestSize))
	f.Uint64Var(&o.snapshotEvery, "snapshot-every", 0, "snapshot and compact the log every this many entries (default 10000)")
	f.DurationVar(&o.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "the longest the node works on a request whose client set no deadline")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "on SIGTERM, how long requests in flight may take to finish")
	f.BoolVar(&o.faultInjection, "enable-fault-injection", false, "let the Admin service's SetFaults and SetDiskFaults cut this node's links and slow or fill its disk (tests and chaos runs only)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd, o
}

// resolve applies the environment and the config file to the flags the
// command line did not set (flag > environment > file), checks them, and
// returns the node's config and logger. Configuration errors are usage
// errors (exit status 2), listing every problem.
func (o *serverOptions) resolve(fs *pflag.FlagSet, getenv func(string) (string, bool), logOut io.Writer) (server.Config, *slog.Logger, error) {
	var problems []string
	// The environment.
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v, ok := getenv(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
		}
	})
	// The file.
	if o.configFile != "" {
		problems = append(problems, o.applyFile(fs)...)
	}
	if len(problems) > 0 {
		return server.Config{}, nil, configErr(problems)
	}

	logger, err := newLogger(logOut, o.logFormat, o.logLevel)
	if err != nil {
		problems = append(problems, err.Error())
	}
	cfg := server.Config{
		NodeID:               raft.NodeID(o.id),
		ClusterID:            o.clusterID,
		DataDir:              o.dataDir,
		ListenPeer:           o.listenPeer,
		ListenClient:         o.listenClient,
		Join:                 o.join,
		TickInterval:         o.tick,
		ElectionTicks:        o.electionTicks,
		HeartbeatTicks:       o.heartbeatTicks,
		SnapshotEvery:        o.snapshotEvery,
		RequestTimeout:       o.requestTimeout,
		ShutdownTimeout:      o.shutdownTimeout,
		EnableFaultInjection: o.faultInjection,
		Logger:               logger,
	}
	if o.peers != "" {
		peers, err := server.ParsePeers(o.peers)
		if err != nil {
			problems = append(problems, "--peers: "+trimConfigPrefix(err))
		}
		cfg.Peers = peers
	}
	if o.maxKeySize != 0 || o.maxValueSize != 0 || o.maxRequestSize != 0 {
		lim := kv.DefaultLimits
		if o.maxKeySize != 0 {
			lim.MaxKeySize = o.maxKeySize
		}
		if o.maxValueSize != 0 {
			lim.MaxValueSize = o.maxValueSize
		}
		if o.maxRequestSize != 0 {
			lim.MaxRequestSize = o.maxRequestSize
		}
		cfg.InitialLimits = &lim
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, splitJoined(err)...)
	}
	if len(problems) > 0 {
		return server.Config{}, nil, configErr(problems)
	}
	return cfg, logger, nil
}

// applyFile sets the flags not set yet from the JSON config file.
func (o *serverOptions) applyFile(fs *pflag.FlagSet) []string {
	data, err := os.ReadFile(o.configFile)
	if err != nil {
		return []string{fmt.Sprintf("config file: %v", err)}
	}
	var entries map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&entries); err != nil {
		return []string{fmt.Sprintf("config file %s: not a JSON object: %v", o.configFile, err)}
	}
	var problems []string
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, name := range keys {
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			problems = append(problems, fmt.Sprintf("config file %s: unknown key %q (the keys are cairn server's flag names)", o.configFile, name))
			continue
		}
		if f.Changed {
			continue // the command line or the environment set it
		}
		v, err := jsonFlagValue(entries[name])
		if err == nil {
			err = fs.Set(name, v)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("config file %s: %q: %v", o.configFile, name, err))
		}
	}
	return problems
}

// jsonFlagValue is a JSON value as a flag's text: a string as is, a
// number or boolean as written, an array of strings joined by commas.
func jsonFlagValue(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return fmt.Sprint(x), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("a list must hold strings, found %v", e)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a string, number, boolean or list of strings, found %s", raw)
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// configErr is a usage error listing every configuration problem.
func configErr(problems []string) error {
	return usageErr(fmt.Errorf("bad configuration (see cairn server --help):\n  %s", strings.Join(problems, "\n  ")))
}

// splitJoined lists the errors of an errors.Join, each without the
// "server: invalid config: " prefix.
func splitJoined(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, trimConfigPrefix(e))
		}
		return out
	}
	return []string{trimConfigPrefix(err)}
}

func trimConfigPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), server.ErrInvalidConfig.Error()+": ")
}

// runServer runs the node until SIGTERM or SIGINT (the command's context
// ends) or a fatal error, then stops it.
func runServer(cmd *cobra.Command, cfg server.Config, logger *slog.Logger) error {
	n, err := server.Start(cfg)
	if err != nil {
		return trimmed{err}
	}
	select {
	case <-cmd.Context().Done():
		logger.Info("signal received: shutting down", "node", uint64(cfg.NodeID))
		if err := n.Shutdown(); err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
		return nil
	case <-n.Fatal():
		// The disk cannot be trusted to hold what was acknowledged: stop at
		// once and exit, so that a restart reads back what it really holds.
		_ = n.Stop()
		return fmt.Errorf("node %d failed and stopped: %w (restart it; it recovers from its data directory)", cfg.NodeID, n.Err())
	}
}

// trimmed is a server error without its package prefix, which the
// command's own name replaces ("cairn server: ...").
type trimmed struct{ err error }

func (t trimmed) Error() string { return strings.TrimPrefix(t.err.Error(), "server: ") }
func (t trimmed) Unwrap() error { return t.err }

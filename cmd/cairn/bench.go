package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/internal/loadgen"
	"github.com/cairnkv/cairn/internal/loadgen/cairndriver"
	"github.com/cairnkv/cairn/internal/loadgen/etcddriver"
)

func newBenchCmd(g *globals) *cobra.Command {
	var (
		cfg          loadgen.Config
		target       string
		jsonOut      string
		readyTimeout time.Duration
		leaderOnly   bool
		progress     string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run a load-generator workload against cairn (or etcd)",
		Long: `Run one workload of cairn's load generator (internal/loadgen) against the
cluster at --endpoints: closed-loop clients over shared connections, a mix
of puts and gets over a key space, a progress line each second on stderr,
and a summary with p50/p90/p99/p99.9 latencies; --json writes the full
result. --target etcd drives an etcd cluster through etcd's Go client with
the same workload (bench/vs-etcd.sh compares the two).

  cairn bench --clients 16 --duration 10s
  cairn bench --read-fraction 1 --read-level serializable --preload --clients 64
  cairn bench --target etcd --endpoints http://127.0.0.1:2379 --json out.json`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Target = target
			switch progress {
			case "auto":
				cfg.Progress = loadgen.ProgressPrinter(g.stderr, isTerminal(g.stderr))
			case "lines":
				cfg.Progress = loadgen.ProgressPrinter(g.stderr, false)
			case "off":
			default:
				return usageErr(fmt.Errorf("--progress must be auto, lines or off, not %q", progress))
			}

			var dial loadgen.Dialer
			switch target {
			case "cairn":
				dial = cairndriver.Dialer(cairndriver.Config{Endpoints: g.endpoints, DialTimeout: g.dialTimeout})
			case "etcd":
				eps := g.endpoints
				if !cmd.Flags().Changed("endpoints") {
					eps = []string{"http://127.0.0.1:2379"}
				}
				ecfg := etcddriver.Config{Endpoints: eps, DialTimeout: max(g.dialTimeout, 5*time.Second)}
				if leaderOnly {
					if err := waitReady(cmd.Context(), etcddriver.Dialer(ecfg), cfg, readyTimeout); err != nil {
						return err
					}
					leader, err := etcddriver.LeaderEndpoint(cmd.Context(), ecfg)
					if err != nil {
						return err
					}
					fmt.Fprintf(g.stderr, "bench: leader only: %s\n", leader)
					ecfg.Endpoints = []string{leader}
				}
				dial = etcddriver.Dialer(ecfg)
			default:
				return usageErr(fmt.Errorf("--target must be cairn or etcd, not %q", target))
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageErr(err)
			}
			if err := waitReady(cmd.Context(), dial, cfg, readyTimeout); err != nil {
				return &exitError{code: exitUnavailable, err: err}
			}

			res, err := loadgen.Run(cmd.Context(), cfg, dial)
			if res == nil {
				return err
			}
			summary := g.stdout
			if jsonOut == "-" {
				summary = g.stderr
			}
			if werr := writeResult(g.stdout, jsonOut, res); werr != nil {
				return werr
			}
			_ = res.WriteSummary(summary)
			return err // nil, or the interruption
		},
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	loadgen.RegisterFlags(fs, &cfg)
	cmd.Flags().AddGoFlagSet(fs)
	f := cmd.Flags()
	f.StringVar(&target, "target", "cairn", "system to drive: cairn, or etcd (through etcd's Go client)")
	f.StringVar(&jsonOut, "json", "", `write the result as JSON to this file ("-": stdout)`)
	f.DurationVar(&readyTimeout, "ready-timeout", 30*time.Second, "how long to wait for the cluster to answer a linearizable read before starting")
	f.BoolVar(&leaderOnly, "leader-only", false, "etcd: send every request to the leader's endpoint (found at the start)")
	f.StringVar(&progress, "progress", "auto", "progress line on stderr: auto (redrawn on a terminal, else a line a second), lines, off")
	return cmd
}

// waitReady opens one connection and waits until the cluster serves a
// linearizable read, so that a fresh cluster's election is not measured.
func waitReady(ctx context.Context, dial loadgen.Dialer, cfg loadgen.Config, timeout time.Duration) error {
	d, err := dial(ctx, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return loadgen.WaitReady(ctx, d, []byte(cfg.WithDefaults().KeyPrefix+"ready"), timeout)
}

func writeResult(stdout io.Writer, path string, res *loadgen.Result) error {
	switch path {
	case "":
		return nil
	case "-":
		return res.WriteJSON(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

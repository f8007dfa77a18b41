// Command etcdbench runs one cairn load-generator workload against an etcd
// cluster through etcd's Go client. It takes the same workload flags as
// `cairn bench` (see loadgen.RegisterFlags) and writes the same JSON result,
// so bench/vs-etcd.sh can compare the two.
//
//	etcdbench -endpoints http://127.0.0.1:32379,http://127.0.0.1:32381 \
//	    -workload put-c16 -clients 16 -duration 15s -warmup 3s \
//	    -server-pids 1201,1202,1203 -json put-c16.json
//
// A progress line goes to stderr once a second; a summary goes to stdout (to
// stderr when the JSON goes to stdout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairnkv/cairn/internal/loadgen"
	"github.com/cairnkv/cairn/internal/loadgen/etcddriver"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := loadgen.Config{Target: "etcd"}
	fs := flag.NewFlagSet("etcdbench", flag.ExitOnError)
	loadgen.RegisterFlags(fs, &cfg)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	jsonOut := fs.String("json", "", `write the result as JSON to this file ("-": stdout)`)
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "timeout for opening each connection")
	readyTimeout := fs.Duration("ready-timeout", 30*time.Second, "how long to wait for the cluster to answer a linearizable read before starting")
	leaderOnly := fs.Bool("leader-only", false, "send every request to the current leader's endpoint (found when the run starts) instead of balancing over all endpoints")
	progress := fs.String("progress", "auto", "progress line on stderr: auto (redrawn on a terminal, else one line a second), lines, off")
	fs.StringVar(&cfg.Target, "target", cfg.Target, "target name recorded in the result")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "etcdbench: unexpected arguments %q\n", fs.Args())
		return 2
	}

	switch *progress {
	case "auto":
		cfg.Progress = loadgen.ProgressPrinter(os.Stderr, isTerminal(os.Stderr))
	case "lines":
		cfg.Progress = loadgen.ProgressPrinter(os.Stderr, false)
	case "off":
	default:
		fmt.Fprintf(os.Stderr, "etcdbench: -progress must be auto, lines or off, not %q\n", *progress)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ecfg := etcddriver.Config{Endpoints: splitList(*endpoints), DialTimeout: *dialTimeout}
	if err := waitReady(ctx, etcddriver.Dialer(ecfg), cfg, *readyTimeout); err != nil {
		fmt.Fprintf(os.Stderr, "etcdbench: %v\n", err)
		return 1
	}
	if *leaderOnly {
		leader, err := etcddriver.LeaderEndpoint(ctx, ecfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcdbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "etcdbench: leader only: %s\n", leader)
		ecfg.Endpoints = []string{leader}
	}
	dial := etcddriver.Dialer(ecfg)

	res, err := loadgen.Run(ctx, cfg, dial)
	if res == nil {
		fmt.Fprintf(os.Stderr, "etcdbench: %v\n", err)
		return 1
	}
	summary := io.Writer(os.Stdout)
	if *jsonOut == "-" {
		summary = os.Stderr
	}
	if werr := writeJSON(*jsonOut, res); werr != nil {
		fmt.Fprintf(os.Stderr, "etcdbench: %v\n", werr)
		return 1
	}
	_ = res.WriteSummary(summary)
	if errors.Is(err, context.Canceled) {
		return 130
	}
	return 0
}

// waitReady opens one connection and waits until the cluster serves a
// linearizable read, so that a freshly started cluster's election is not
// measured.
func waitReady(ctx context.Context, dial loadgen.Dialer, cfg loadgen.Config, timeout time.Duration) error {
	d, err := dial(ctx, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	prefix := cfg.WithDefaults().KeyPrefix
	return loadgen.WaitReady(ctx, d, []byte(prefix+"ready"), timeout)
}

func writeJSON(path string, res *loadgen.Result) error {
	switch path {
	case "":
		return nil
	case "-":
		return res.WriteJSON(os.Stdout)
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

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

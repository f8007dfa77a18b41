package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the process's exit code
// (see exit.go). Tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		err = usageErr(err) // cobra's own, untyped
	}
	name := "cairn"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	return reportError(stderr, name, g, err)
}

// Defaults of the global flags.
const (
	// defaultEndpoints are the client addresses of the three nodes that
	// `cairn server`'s examples and `cairn demo` use.
	defaultEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
	defaultTimeout   = 5 * time.Second
)

// globals are the flags every verb takes, and the streams it uses.
type globals struct {
	endpoints   []string
	output      outputFormat
	timeout     time.Duration
	dialTimeout time.Duration
	consistency consistencyFlag

	stdin          io.Reader
	stdout, stderr io.Writer
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "cairn: a replicated, strongly consistent key-value store",
		Long: `cairn is a Raft-replicated key-value store.

Try it on one machine:

  cairn demo                       a local 3-node cluster and a shell to play with it

Run a cluster:

  cairn server ...                 one node (see cairn server --help)

Talk to a cluster (--endpoints like etcdctl):

  cairn put KEY VALUE
  cairn get KEY [--consistency linearizable|lease|serializable]
  cairn del KEY
  cairn cas KEY NEW --expect-value OLD | --expect-version N | --expect-absent
  cairn scan [START [END]] [--limit N] [--prefix]
  cairn status                     every node's role, term, leader, indexes, sizes
  cairn fault show|net|disk|heal --endpoint ADDR
                                   manual chaos on one node (see cairn fault --help)
  cairn bench                      a load generator (also for etcd)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })

	pf := root.PersistentFlags()
	pf.StringSliceVar(&g.endpoints, "endpoints", strings.Split(defaultEndpoints, ","),
		"comma-separated client addresses (host:port) of the cluster's nodes")
	g.output = outputTable
	pf.Var(&g.output, "output", "output format: table or json")
	pf.VarP(&g.output, "write-out", "w", "alias of --output")
	_ = pf.MarkHidden("write-out")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "how long a command may take, retries included")
	pf.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "how long one connection attempt to a node may take")
	pf.Var(&g.consistency, "consistency", "reads: linearizable, lease, or serializable (possibly stale, from any node)")

	root.AddCommand(
		newServerCmd(),
		newPutCmd(g),
		newGetCmd(g),
		newDelCmd(g),
		newCASCmd(g),
		newScanCmd(g),
		newStatusCmd(g),
		newFaultCmd(g),
		newDemoCmd(g),
		newBenchCmd(g),
	)
	return root
}

// usageErr marks err as a command-line mistake (exit code 2).
func usageErr(err error) error { return &exitError{code: exitUsage, err: err} }

// argsUsage is a cobra.PositionalArgs checking the count of arguments,
// and naming them in its error.
func argsUsage(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usageErr(fmt.Errorf("want arguments %s, got %d (see %s --help)", names, len(args), cmd.CommandPath()))
		}
		return nil
	}
}

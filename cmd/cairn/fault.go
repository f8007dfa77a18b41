package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/server"
)

// The fault verbs drive one node's Admin.SetFaults and Admin.SetDiskFaults,
// which only a node started with --enable-fault-injection accepts. Their
// errors keep the exit codes of exit.go: a bad value (a probability out of
// [0, 1], a negative or fractional-millisecond delay) and a node that
// refuses fault injection (FAILED_PRECONDITION) are both exitInvalid, 7:
// the request was refused, nothing changed, and sending it again will not
// help. An unreachable node is exitUnavailable, 5; a change whose answer
// never came is exitOutcomeUnknown, 6.

func newFaultCmd(g *globals) *cobra.Command {
	f := &faultFlags{g: g}
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Inject network and disk faults into one node (started with --enable-fault-injection)",
		Long: `Manual chaos against a node started with cairn server --enable-fault-injection
(for tests and chaos runs only; other nodes refuse, and the exit status is 7).
Faults are per node, so each fault command talks to one node, named by
--endpoint (its client address); --endpoints is not used.

  cairn fault show --endpoint A           the network rules and disk faults in force on A
  cairn fault net --endpoint A --cut      cut A off from every peer, both ways
  cairn fault net --endpoint A --peer 2 --direction outbound --loss 0.2 --delay 50ms
  cairn fault disk --endpoint A --full    A's disk is full: writes fail with ENOSPC
  cairn fault disk --endpoint A --sync-delay 200ms
  cairn fault heal --endpoint A           clear every network rule and disk fault on A

net REPLACES every network rule in force on the node, and disk the disk
faults in force; each change prints what is then in force.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr(fmt.Errorf("unknown command %q: want show, net, disk or heal (see %s --help)", args[0], cmd.CommandPath()))
			}
			return cmd.Help()
		},
	}
	cmd.PersistentFlags().StringVar(&f.endpoint, "endpoint", "", "the client address (host:port) of the node to act on (required)")
	cmd.AddCommand(newFaultShowCmd(f), newFaultNetCmd(f), newFaultDiskCmd(f), newFaultHealCmd(f))
	return cmd
}

// faultFlags are what every fault verb shares.
type faultFlags struct {
	g        *globals
	endpoint string
}

func newFaultShowCmd(f *faultFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the network rules and disk faults in force on one node",
		Long: `Show the network rules and disk faults in force on the node at --endpoint,
as its Admin service's Status reports them, and whether the node has fault
injection enabled at all (a node without it is shown, exit status 0).`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.with(cmd, func(ctx context.Context, ac adminpb.AdminClient) error {
				resp, err := ac.Status(ctx, &adminpb.StatusRequest{}, grpc.WaitForReady(false))
				if err != nil {
					return f.rpcErr(cmd, err, "")
				}
				return f.print(viewOf(f.endpoint, resp))
			})
		},
	}
}

func newFaultNetCmd(f *faultFlags) *cobra.Command {
	var (
		peer            uint64
		direction       string
		loss, duplicate float64
		delay, jitter   time.Duration
		cut             bool
	)
	cmd := &cobra.Command{
		Use:   "net --endpoint ADDR [--peer N] [--direction outbound|inbound|both] [--loss P] [--duplicate P] [--delay D] [--jitter D] [--cut]",
		Short: "Set one node's network fault rules, replacing ALL rules in force",
		Long: `Set what the node at --endpoint does to the Raft traffic between it and its
peers. This REPLACES every network rule in force on the node with the
rule given (one per direction: --direction both sets two); cairn fault heal
clears them all.

--peer names the peer node (0, the default: every peer without a rule of
its own). --direction is seen from this node: outbound is what it sends to
the peer, inbound what it receives from it; cutting one direction makes a
one-way partition. --loss and --duplicate are probabilities in [0, 1]
(--cut is --loss 1); --delay, plus a random part of --jitter, holds each
packet back, in whole milliseconds.

To isolate a node, cut it (--cut) on that node alone: both directions of
all its links are then lost, whatever its peers do.`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, "cut", "loss", "duplicate", "delay", "jitter") {
				return usageErr(errors.New("nothing to set: give --cut, --loss, --duplicate, --delay or --jitter (cairn fault heal clears every fault)"))
			}
			if cut {
				if cmd.Flags().Changed("loss") && loss != 1 {
					return invalidErr("--cut is --loss 1; it cannot go with --loss %v", loss)
				}
				loss = 1
			}
			delayMs, err := wholeMillis("--delay", delay, 0)
			if err != nil {
				return err
			}
			jitterMs, err := wholeMillis("--jitter", jitter, 0)
			if err != nil {
				return err
			}
			if err := probability("--loss", loss); err != nil {
				return err
			}
			if err := probability("--duplicate", duplicate); err != nil {
				return err
			}
			var dirs []adminpb.Direction
			switch direction {
			case "outbound":
				dirs = []adminpb.Direction{adminpb.Direction_OUTBOUND}
			case "inbound":
				dirs = []adminpb.Direction{adminpb.Direction_INBOUND}
			case "both":
				dirs = []adminpb.Direction{adminpb.Direction_OUTBOUND, adminpb.Direction_INBOUND}
			default:
				return invalidErr("--direction must be outbound, inbound or both, not %q", direction)
			}
			var rules []*adminpb.FaultRule
			for _, d := range dirs {
				rules = append(rules, &adminpb.FaultRule{Peer: peer, Direction: d, Loss: loss, Duplicate: duplicate,
					DelayMs: delayMs, JitterMs: jitterMs})
			}
			return f.with(cmd, func(ctx context.Context, ac adminpb.AdminClient) error {
				resp, err := ac.SetFaults(ctx, &adminpb.SetFaultsRequest{Rules: rules}, grpc.WaitForReady(false))
				if err != nil {
					return f.rpcErr(cmd, err, nothingChanged)
				}
				rules := resp.GetRules()
				return f.printAfter(ctx, cmd, ac, faultView{Network: &rules})
			})
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&peer, "peer", 0, "the peer node's ID (0: every peer without a rule of its own)")
	fl.StringVar(&direction, "direction", "both", "outbound (what this node sends), inbound (what it receives) or both")
	fl.Float64Var(&loss, "loss", 0, "the probability that a packet is dropped, in [0, 1]")
	fl.Float64Var(&duplicate, "duplicate", 0, "the probability that a packet is delivered twice, in [0, 1]")
	fl.DurationVar(&delay, "delay", 0, "hold each packet back this long (whole milliseconds)")
	fl.DurationVar(&jitter, "jitter", 0, "and a further uniformly random part of this (whole milliseconds)")
	fl.BoolVar(&cut, "cut", false, "drop every packet: shorthand for --loss 1")
	return cmd
}

func newFaultDiskCmd(f *faultFlags) *cobra.Command {
	var (
		writeDelay, syncDelay time.Duration
		full                  bool
	)
	cmd := &cobra.Command{
		Use:   "disk --endpoint ADDR [--write-delay D] [--sync-delay D] [--full]",
		Short: "Set one node's disk faults, replacing those in force",
		Long: fmt.Sprintf(`Set the storage failpoints of the node at --endpoint: they shape every file
operation of its Raft logs and snapshots (not its state machine). This
REPLACES the disk faults in force: a flag not given is a healthy default.

--write-delay holds back every write, --sync-delay every fsync, in whole
milliseconds, at most %v. --full makes the disk full: writes and new space
fail with ENOSPC (nothing of them applied), syncs still succeed. A full
leader refuses writes and hands its leadership over; nothing is lost, and
everything resumes once the disk is healed (cairn fault heal, or
cairn fault disk --full=false).`, server.MaxDiskFaultDelay),
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, "write-delay", "sync-delay", "full") {
				return usageErr(errors.New("nothing to set: give --full, --write-delay or --sync-delay (cairn fault heal clears every fault)"))
			}
			d := &adminpb.DiskFaults{NoSpace: full}
			var err error
			if d.WriteDelayMs, err = wholeMillis("--write-delay", writeDelay, server.MaxDiskFaultDelay); err != nil {
				return err
			}
			if d.SyncDelayMs, err = wholeMillis("--sync-delay", syncDelay, server.MaxDiskFaultDelay); err != nil {
				return err
			}
			return f.with(cmd, func(ctx context.Context, ac adminpb.AdminClient) error {
				resp, err := ac.SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: d}, grpc.WaitForReady(false))
				if err != nil {
					return f.rpcErr(cmd, err, nothingChanged)
				}
				return f.printAfter(ctx, cmd, ac, faultView{Disk: diskJSONOf(resp.GetFaults())})
			})
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&writeDelay, "write-delay", 0, "hold back every write and preallocation this long (whole milliseconds)")
	fl.DurationVar(&syncDelay, "sync-delay", 0, "hold back every fsync this long (whole milliseconds)")
	fl.BoolVar(&full, "full", false, "the disk is full: writes and new space fail with ENOSPC")
	return cmd
}

func newFaultHealCmd(f *faultFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "heal --endpoint ADDR",
		Short: "Clear every network rule and disk fault of one node",
		Long: `Clear every network rule and every disk fault of the node at --endpoint: its
links and its disk are healthy again. Healing a healthy node changes nothing.`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.with(cmd, func(ctx context.Context, ac adminpb.AdminClient) error {
				// The disk first: a slow disk is what could make the rest of
				// this command (and the node) slow.
				dresp, err := ac.SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: &adminpb.DiskFaults{}}, grpc.WaitForReady(false))
				if err != nil {
					return f.rpcErr(cmd, err, nothingChanged)
				}
				nresp, err := ac.SetFaults(ctx, &adminpb.SetFaultsRequest{}, grpc.WaitForReady(false))
				if err != nil {
					return f.rpcErr(cmd, err, "; the disk faults were cleared, the network rules were not")
				}
				rules := nresp.GetRules()
				return f.printAfter(ctx, cmd, ac, faultView{Network: &rules, Disk: diskJSONOf(dresp.GetFaults())})
			})
		},
	}
}

// with runs fn with an Admin client of --endpoint and a context bounded by
// --timeout.
func (f *faultFlags) with(cmd *cobra.Command, fn func(ctx context.Context, ac adminpb.AdminClient) error) error {
	if f.endpoint == "" {
		return usageErr(fmt.Errorf("--endpoint ADDR is required: faults are set on one node, named by its client address (see %s --help)", cmd.CommandPath()))
	}
	conns, err := newAdminConns([]string{f.endpoint})
	if err != nil {
		return usageErr(fmt.Errorf("--endpoint %s: %w", f.endpoint, err))
	}
	defer conns.close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.g.timeout)
	defer cancel()
	return fn(ctx, conns.client(0))
}

// faultRPCError is an Admin call's failure worded for a person, wrapping
// the gRPC error.
type faultRPCError struct {
	msg string
	err error
}

func (e *faultRPCError) Error() string { return e.msg }
func (e *faultRPCError) Unwrap() error { return e.err }

// nothingChanged is rpcErr's note for a change refused or never made.
const nothingChanged = "; nothing changed"

// rpcErr turns an Admin call's error into a message and exit code. note
// says what changed ("" for a call that changes nothing).
func (f *faultFlags) rpcErr(cmd *cobra.Command, err error, note string) error {
	if cmd.Context().Err() != nil {
		return fmt.Errorf("%w: %w", context.Canceled, err) // interrupted: exit 130
	}
	st, _ := status.FromError(err)
	wrap := func(code int, format string, args ...any) error {
		return &exitError{code: code, err: &faultRPCError{msg: fmt.Sprintf(format, args...), err: err}}
	}
	switch st.Code() {
	case codes.FailedPrecondition:
		return wrap(exitInvalid, "the node at %s does not allow fault injection: start it with cairn server --enable-fault-injection (tests and chaos runs only)%s",
			f.endpoint, note)
	case codes.InvalidArgument:
		return wrap(exitInvalid, "invalid request: %s%s", st.Message(), note)
	case codes.DeadlineExceeded:
		if note == "" {
			return wrap(exitUnavailable, "no answer from %s within %v (a node with a slow disk answers slowly: try a longer --timeout)", f.endpoint, f.g.timeout)
		}
		return wrap(exitOutcomeUnknown, "no answer from %s within %v: the change may or may not have taken effect.\n"+
			"See with: cairn fault show --endpoint %s (setting faults again is safe: it replaces them)", f.endpoint, f.g.timeout, f.endpoint)
	case codes.Unavailable:
		return wrap(exitUnavailable, "node unavailable at %s (%s)%s", f.endpoint, statusErr(err), note)
	}
	return wrap(exitFailure, "%s: %s%s", st.Code(), st.Message(), note)
}

// invalidErr is a bad value on the command line, refused before anything
// is sent: exit status 7.
func invalidErr(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf("invalid request: "+format+"; nothing changed", args...)}
}

func probability(flag string, p float64) error {
	if math.IsNaN(p) || p < 0 || p > 1 {
		return invalidErr("%s must be a probability in [0, 1], not %v", flag, p)
	}
	return nil
}

// wholeMillis is d in milliseconds, if it is a whole, non-negative number
// of them, at most limit (0: what the protocol's uint32 holds).
func wholeMillis(flag string, d, limit time.Duration) (uint32, error) {
	if limit == 0 {
		limit = math.MaxUint32 * time.Millisecond
	}
	switch {
	case d < 0:
		return 0, invalidErr("%s must not be negative, got %v", flag, d)
	case d%time.Millisecond != 0:
		return 0, invalidErr("%s must be whole milliseconds, got %v", flag, d)
	case d > limit:
		return 0, invalidErr("%s must be at most %v, got %v", flag, limit, d)
	}
	return uint32(d / time.Millisecond), nil
}

func anyChanged(cmd *cobra.Command, flags ...string) bool {
	return slices.ContainsFunc(flags, cmd.Flags().Changed)
}

// faultView is what is in force on a node, as fault verbs print it. After
// a change whose status could not be read back, the part not known is nil.
type faultView struct {
	Endpoint       string
	Node           uint64 // 0: not known
	FaultInjection bool
	Network        *[]*adminpb.FaultRule
	Disk           *diskJSON
}

// ruleJSON is a network rule in JSON output.
type ruleJSON struct {
	// Peer 0: every peer without a rule of its own.
	Peer      uint64  `json:"peer"`
	Direction string  `json:"direction"`
	Loss      float64 `json:"loss"`
	Duplicate float64 `json:"duplicate"`
	DelayMs   uint32  `json:"delay_ms"`
	JitterMs  uint32  `json:"jitter_ms"`
}

// diskJSON are the disk faults in JSON output.
type diskJSON struct {
	WriteDelayMs uint32 `json:"write_delay_ms"`
	SyncDelayMs  uint32 `json:"sync_delay_ms"`
	NoSpace      bool   `json:"no_space"`
}

func diskJSONOf(d *adminpb.DiskFaults) *diskJSON {
	return &diskJSON{WriteDelayMs: d.GetWriteDelayMs(), SyncDelayMs: d.GetSyncDelayMs(), NoSpace: d.GetNoSpace()}
}

func directionName(d adminpb.Direction) string {
	switch d {
	case adminpb.Direction_OUTBOUND:
		return "outbound"
	case adminpb.Direction_INBOUND:
		return "inbound"
	}
	return "unknown"
}

func viewOf(ep string, resp *adminpb.StatusResponse) faultView {
	rules := resp.GetFaults()
	return faultView{
		Endpoint:       ep,
		Node:           resp.GetNodeId(),
		FaultInjection: resp.GetFaultInjection(),
		Network:        &rules,
		Disk:           diskJSONOf(resp.GetDiskFaults()),
	}
}

// rules are v's network rules for output, by peer, outbound first.
func (v faultView) rules() []ruleJSON {
	out := []ruleJSON{}
	if v.Network == nil {
		return out
	}
	for _, r := range *v.Network {
		out = append(out, ruleJSON{Peer: r.GetPeer(), Direction: directionName(r.GetDirection()), Loss: r.GetLoss(),
			Duplicate: r.GetDuplicate(), DelayMs: r.GetDelayMs(), JitterMs: r.GetJitterMs()})
	}
	slices.SortStableFunc(out, func(a, b ruleJSON) int {
		if a.Peer != b.Peer {
			return cmp.Compare(a.Peer, b.Peer)
		}
		return strings.Compare(b.Direction, a.Direction) // outbound first
	})
	return out
}

// printAfter prints what is in force after a change: the node's status
// read back, or, if that fails (a slow disk can hold it up), the part the
// change's own answer gave, and a note on stderr. The change was made
// either way.
func (f *faultFlags) printAfter(ctx context.Context, cmd *cobra.Command, ac adminpb.AdminClient, changed faultView) error {
	resp, err := ac.Status(ctx, &adminpb.StatusRequest{}, grpc.WaitForReady(false))
	if err == nil {
		return f.print(viewOf(f.endpoint, resp))
	}
	changed.Endpoint, changed.FaultInjection = f.endpoint, true
	fmt.Fprintf(f.g.stderr, "%s: done, but reading back the node's status failed (%s); see the rest with: cairn fault show --endpoint %s\n",
		cmd.CommandPath(), statusErr(err), f.endpoint)
	return f.print(changed)
}

func (f *faultFlags) print(v faultView) error {
	if f.g.output == outputJSON {
		var rules *[]ruleJSON
		if v.Network != nil {
			r := v.rules()
			rules = &r
		}
		return writeJSON(f.g.stdout, struct {
			Endpoint       string      `json:"endpoint"`
			Node           uint64      `json:"node,omitempty"`
			FaultInjection bool        `json:"fault_injection"`
			Network        *[]ruleJSON `json:"network,omitempty"`
			Disk           *diskJSON   `json:"disk,omitempty"`
		}{v.Endpoint, v.Node, v.FaultInjection, rules, v.Disk})
	}
	return writeFaultView(f.g.stdout, v)
}

// writeFaultView prints v for a person.
func writeFaultView(w io.Writer, v faultView) error {
	name := v.Endpoint
	if v.Node != 0 {
		name = fmt.Sprintf("node %d (%s)", v.Node, v.Endpoint)
	}
	if !v.FaultInjection {
		_, err := fmt.Fprintf(w, "%s: fault injection disabled (start the node with cairn server --enable-fault-injection to set faults)\n", name)
		return err
	}
	fmt.Fprintf(w, "%s: fault injection enabled\n", name)
	if v.Network != nil {
		rules := v.rules()
		if len(rules) == 0 {
			fmt.Fprintln(w, "network: no rules (healthy)")
		} else {
			fmt.Fprintf(w, "network: %d %s\n", len(rules), plural(len(rules), "rule", "rules"))
			t := newTable(w, "PEER", "DIRECTION", "LOSS", "DUPLICATE", "DELAY", "JITTER")
			for _, r := range rules {
				peer := "all"
				if r.Peer != 0 {
					peer = strconv.FormatUint(r.Peer, 10)
				}
				t.row(peer, r.Direction, fraction(r.Loss), fraction(r.Duplicate), millis(r.DelayMs), millis(r.JitterMs))
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
	if v.Disk != nil {
		var parts []string
		if v.Disk.NoSpace {
			parts = append(parts, "full (writes fail with ENOSPC)")
		}
		if v.Disk.WriteDelayMs != 0 {
			parts = append(parts, "write delay "+millis(v.Disk.WriteDelayMs))
		}
		if v.Disk.SyncDelayMs != 0 {
			parts = append(parts, "sync delay "+millis(v.Disk.SyncDelayMs))
		}
		if len(parts) == 0 {
			parts = []string{"no faults (healthy)"}
		}
		fmt.Fprintf(w, "disk: %s\n", strings.Join(parts, ", "))
	}
	return nil
}

func fraction(p float64) string { return strconv.FormatFloat(p, 'g', -1, 64) }

func millis(ms uint32) string { return (time.Duration(ms) * time.Millisecond).String() }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/storage/vfs"
)

// demoClusterID is the cluster ID of every demo cluster, so that a --dir
// kept from an earlier demo starts again.
const demoClusterID = 1

func newDemoCmd(g *globals) *cobra.Command {
	var (
		dir      string
		nodes    int
		basePort int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local cluster and a shell to play with it",
		Long: `Start a local cluster of --nodes nodes in this process (real gRPC on
127.0.0.1, data on disk, every write fsynced) and a shell where you can put,
get, delete and scan keys, look at each node's Raft state, kill, restart and
partition nodes, and watch the leader move. Type help in the shell.

Data goes to a temporary directory removed on exit, or to --dir (kept, and
reused by the next demo with the same --dir). Clients listen on
127.0.0.1:<base-port>.., peers on 127.0.0.1:<base-port+1000>..; with the
default ports, cairn's other commands reach the demo with their default
--endpoints from another terminal. --base-port 0 picks free ports.

The shell reads one command a line; with input from a pipe it echoes each
command, so a script's transcript reads like a session:

  printf 'put a 1\nkill leader\nget a\nquit\n' | cairn demo`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 {
				return usageErr(fmt.Errorf("--nodes must be at least 1, got %d", nodes))
			}
			return runDemo(cmd.Context(), g, demoOptions{dir: dir, nodes: nodes, basePort: basePort})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keep the nodes' data here (default: a temporary directory, removed on exit)")
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.IntVar(&basePort, "base-port", 7001, "first client port (peers: +1000); 0: any free ports")
	return cmd
}

type demoOptions struct {
	dir      string
	nodes    int
	basePort int
	// tick is the Raft tick (default: the server's).
	tick time.Duration
	// timeout bounds each shell command (default 15s).
	timeout time.Duration
}

func runDemo(ctx context.Context, g *globals, o demoOptions) error {
	keep := o.dir != ""
	if !keep {
		d, err := os.MkdirTemp("", "cairn-demo-")
		if err != nil {
			return err
		}
		o.dir = d
		defer os.RemoveAll(d)
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(o.dir, "demo.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()

	lc, err := startLocalCluster(o, slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return err
	}
	defer lc.Close()

	kept := "removed on exit"
	if keep {
		kept = "kept"
	}
	fmt.Fprintf(g.stdout, "cairn demo: %d nodes on 127.0.0.1, data in %s (%s), server log in %s\n", o.nodes, o.dir, kept, logPath)
	for _, id := range lc.ids {
		p := lc.peers[id]
		fmt.Fprintf(g.stdout, "  node %d: clients %s, peers %s\n", id, p.ClientAddr, p.PeerAddr)
	}
	fmt.Fprintf(g.stdout, "From another terminal: cairn status --endpoints %s\n", strings.Join(lc.Endpoints(), ","))
	fmt.Fprintln(g.stdout, `Type help for the commands, quit to stop.`)

	timeout := o.timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	kv, err := client.New(client.Config{
		Endpoints:      lc.Endpoints(),
		RequestTimeout: timeout,
		AttemptTimeout: 2 * time.Second,
		Retry:          client.RetryPolicy{MaxBackoff: 200 * time.Millisecond},
	})
	if err != nil {
		return err
	}
	defer kv.Close()
	interactive := isTerminal(g.stdout) && isTerminalReader(g.stdin)
	sh := &shell{
		cl:      lc,
		kv:      kv,
		out:     &lockedWriter{w: g.stdout},
		timeout: timeout,
		echo:    !interactive,
		prompt:  interactive,
	}
	err = sh.run(ctx, g.stdin)
	fmt.Fprintln(g.stdout, "stopping the cluster")
	if errors.Is(err, context.Canceled) {
		return nil // Ctrl-C leaves the demo like quit
	}
	return err
}

func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// localCluster is the demo's cluster: server.Nodes in this process.
type localCluster struct {
	dir    string
	ids    []raft.NodeID
	peers  map[raft.NodeID]server.Peer
	logger *slog.Logger
	tick   time.Duration

	mu struct {
		sync.Mutex
		nodes map[raft.NodeID]*server.Node // nil: killed
		// isolated nodes are cut off from every peer; applied again to a
		// restarted node.
		isolated map[raft.NodeID]bool
		// disks are the nodes' disk faults (none: healthy); applied again
		// to a restarted node.
		disks map[raft.NodeID]vfs.DiskFaults
		// changed is closed (and replaced) when a node is killed or
		// restarted.
		changed chan struct{}
	}
}

func startLocalCluster(o demoOptions, logger *slog.Logger) (*localCluster, error) {
	lc := &localCluster{dir: o.dir, peers: map[raft.NodeID]server.Peer{}, logger: logger, tick: o.tick}
	lc.mu.nodes = map[raft.NodeID]*server.Node{}
	lc.mu.isolated = map[raft.NodeID]bool{}
	lc.mu.disks = map[raft.NodeID]vfs.DiskFaults{}
	lc.mu.changed = make(chan struct{})

	type pair struct{ peer, client net.Listener }
	lis := map[raft.NodeID]pair{}
	closeAll := func() {
		for _, l := range lis {
			l.peer.Close()
			l.client.Close()
		}
	}
	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for i := 1; i <= o.nodes; i++ {
		id := raft.NodeID(i)
		cport, pport := 0, 0
		if o.basePort > 0 {
			cport, pport = o.basePort+i-1, o.basePort+1000+i-1
		}
		cl, err := listen(cport)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w (another demo running? try --base-port 0 for free ports)", err)
		}
		pl, err := listen(pport)
		if err != nil {
			cl.Close()
			closeAll()
			return nil, fmt.Errorf("%w (another demo running? try --base-port 0 for free ports)", err)
		}
		lis[id] = pair{pl, cl}
		lc.ids = append(lc.ids, id)
		lc.peers[id] = server.Peer{PeerAddr: pl.Addr().String(), ClientAddr: cl.Addr().String()}
	}
	for _, id := range lc.ids {
		n, err := server.Start(lc.config(id, lis[id].peer, lis[id].client))
		delete(lis, id)
		if err != nil {
			closeAll()
			lc.Close()
			return nil, fmt.Errorf("start node %d: %w", id, err)
		}
		lc.mu.Lock()
		lc.mu.nodes[id] = n
		lc.mu.Unlock()
	}
	return lc, nil
}

func (lc *localCluster) config(id raft.NodeID, peerLis, clientLis net.Listener) server.Config {
	return server.Config{
		NodeID:               id,
		ClusterID:            demoClusterID,
		DataDir:              filepath.Join(lc.dir, "node-"+strconv.FormatUint(uint64(id), 10)),
		Peers:                maps.Clone(lc.peers),
		PeerListener:         peerLis,
		ClientListener:       clientLis,
		TickInterval:         lc.tick,
		EnableFaultInjection: true,
		ShutdownTimeout:      time.Second,
		Logger:               lc.logger,
	}
}

func (lc *localCluster) NodeIDs() []uint64 {
	out := make([]uint64, len(lc.ids))
	for i, id := range lc.ids {
		out[i] = uint64(id)
	}
	return out
}

func (lc *localCluster) Endpoints() []string {
	eps := make([]string, len(lc.ids))
	for i, id := range lc.ids {
		eps[i] = lc.peers[id].ClientAddr
	}
	return eps
}

// signalLocked wakes the leader watchers: the set of running nodes changed.
func (lc *localCluster) signalLocked() {
	close(lc.mu.changed)
	lc.mu.changed = make(chan struct{})
}

func (lc *localCluster) Kill(id uint64) error {
	lc.mu.Lock()
	n := lc.mu.nodes[raft.NodeID(id)]
	if n == nil {
		lc.mu.Unlock()
		return fmt.Errorf("node %d is not running", id)
	}
	lc.mu.nodes[raft.NodeID(id)] = nil
	lc.signalLocked()
	lc.mu.Unlock()
	return n.Stop() // at once: no hand-off, as a crash (synced data stays)
}

func (lc *localCluster) Restart(id uint64) error {
	nid := raft.NodeID(id)
	lc.mu.Lock()
	running := lc.mu.nodes[nid] != nil
	lc.mu.Unlock()
	if running {
		return fmt.Errorf("node %d is running; kill it first", id)
	}
	n, err := server.Start(lc.config(nid, nil, nil))
	if err != nil {
		return err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.mu.nodes[nid] = n
	lc.signalLocked()
	if lc.mu.isolated[nid] {
		if _, err := n.SetFaults(isolateRules()); err != nil {
			return err
		}
	}
	if d, ok := lc.mu.disks[nid]; ok {
		if err := n.SetDiskFaults(d); err != nil {
			return err
		}
	}
	return nil
}

// Disk sets node id's disk faults (the zero value: a healthy disk).
func (lc *localCluster) Disk(id uint64, d vfs.DiskFaults) error {
	nid := raft.NodeID(id)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if d.IsZero() {
		delete(lc.mu.disks, nid)
	} else {
		lc.mu.disks[nid] = d
	}
	if n := lc.mu.nodes[nid]; n != nil {
		return n.SetDiskFaults(d)
	}
	return nil
}

// isolateRules cut a node's every link both ways, on its own side.
func isolateRules() []*adminpb.FaultRule {
	return []*adminpb.FaultRule{
		{Peer: 0, Direction: adminpb.Direction_OUTBOUND, Loss: 1},
		{Peer: 0, Direction: adminpb.Direction_INBOUND, Loss: 1},
	}
}

func (lc *localCluster) Partition(id uint64) error {
	nid := raft.NodeID(id)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.mu.isolated[nid] = true
	if n := lc.mu.nodes[nid]; n != nil {
		_, err := n.SetFaults(isolateRules())
		return err
	}
	return nil
}

func (lc *localCluster) Heal() error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	clear(lc.mu.isolated)
	clear(lc.mu.disks)
	var errs []error
	for _, n := range lc.mu.nodes {
		if n != nil {
			if _, err := n.SetFaults(nil); err != nil {
				errs = append(errs, err)
			}
			if err := n.SetDiskFaults(vfs.DiskFaults{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (lc *localCluster) Status(ctx context.Context) []nodeStatus {
	var out []nodeStatus
	for _, id := range lc.ids {
		ep := lc.peers[id].ClientAddr
		lc.mu.Lock()
		n, isolated, disk := lc.mu.nodes[id], lc.mu.isolated[id], lc.mu.disks[id]
		lc.mu.Unlock()
		if n == nil {
			out = append(out, nodeStatus{Endpoint: ep, Node: uint64(id), Err: statusKilled})
			continue
		}
		resp, err := n.Status(ctx)
		if err != nil {
			out = append(out, nodeStatus{Endpoint: ep, Node: uint64(id), Err: statusErr(err)})
			continue
		}
		st := statusesOf(ep, resp)
		for i := range st {
			if isolated {
				st[i].Role += " (cut off)"
			}
			if !disk.IsZero() {
				st[i].Role += " (disk " + describeDisk(disk) + ")"
			}
		}
		out = append(out, st...)
	}
	return out
}

// Leader returns the node that leads the default group in the highest
// term among the running nodes (0 if none), and a channel closed when
// that may have changed.
func (lc *localCluster) Leader(ctx context.Context) (id, term uint64, changed <-chan struct{}) {
	lc.mu.Lock()
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(lc.mu.changed)},
	}
	nodes := slices.Collect(maps.Values(lc.mu.nodes))
	lc.mu.Unlock()
	for _, n := range nodes {
		if n == nil || n.Replica(server.DefaultGroup) == nil {
			continue
		}
		st, ch := n.Replica(server.DefaultGroup).Leader()
		if st.Role == raft.Leader && uint64(st.Term) > term {
			id, term = uint64(n.ID()), uint64(st.Term)
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	out := make(chan struct{})
	go func() {
		reflect.Select(cases) // any: ctx ended, a node came or went, a replica's leader state changed
		close(out)
	}()
	return id, term, out
}

// Close stops every running node.
func (lc *localCluster) Close() {
	lc.mu.Lock()
	nodes := slices.Collect(maps.Values(lc.mu.nodes))
	clear(lc.mu.nodes)
	lc.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Go(func() { _ = n.Stop() })
		}
	}
	wg.Wait()
}

// statusKilled is a killed node's nodeStatus.Err.
const statusKilled = "killed"

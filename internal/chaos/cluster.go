package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	// Binary is the cairn binary (BuildBinary). Required.
	Binary string
	// Dir is where the nodes' data directories and logs go: Dir/nI/data
	// and Dir/nI/log for node I. Required; created if missing.
	Dir string
	// Nodes is the number of nodes, with IDs 1..Nodes. Default 3.
	Nodes int
	// ClusterID is the cluster's ID. Default: random, non-zero.
	ClusterID uint64
	// Args are extra `cairn server` flags for every node (e.g. --tick
	// 20ms); they come after the cluster's own, so they win over them.
	Args []string
	// Logger receives progress lines (a node started, was killed, exited,
	// ...). Default: discard.
	Logger *slog.Logger
}

// NodeState is what a node's process is doing, as the Cluster knows it.
type NodeState int

const (
	// Running: the process runs.
	Running NodeState = iota
	// Paused: the process is stopped by SIGSTOP (Pause) until Resume.
	Paused
	// Stopped: the process was killed or exited; Start runs it again.
	Stopped
)

func (s NodeState) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("NodeState(%d)", int(s))
}

// Timeouts of the cluster's own calls.
const (
	// statusAttempt bounds one Admin.Status call while a node starts.
	statusAttempt = time.Second
	// leaderProbe bounds each node's Status call in Leader, so that a node
	// that does not answer (paused, or stuck) does not stall it.
	leaderProbe = 300 * time.Millisecond
	// logTailLines is how much of a node's log an error quotes.
	logTailLines = 30
)

// errPortInUse marks a node that could not listen because its port was
// taken between the allocation and its start.
var errPortInUse = errors.New("port already in use")

// Cluster is a cairn cluster of `cairn server` processes on 127.0.0.1,
// with a fault-injecting proxy on every directed link between two nodes:
// node I reaches node J's peer port through proxy I→J, so SetLink can cut
// any direction of Raft traffic. Clients reach the nodes' client ports
// directly. All methods are safe for concurrent use. Methods that take a
// node ID panic on an ID that is not the cluster's, except those that
// return an error, which return one.
type Cluster struct {
	cfg     ClusterConfig
	log     *slog.Logger
	ids     []raft.NodeID
	nodes   map[raft.NodeID]*clusterNode
	proxies map[[2]raft.NodeID]*proxy // by (from, to)

	// wg counts the goroutines that wait for the processes to exit.
	wg sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	unexpected []error
	ports      []int // reserved by allocPorts until Close
}

// clusterNode is one node of a Cluster.
type clusterNode struct {
	id         raft.NodeID
	peerAddr   string // its real peer address, where it listens
	clientAddr string
	dir        string // Dir/nI
	logPath    string
	args       []string // `cairn server ...`

	// Guarded by Cluster.mu.
	state NodeState
	proc  *nodeProcess // the latest process; nil before the first start
	admin *grpc.ClientConn
}

// nodeProcess is one run of a node's process.
type nodeProcess struct {
	cmd *exec.Cmd
	pid int
	// exited is canceled once the process has exited and its exit is
	// recorded (state, err, Unexpected).
	exited     context.Context
	markExited context.CancelFunc

	// Guarded by Cluster.mu.
	expected bool // the cluster killed it (Kill, Close)
	err      error
}

// StartCluster allocates ports on 127.0.0.1, starts the proxies and every
// node's process (`cairn server --id I --cluster-id C --peers ...
// --data-dir Dir/nI/data --enable-fault-injection` and cfg.Args, with
// stdout and stderr appended to Dir/nI/log), and returns once every node
// answers Admin.Status. If a node cannot listen because its port was taken
// meanwhile, it tries once more with new ports. On error it stops what it
// started.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Binary == "" {
		return nil, errors.New("chaos: ClusterConfig.Binary is required")
	}
	if cfg.Dir == "" {
		return nil, errors.New("chaos: ClusterConfig.Dir is required")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 0 {
		return nil, fmt.Errorf("chaos: ClusterConfig.Nodes %d is negative", cfg.Nodes)
	}
	for cfg.ClusterID == 0 {
		cfg.ClusterID = rand.Uint64()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Args = slices.Clone(cfg.Args)
	for attempt := 1; ; attempt++ {
		c, err := startCluster(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if attempt == 1 && errors.Is(err, errPortInUse) && ctx.Err() == nil {
			cfg.Logger.Warn("a port was taken: starting the cluster again on new ports", "err", err)
			continue
		}
		return nil, err
	}
}

func startCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	c := &Cluster{
		cfg:     cfg,
		log:     cfg.Logger,
		nodes:   map[raft.NodeID]*clusterNode{},
		proxies: map[[2]raft.NodeID]*proxy{},
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	ports, err := allocPorts(2 * cfg.Nodes)
	if err != nil {
		return nil, err
	}
	c.ports = ports
	for i := 1; i <= cfg.Nodes; i++ {
		id := raft.NodeID(i)
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		c.ids = append(c.ids, id)
		c.nodes[id] = &clusterNode{
			id:         id,
			peerAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*(i-1)])),
			clientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*(i-1)+1])),
			dir:        dir,
			logPath:    filepath.Join(dir, "log"),
			state:      Stopped,
		}
	}
	for _, from := range c.ids {
		for _, to := range c.ids {
			if from == to {
				continue
			}
			p, err := newProxy(fmt.Sprintf("n%d->n%d", from, to), c.nodes[to].peerAddr, c.log)
			if err != nil {
				return nil, err
			}
			c.proxies[[2]raft.NodeID{from, to}] = p
		}
	}
	for _, id := range c.ids {
		n := c.nodes[id]
		peers := map[raft.NodeID]server.Peer{}
		for _, j := range c.ids {
			addr := n.peerAddr
			if j != id {
				addr = c.proxies[[2]raft.NodeID{id, j}].Addr()
			}
			peers[j] = server.Peer{PeerAddr: addr, ClientAddr: c.nodes[j].clientAddr}
		}
		n.args = append([]string{"server",
			"--id", strconv.FormatUint(uint64(id), 10),
			"--cluster-id", strconv.FormatUint(cfg.ClusterID, 10),
			"--peers", server.FormatPeers(peers),
			"--data-dir", filepath.Join(n.dir, "data"),
			"--enable-fault-injection",
		}, cfg.Args...)
	}

	procs := map[raft.NodeID]*nodeProcess{}
	c.mu.Lock()
	for _, id := range c.ids {
		p, err := c.spawnLocked(c.nodes[id])
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		procs[id] = p
	}
	c.mu.Unlock()
	for _, id := range c.ids {
		if err := c.waitReady(ctx, c.nodes[id], procs[id]); err != nil {
			return nil, err
		}
	}
	c.log.Info("cluster started", "nodes", cfg.Nodes, "cluster_id", cfg.ClusterID, "dir", cfg.Dir)
	return c, nil
}

// allocPorts finds n distinct free TCP ports on 127.0.0.1. It prefers
// ports below the system's ephemeral range, which no outgoing connection
// takes: a node that was killed must find its ports free when it starts
// again, and any connection made meanwhile (a proxy's, a client's) would
// otherwise be free to take one as its local port. Where the range is
// unknown, it asks the system for ports (from the ephemeral range).
func allocPorts(n int) ([]int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	if lo, ok := ephemeralLow(); ok {
		const base = 10000
		for tries := 0; len(ports) < n && tries < 100*n; tries++ {
			port := base + rand.IntN(lo-base)
			if slices.Contains(ports, port) || reserved.ports[port] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			held = append(held, l)
			ports = append(ports, port)
		}
	}
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("chaos: allocating ports: %w", err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, p := range ports {
		reserved.ports[p] = true
	}
	return ports, nil
}

// reserved holds the ports of the clusters of this process until they
// close: a node that is down leaves its ports free, and another cluster
// started meanwhile (runs go in parallel) must not take them, or the
// node could not restart.
var reserved = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// releasePorts ends the reservation of ports.
func releasePorts(ports []int) {
	reserved.Lock()
	defer reserved.Unlock()
	for _, p := range ports {
		delete(reserved.ports, p)
	}
}

// ephemeralLow is the low end of Linux's ephemeral port range, if it is
// known and leaves room below it.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo < 12000 {
		return 0, false
	}
	return lo, true
}

// spawnLocked starts a process of n. c.mu is held.
func (c *Cluster) spawnLocked(n *clusterNode) (*nodeProcess, error) {
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: node %d: %w", n.id, err)
	}
	fmt.Fprintf(f, "==== chaos: %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), c.cfg.Binary, strings.Join(n.args, " "))
	cmd := exec.Command(c.cfg.Binary, n.args...)
	cmd.Dir = n.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = f, f
	setSysProcAttr(cmd)
	err = cmd.Start()
	_ = f.Close() // the child has its own descriptor
	if err != nil {
		return nil, fmt.Errorf("chaos: starting node %d: %w", n.id, err)
	}
	p := &nodeProcess{cmd: cmd, pid: cmd.Process.Pid}
	p.exited, p.markExited = context.WithCancel(context.Background())
	n.proc, n.state = p, Running
	c.wg.Add(1)
	go c.waitExit(n, p)
	c.log.Info("node started", "node", uint64(n.id), "pid", p.pid)
	return p, nil
}

// serverEnv is the runner's environment without CAIRN_* variables, which
// would configure the servers behind the cluster's back.
func serverEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CAIRN_") })
}

// waitExit waits for p to exit and records the exit.
func (c *Cluster) waitExit(n *clusterNode, p *nodeProcess) {
	defer c.wg.Done()
	err := p.cmd.Wait()
	c.mu.Lock()
	p.err = err
	if n.proc == p {
		n.state = Stopped
	}
	// Only our SIGKILL is expected: a process that died on its own just
	// before Kill reached it exited some other way, and is reported.
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	expected := p.expected && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	if !expected {
		c.unexpected = append(c.unexpected, fmt.Errorf("chaos: node %d (pid %d) exited unexpectedly: %s; log %s ends with:\n%s",
			n.id, p.pid, p.cmd.ProcessState, n.logPath, tailFile(n.logPath, logTailLines)))
	}
	c.mu.Unlock()
	if expected {
		c.log.Debug("node exited", "node", uint64(n.id), "pid", p.pid, "status", p.cmd.ProcessState.String())
	} else {
		c.log.Warn("node exited unexpectedly", "node", uint64(n.id), "pid", p.pid, "status", p.cmd.ProcessState.String(), "log", n.logPath)
	}
	p.markExited()
}

// waitReady waits until n answers Admin.Status, p exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, n *clusterNode, p *nodeProcess) error {
	admin := c.Admin(n.id)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, statusAttempt)
		stop := context.AfterFunc(p.exited, cancel)
		_, err := admin.Status(actx, &adminpb.StatusRequest{}, grpc.WaitForReady(true))
		stop()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited.Done():
			tail := tailFile(n.logPath, logTailLines)
			err := fmt.Errorf("chaos: node %d (pid %d) exited while starting: %s; log %s ends with:\n%s",
				n.id, p.pid, p.cmd.ProcessState, n.logPath, tail)
			if strings.Contains(tail, "address already in use") {
				err = fmt.Errorf("%w (%w)", err, errPortInUse)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("chaos: node %d (pid %d) did not answer Admin.Status: %w (last: %v); log %s",
				n.id, p.pid, ctx.Err(), err, n.logPath)
		case <-tick.C:
		}
	}
}

// lookup returns the node id, or an error.
func (c *Cluster) lookup(id raft.NodeID) (*clusterNode, error) {
	n, ok := c.nodes[id]
	if !ok {
		return nil, fmt.Errorf("chaos: no node %d in the cluster (nodes %v)", id, c.ids)
	}
	return n, nil
}

// node returns the node id; it panics if there is none.
func (c *Cluster) node(id raft.NodeID) *clusterNode {
	n, err := c.lookup(id)
	if err != nil {
		panic(err)
	}
	return n
}

// IDs returns the nodes' IDs in ascending order.
func (c *Cluster) IDs() []raft.NodeID { return slices.Clone(c.ids) }

// ClientAddr returns the address of node id's client (KV and Admin)
// services.
func (c *Cluster) ClientAddr(id raft.NodeID) string { return c.node(id).clientAddr }

// ClientAddrs returns every node's client address, by ascending ID.
func (c *Cluster) ClientAddrs() []string {
	addrs := make([]string, len(c.ids))
	for i, id := range c.ids {
		addrs[i] = c.nodes[id].clientAddr
	}
	return addrs
}

// LogPath returns the file node id's processes write their output to.
func (c *Cluster) LogPath(id raft.NodeID) string { return c.node(id).logPath }

// State returns the state of node id's process.
func (c *Cluster) State(id raft.NodeID) NodeState {
	n := c.node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.state
}

// PID returns the process ID of node id's process while it is running or
// paused, and 0 when it is stopped.
func (c *Cluster) PID(id raft.NodeID) int {
	n := c.node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.state == Stopped || n.proc == nil {
		return 0
	}
	return n.proc.pid
}

// Kill kills node id's process with SIGKILL (a paused one too) and waits
// for it to exit. It does nothing if the node is stopped already.
func (c *Cluster) Kill(id raft.NodeID) error {
	n, err := c.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	p := n.proc
	if n.state == Stopped || p == nil {
		c.mu.Unlock()
		return nil
	}
	p.expected = true
	err = p.cmd.Process.Signal(syscall.SIGKILL)
	c.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: killing node %d (pid %d): %w", id, p.pid, err)
	}
	<-p.exited.Done()
	c.log.Info("node killed", "node", uint64(id), "pid", p.pid)
	return nil
}

// Start runs a stopped node again, on the same data directory and ports,
// and returns once it answers Admin.Status. If ctx ends first, the process
// keeps running (Kill stops it) and Start returns ctx's error.
func (c *Cluster) Start(ctx context.Context, id raft.NodeID) error {
	n, err := c.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("chaos: starting node %d: the cluster is closed", id)
	}
	if n.state != Stopped {
		c.mu.Unlock()
		return fmt.Errorf("chaos: starting node %d: it is %s", id, n.state)
	}
	p, err := c.spawnLocked(n)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitReady(ctx, n, p)
}

// WipeData deletes stopped node id's data directory: the node loses
// everything it stored, as a machine whose disk is replaced does. Only
// the runner's control test (LoseAllData) uses it: no store survives a
// majority of its disks lost.
func (c *Cluster) WipeData(id raft.NodeID) error {
	n, err := c.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.state != Stopped {
		return fmt.Errorf("chaos: wiping node %d's data: it is %s", id, n.state)
	}
	if err := os.RemoveAll(filepath.Join(n.dir, "data")); err != nil {
		return fmt.Errorf("chaos: wiping node %d's data: %w", id, err)
	}
	return nil
}

// Pause stops node id's process with SIGSTOP. A paused node is left
// paused; a stopped one is an error.
func (c *Cluster) Pause(id raft.NodeID) error {
	return c.signal(id, syscall.SIGSTOP, Running, Paused)
}

// Resume continues node id's paused process with SIGCONT. A running node
// is left running; a stopped one is an error.
func (c *Cluster) Resume(id raft.NodeID) error {
	return c.signal(id, syscall.SIGCONT, Paused, Running)
}

// signal sends sig to node id's process if it is in state from, and then
// has it in state to.
func (c *Cluster) signal(id raft.NodeID, sig syscall.Signal, from, to NodeState) error {
	n, err := c.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch n.state {
	case to:
		return nil
	case from:
	default:
		return fmt.Errorf("chaos: %v to node %d: it is %s", sig, id, n.state)
	}
	if err := n.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("chaos: %v to node %d (pid %d): %w", sig, id, n.proc.pid, err)
	}
	n.state = to
	msg := "node paused"
	if to == Running {
		msg = "node resumed"
	}
	c.log.Info(msg, "node", uint64(id), "pid", n.proc.pid)
	return nil
}

// SetLink sets the mode of the from→to direction of the network: the
// connections from's transport opens to to's peer port. A node's link to
// itself is always up; setting it does nothing.
func (c *Cluster) SetLink(from, to raft.NodeID, mode LinkMode) {
	c.node(from)
	c.node(to)
	if from == to {
		return
	}
	c.proxies[[2]raft.NodeID{from, to}].SetMode(mode)
	c.log.Debug("link", "from", uint64(from), "to", uint64(to), "mode", mode.String())
}

// Link returns the mode of the from→to direction of the network.
func (c *Cluster) Link(from, to raft.NodeID) LinkMode {
	c.node(from)
	c.node(to)
	if from == to {
		return LinkUp
	}
	return c.proxies[[2]raft.NodeID{from, to}].Mode()
}

// HealNetwork sets every link up.
func (c *Cluster) HealNetwork() {
	for _, p := range c.proxies {
		p.SetMode(LinkUp)
	}
	c.log.Debug("network healed")
}

// Admin returns a client of node id's Admin service. Its connection is
// made on first use, kept across the node's restarts (it reconnects within
// a few hundred milliseconds of a start) and closed by Close.
func (c *Cluster) Admin(id raft.NodeID) adminpb.AdminClient {
	n := c.node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.admin != nil {
		return adminpb.NewAdminClient(n.admin)
	}
	cc, err := grpc.NewClient(n.clientAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		// Only a malformed target or option fails here; ours are neither.
		panic(fmt.Sprintf("chaos: admin client of node %d at %s: %v", id, n.clientAddr, err))
	}
	if c.closed {
		// Calls fail at once (the connection is closing); nothing is left
		// open after Close.
		_ = cc.Close()
		return adminpb.NewAdminClient(cc)
	}
	n.admin = cc
	return adminpb.NewAdminClient(cc)
}

// Status calls node id's Admin.Status.
func (c *Cluster) Status(ctx context.Context, id raft.NodeID) (*adminpb.StatusResponse, error) {
	if _, err := c.lookup(id); err != nil {
		return nil, err
	}
	st, err := c.Admin(id).Status(ctx, &adminpb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("chaos: node %d: status: %w", id, err)
	}
	return st, nil
}

// SetDiskFaults replaces node id's storage failpoints (Admin.SetDiskFaults;
// nil or an empty DiskFaults clears them).
func (c *Cluster) SetDiskFaults(ctx context.Context, id raft.NodeID, f *adminpb.DiskFaults) error {
	if _, err := c.lookup(id); err != nil {
		return err
	}
	if f == nil {
		f = &adminpb.DiskFaults{}
	}
	if _, err := c.Admin(id).SetDiskFaults(ctx, &adminpb.SetDiskFaultsRequest{Faults: f}); err != nil {
		return fmt.Errorf("chaos: node %d: set disk faults: %w", id, err)
	}
	return nil
}

// SetNetFaults replaces the fault rules of node id's peer transport
// (Admin.SetFaults; no rules clear them).
func (c *Cluster) SetNetFaults(ctx context.Context, id raft.NodeID, rules []*adminpb.FaultRule) error {
	if _, err := c.lookup(id); err != nil {
		return err
	}
	if _, err := c.Admin(id).SetFaults(ctx, &adminpb.SetFaultsRequest{Rules: rules}); err != nil {
		return fmt.Errorf("chaos: node %d: set faults: %w", id, err)
	}
	return nil
}

// Leader returns the node that reports itself leader of the default
// group (server.DefaultGroup) with the highest term, among the running
// nodes that answer Admin.Status within ctx and a short per-node timeout
// (paused and stopped nodes are not asked). It is an error if none does.
func (c *Cluster) Leader(ctx context.Context) (raft.NodeID, error) {
	var ask []raft.NodeID
	c.mu.Lock()
	for _, id := range c.ids {
		if c.nodes[id].state == Running {
			ask = append(ask, id)
		}
	}
	c.mu.Unlock()
	type answer struct {
		g   *adminpb.GroupStatus
		err error
	}
	answers := make([]answer, len(ask))
	var wg sync.WaitGroup
	for i, id := range ask {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, leaderProbe)
			defer cancel()
			st, err := c.Status(pctx, id)
			if err != nil {
				answers[i].err = err
				return
			}
			for _, g := range st.GetGroups() {
				if g.GetGroupId() == uint64(server.DefaultGroup) {
					answers[i].g = g
					return
				}
			}
			answers[i].err = fmt.Errorf("node %d does not report group %d", id, server.DefaultGroup)
		})
	}
	wg.Wait()
	var (
		lead raft.NodeID
		term uint64
		seen []string
	)
	for i, id := range ask {
		a := answers[i]
		switch {
		case a.err != nil:
			seen = append(seen, a.err.Error())
		default:
			seen = append(seen, fmt.Sprintf("node %d: %v term %d leader %d", id, a.g.GetRole(), a.g.GetTerm(), a.g.GetLeaderId()))
			if a.g.GetRole() == adminpb.Role_LEADER && (lead == 0 || a.g.GetTerm() > term) {
				lead, term = id, a.g.GetTerm()
			}
		}
	}
	if lead == 0 {
		return 0, fmt.Errorf("chaos: no leader (of %d running nodes): %s", len(ask), strings.Join(seen, "; "))
	}
	return lead, nil
}

// Unexpected returns an error for every process exit the cluster did not
// cause (by Kill or Close), naming the node, the exit status and the log
// file, with the log's last lines.
func (c *Cluster) Unexpected() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.unexpected)
}

// logAlarms are the log lines (at the start of a line) that fail a run:
// a Go panic, a runtime fatal error, a race the race detector found.
var logAlarms = []string{"panic:", "fatal error:", "WARNING: DATA RACE"}

// Context quoted around each finding of ScanLogs.
const (
	scanBefore = 2
	scanAfter  = 12
)

// ScanLogs returns what the nodes' logs hold that a run must fail on:
// each line that starts with "panic:", "fatal error:" or "WARNING: DATA
// RACE", with a few lines of context, naming the log file and line.
func (c *Cluster) ScanLogs() []string {
	var findings []string
	for _, id := range c.ids {
		findings = append(findings, scanLog(c.nodes[id].logPath, fmt.Sprintf("node %d", id))...)
	}
	return findings
}

// scanLog returns the findings of ScanLogs in one log file.
func scanLog(path, who string) []string {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return []string{fmt.Sprintf("%s: cannot read log: %v", who, err)}
	}
	defer f.Close()
	var (
		findings []string
		before   []string // the last scanBefore lines
		cur      *strings.Builder
		after    int // lines of context still to add to cur
	)
	flush := func() {
		if cur != nil {
			findings = append(findings, strings.TrimRight(cur.String(), "\n"))
			cur = nil
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		alarm := slices.ContainsFunc(logAlarms, func(a string) bool { return strings.HasPrefix(line, a) })
		switch {
		case alarm && cur != nil && after > 0:
			// Part of the finding being quoted (a panic inside a race
			// report, ...): extend it.
			cur.WriteString(line + "\n")
			after = scanAfter
		case alarm:
			flush()
			cur = &strings.Builder{}
			fmt.Fprintf(cur, "%s: %s:%d: %s\n", who, path, lineNo, line)
			for _, b := range before {
				cur.WriteString("    " + b + "\n")
			}
			cur.WriteString("  > " + line + "\n")
			after = scanAfter
		case cur != nil && after > 0:
			cur.WriteString("    " + line + "\n")
			after--
			if after == 0 {
				flush()
			}
		}
		before = append(before, line)
		if len(before) > scanBefore {
			before = before[1:]
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		findings = append(findings, fmt.Sprintf("%s: reading %s: %v", who, path, err))
	}
	return findings
}

// tailFile returns the last n lines of the file at path (at most its last
// 64 KiB).
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	defer f.Close()
	const most = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > most {
		if _, err := f.Seek(fi.Size()-most, io.SeekStart); err != nil {
			return fmt.Sprintf("(cannot read: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Close kills every node's process (a paused one is continued first),
// stops the proxies, closes the Admin connections and waits for every
// goroutine the cluster started. Calling it again does nothing.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	var (
		errs   []error
		procs  []*nodeProcess
		admins []*grpc.ClientConn
	)
	for _, id := range c.ids {
		n := c.nodes[id]
		if n.admin != nil {
			admins = append(admins, n.admin)
			n.admin = nil
		}
		p := n.proc
		if n.state == Stopped || p == nil {
			continue
		}
		p.expected = true
		if n.state == Paused {
			if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("chaos: SIGCONT to node %d (pid %d): %w", id, p.pid, err))
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("chaos: killing node %d (pid %d): %w", id, p.pid, err))
		}
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		<-p.exited.Done()
	}
	for _, p := range c.proxies {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, cc := range admins {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("chaos: closing an admin connection: %w", err))
		}
	}
	c.wg.Wait()
	releasePorts(c.ports)
	if len(c.ids) > 0 {
		c.log.Info("cluster closed", "dir", c.cfg.Dir)
	}
	return errors.Join(errs...)
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/storage/vfs"
)

// demoCluster is what the demo shell drives: a local cluster whose nodes
// it can stop, start again and cut off from each other.
type demoCluster interface {
	// NodeIDs are the nodes' ids, ascending.
	NodeIDs() []uint64
	// Endpoints are the nodes' client addresses, in NodeIDs' order.
	Endpoints() []string
	// Kill stops node id abruptly (its data stays); Restart starts it
	// again from its data.
	Kill(id uint64) error
	Restart(id uint64) error
	// Partition cuts every link between node id and the other nodes
	// (clients can still reach it); Disk sets node id's disk faults (its
	// Raft log's: full, or slow fsyncs; zero: healthy); Heal restores
	// every link and every disk.
	Partition(id uint64) error
	Disk(id uint64, d vfs.DiskFaults) error
	Heal() error
	// Status asks every node for its status; an unreachable (killed) node
	// has Err set.
	Status(ctx context.Context) []nodeStatus
	// Leader returns the node that leads in the highest term (0: none)
	// and a channel closed when that may have changed, or ctx ended.
	Leader(ctx context.Context) (id, term uint64, changed <-chan struct{})
}

// shell is the demo's command interpreter: one command a line, from a
// terminal or a pipe. It owns its client; a watcher goroutine prints a
// line whenever the leader changes.
type shell struct {
	cl      demoCluster
	kv      *client.Client
	out     *lockedWriter
	timeout time.Duration
	// echo: print each command before its output (input is not a
	// terminal, so the transcript would not show it).
	echo bool
	// prompt: print a prompt before reading each line (a terminal).
	prompt bool
}

// lockedWriter serializes the shell's and the watcher's output, a line
// at a time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.w, format, args...)
}

// write runs fn with the writer to itself, so that a multi-line output
// (a table) is not split by the watcher's lines.
func (w *lockedWriter) write(fn func(io.Writer) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fn(w.w)
}

const shellHelp = `Commands (one a line; quote a value with spaces as "a b"):
  put KEY VALUE           set KEY (exactly once, through the leader)
  get KEY [LEVEL]         read KEY; LEVEL: linearizable (default), lease, serializable
  del KEY                 delete KEY
  cas KEY OLD NEW         set KEY to NEW if its value is OLD ("-" for OLD: if absent)
  scan [START [END]]      list keys in [START, END)
  status                  every node: role, term, leader, commit/applied/last index, sizes
  leader                  which node leads, in which term
  kill N | kill leader    stop node N (its data stays on disk)
  restart [N]             start node N (no N: every killed node) again from its data
  partition N | partition leader
                          cut node N off from the other nodes (clients still reach it)
  disk full|slow|ok N|leader [MS]
                          node N's disk (its Raft log) is full, slow (MS ms per fsync,
                          default 200), or healthy again
  heal                    reconnect every node, make every disk healthy
  help                    this text
  quit                    stop the cluster and leave (also: exit, Ctrl-D)
A line starting with # is a comment. Leadership changes are announced as they happen:
  * leader: node 2 (term 3)
`

// run reads commands from in until quit or end of input, or ctx ends.
func (sh *shell) run(ctx context.Context, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sh.watch(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() { // ends when in does; in is stdin, read to its end
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()

	for {
		if sh.prompt {
			sh.out.printf("cairn> ")
		}
		var line string
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if sh.prompt {
				sh.out.printf("\n")
			}
			return err
		case line = <-lines:
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if sh.echo {
			sh.out.printf("> %s\n", line)
		}
		args, err := splitArgs(line)
		if err != nil {
			sh.out.printf("error: %v\n", err)
			continue
		}
		if args[0] == "quit" || args[0] == "exit" {
			return nil
		}
		if err := sh.exec(ctx, args); err != nil {
			write := slices.Contains([]string{"put", "set", "del", "delete", "rm", "cas"}, args[0])
			msg, _ := describe(err, &globals{endpoints: sh.cl.Endpoints(), timeout: sh.timeout}, write)
			sh.out.printf("error: %s\n", msg)
		}
	}
}

// exec runs one command.
func (sh *shell) exec(ctx context.Context, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, sh.timeout)
	defer cancel()
	cmd, args := args[0], args[1:]
	need := func(n int, usage string) error {
		if len(args) != n {
			return fmt.Errorf("usage: %s", usage)
		}
		return nil
	}
	switch cmd {
	case "help", "?":
		sh.out.printf("%s", shellHelp)
	case "put", "set":
		if err := need(2, "put KEY VALUE"); err != nil {
			return err
		}
		res, err := sh.kv.Put(ctx, []byte(args[0]), []byte(args[1]))
		if err != nil {
			return err
		}
		sh.out.printf("OK version %d (node %d, index %d)\n", res.Version, res.Header.Node, res.Header.AppliedIndex)
	case "get":
		if len(args) != 1 && len(args) != 2 {
			return errors.New("usage: get KEY [linearizable|lease|serializable]")
		}
		level := client.Linearizable
		if len(args) == 2 {
			var err error
			if level, err = parseConsistency(args[1]); err != nil {
				return err
			}
		}
		res, err := sh.kv.Get(ctx, []byte(args[0]), client.WithConsistency(level))
		if errors.Is(err, client.ErrKeyNotFound) {
			sh.out.printf("(not found)\n")
			return nil
		}
		if err != nil {
			return err
		}
		sh.out.printf("%s (version %d, %s read from node %d at index %d)\n",
			printable(res.Value), res.Version, level, res.Header.Node, res.Header.AppliedIndex)
	case "del", "delete", "rm":
		if err := need(1, "del KEY"); err != nil {
			return err
		}
		res, err := sh.kv.Delete(ctx, []byte(args[0]))
		if err != nil {
			return err
		}
		if res.Deleted {
			sh.out.printf("deleted (was version %d)\n", res.PrevVersion)
		} else {
			sh.out.printf("not found: nothing to delete\n")
		}
	case "cas":
		if err := need(3, `cas KEY OLD NEW ("-" for OLD: only if absent)`); err != nil {
			return err
		}
		expect := client.IfValue([]byte(args[1]))
		if args[1] == "-" {
			expect = client.IfAbsent()
		}
		res, err := sh.kv.CompareAndSwap(ctx, []byte(args[0]), expect, []byte(args[2]))
		if err != nil {
			return err
		}
		sh.out.printf("OK version %d\n", res.Version)
	case "scan", "ls":
		if len(args) > 2 {
			return errors.New("usage: scan [START [END]]")
		}
		var start, end []byte
		if len(args) > 0 {
			start = []byte(args[0])
		}
		if len(args) > 1 {
			end = []byte(args[1])
		}
		var kvs []client.KeyValue
		for kv, err := range sh.kv.ScanAll(ctx, start, end) {
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return sh.out.write(func(w io.Writer) error {
			t := newTable(w, "KEY", "VERSION", "VALUE")
			for _, kv := range kvs {
				t.row(printable(kv.Key), strconv.FormatUint(uint64(kv.Version), 10), printable(kv.Value))
			}
			if err := t.flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(w, "(%d keys)\n", len(kvs))
			return err
		})
	case "status":
		if err := need(0, "status"); err != nil {
			return err
		}
		st := sh.cl.Status(ctx)
		sortStatuses(st)
		return sh.out.write(func(w io.Writer) error { return writeStatusTable(w, st) })
	case "leader":
		if err := need(0, "leader"); err != nil {
			return err
		}
		id, term, _ := sh.cl.Leader(ctx)
		if id == 0 {
			sh.out.printf("no leader right now (an election may be under way, or a majority is down)\n")
		} else {
			sh.out.printf("node %d leads, term %d\n", id, term)
		}
	case "kill", "stop":
		if err := need(1, "kill N | kill leader"); err != nil {
			return err
		}
		id, err := sh.nodeArg(ctx, args[0])
		if err != nil {
			return err
		}
		if err := sh.cl.Kill(id); err != nil {
			return err
		}
		sh.out.printf("node %d killed\n", id)
	case "restart", "start":
		if len(args) > 1 {
			return errors.New("usage: restart [N] (no N: every killed node)")
		}
		var ids []uint64
		if len(args) == 1 {
			id, err := sh.nodeArg(ctx, args[0])
			if err != nil {
				return err
			}
			ids = append(ids, id)
		} else {
			for _, s := range sh.cl.Status(ctx) {
				if s.Err == statusKilled {
					ids = append(ids, s.Node)
				}
			}
			if len(ids) == 0 {
				return errors.New("no node is killed")
			}
		}
		for _, id := range ids {
			if err := sh.cl.Restart(id); err != nil {
				return err
			}
			sh.out.printf("node %d restarted\n", id)
		}
	case "partition", "isolate":
		if err := need(1, "partition N | partition leader"); err != nil {
			return err
		}
		id, err := sh.nodeArg(ctx, args[0])
		if err != nil {
			return err
		}
		if err := sh.cl.Partition(id); err != nil {
			return err
		}
		sh.out.printf("node %d cut off from the other nodes\n", id)
	case "disk":
		if len(args) < 2 || len(args) > 3 || (len(args) == 3 && args[0] != "slow") {
			return errors.New("usage: disk full N | disk slow N [MS] | disk ok N (N: a node id or leader)")
		}
		id, err := sh.nodeArg(ctx, args[1])
		if err != nil {
			return err
		}
		var d vfs.DiskFaults
		switch args[0] {
		case "full":
			d.NoSpace = true
		case "slow":
			ms := 200
			if len(args) == 3 {
				maxMS := int(server.MaxDiskFaultDelay / time.Millisecond)
				if ms, err = strconv.Atoi(args[2]); err != nil || ms <= 0 || ms > maxMS {
					return fmt.Errorf("disk slow: %q is not a delay in milliseconds from 1 to %d", args[2], maxMS)
				}
			}
			d.SyncDelay = time.Duration(ms) * time.Millisecond
		case "ok":
		default:
			return fmt.Errorf("disk %s: want full, slow or ok", args[0])
		}
		if err := sh.cl.Disk(id, d); err != nil {
			return err
		}
		if d.IsZero() {
			sh.out.printf("node %d's disk is healthy\n", id)
		} else {
			sh.out.printf("node %d's disk is %s\n", id, describeDisk(d))
		}
	case "heal":
		if err := need(0, "heal"); err != nil {
			return err
		}
		if err := sh.cl.Heal(); err != nil {
			return err
		}
		sh.out.printf("every link restored, every disk healthy\n")
	default:
		return fmt.Errorf("unknown command %q (try help)", cmd)
	}
	return nil
}

// describeDisk says what disk faults d make, in the demo's words.
func describeDisk(d vfs.DiskFaults) string {
	switch {
	case d.IsZero():
		return "healthy"
	case d.NoSpace:
		return "full"
	default:
		return fmt.Sprintf("slow (%v per fsync)", d.SyncDelay)
	}
}

// nodeArg resolves a node argument: an id, or "leader".
func (sh *shell) nodeArg(ctx context.Context, s string) (uint64, error) {
	if s == "leader" {
		id, _, _ := sh.cl.Leader(ctx)
		if id == 0 {
			return 0, errors.New("no leader right now")
		}
		return id, nil
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err == nil {
		for _, n := range sh.cl.NodeIDs() {
			if n == id {
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("no node %q: the nodes are %v", s, sh.cl.NodeIDs())
}

// watch prints a line whenever the leader changes, until ctx ends. It
// waits on the cluster's notifications; it never polls.
func (sh *shell) watch(ctx context.Context) {
	var lastID, lastTerm uint64
	for {
		id, term, changed := sh.cl.Leader(ctx)
		switch {
		case id == 0 && lastID != 0:
			sh.out.printf("* no leader (was node %d)\n", lastID)
		case id != 0 && (id != lastID || term != lastTerm):
			sh.out.printf("* leader: node %d (term %d)\n", id, term)
		}
		lastID, lastTerm = id, term
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// splitArgs splits a line into words at spaces; a word may be a
// double-quoted Go string ("a b", "\x00").
func splitArgs(line string) ([]string, error) {
	var args []string
	for {
		line = strings.TrimLeftFunc(line, unicode.IsSpace)
		if line == "" {
			return args, nil
		}
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, fmt.Errorf("unterminated or bad quoted string: %s", line)
			}
			s, _ := strconv.Unquote(q)
			args = append(args, s)
			line = line[len(q):]
			continue
		}
		i := strings.IndexFunc(line, unicode.IsSpace)
		if i < 0 {
			i = len(line)
		}
		args = append(args, line[:i])
		line = line[i:]
	}
}

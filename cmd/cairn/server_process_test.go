package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/client"
)

// process is one `cairn server` OS process of TestServerProcesses.
type process struct {
	id   int
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's, once done is closed
}

func startProcess(t *testing.T, bin string, id int, args []string, logPath string) *process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{id: id, args: args, log: logPath, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start node %d: %v", id, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *process) terminate(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("node %d: SIGTERM: %v", p.id, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("node %d did not exit after SIGTERM:\n%s", p.id, tail(p.log))
	}
	if p.err != nil {
		t.Fatalf("node %d exited with %v after SIGTERM:\n%s", p.id, p.err, tail(p.log))
	}
	if log := tail(p.log); !strings.Contains(log, `"msg":"node stopped"`) {
		t.Fatalf("node %d's log does not end with a clean stop:\n%s", p.id, log)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// TestServerProcesses builds the binary and runs a 3-node cluster of
// separate `cairn server` processes on 127.0.0.1: writes and reads through
// the client; SIGTERM one (the leader), the others go on serving; it
// restarts and catches up.
func TestServerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	// The Dockerfile's static build: the tests that run the binary share
	// its build cache.
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	const nodes = 3
	var items, endpoints []string
	for i := 1; i <= nodes; i++ {
		client := "127.0.0.1:" + freePort(t)
		items = append(items, fmt.Sprintf("%d=127.0.0.1:%s/%s", i, freePort(t), client))
		endpoints = append(endpoints, client)
	}
	peers := strings.Join(items, ",")
	procs := make([]*process, nodes+1)
	argsOf := func(i int) []string {
		return []string{"server", "--id", fmt.Sprint(i), "--cluster-id", "42", "--peers", peers,
			"--data-dir", filepath.Join(dir, fmt.Sprintf("node-%d", i)),
			"--tick", "20ms", "--log-format", "json", "--shutdown-timeout", "3s"}
	}
	for i := 1; i <= nodes; i++ {
		procs[i] = startProcess(t, bin, i, argsOf(i), filepath.Join(dir, fmt.Sprintf("node-%d.log", i)))
	}

	cl, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 30 * time.Second, AttemptTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 20 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "k%02d", i), []byte("v1")); err != nil {
			t.Fatalf("put: %v\nnode 1:\n%s", err, tail(procs[1].log))
		}
	}
	got, err := cl.Get(ctx, []byte("k07"))
	if err != nil || string(got.Value) != "v1" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	lead := int(got.Header.Node)
	if lead < 1 || lead > nodes {
		t.Fatalf("the linearizable read was answered by node %d", lead)
	}
	status := adminStatus(ctx, t, endpoints[lead-1])
	if g := status.GetGroups()[0]; g.GetRole() != adminpb.Role_LEADER {
		t.Fatalf("node %d answered a linearizable read but its status says %v", lead, g)
	}

	// SIGTERM the leader: it hands off and exits cleanly; the rest serve.
	procs[lead].terminate(ctx, t)
	var last *client.PutResult
	for i := range 20 {
		if last, err = cl.Put(ctx, fmt.Appendf(nil, "k%02d", i), []byte("v2")); err != nil {
			t.Fatalf("put with node %d stopped: %v", lead, err)
		}
	}
	if int(last.Header.Node) == lead {
		t.Fatalf("a put was answered by the stopped node %d", lead)
	}

	// Restart it: it catches up. A linearizable read served by it (a
	// follower read: it waits until it has applied the leader's commit
	// index) sees the writes it missed.
	procs[lead] = startProcess(t, bin, lead, argsOf(lead), procs[lead].log)
	only, err := client.New(client.Config{Endpoints: []string{endpoints[lead-1]}, RequestTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	for i := range 20 {
		got, err := only.Get(ctx, fmt.Appendf(nil, "k%02d", i))
		if err != nil || string(got.Value) != "v2" || int(got.Header.Node) != lead {
			t.Fatalf("restarted node %d: k%02d = %+v, %v\n%s", lead, i, got, err, tail(procs[lead].log))
		}
	}
	if st := adminStatus(ctx, t, endpoints[lead-1]); st.GetGroups()[0].GetAppliedIndex() < uint64(last.Header.AppliedIndex) {
		t.Fatalf("restarted node %d: status %v, want applied >= %d", lead, st.GetGroups()[0], last.Header.AppliedIndex)
	}

	for i := 1; i <= nodes; i++ {
		procs[i].terminate(ctx, t)
	}
}

func adminStatus(ctx context.Context, t *testing.T, addr string) *adminpb.StatusResponse {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := adminpb.NewAdminClient(cc).Status(ctx, &adminpb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("status of %s: %v", addr, err)
	}
	return st
}

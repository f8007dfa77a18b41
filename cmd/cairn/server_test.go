package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// resolveServer parses args as cairn server's flags and resolves them
// against env and the config file they name.
func resolveServer(t *testing.T, args []string, env map[string]string) (*serverOptions, error) {
	t.Helper()
	cmd, o := newServerCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	_, _, err := o.resolve(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	return o, err
}

func TestServerConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cairn.json")
	writeFile(t, file, `{
		"id": 1,
		"cluster-id": 5,
		"peers": ["1=127.0.0.1:8001/127.0.0.1:7001", "2=127.0.0.1:8002/127.0.0.1:7002"],
		"data-dir": "`+filepath.Join(dir, "data")+`",
		"tick": "10ms",
		"enable-fault-injection": true
	}`)
	o, err := resolveServer(t, []string{"--config", file, "--cluster-id", "7"},
		map[string]string{"CAIRN_CLUSTER_ID": "6", "CAIRN_ID": "2", "CAIRN_ELECTION_TICKS": "20"})
	if err != nil {
		t.Fatal(err)
	}
	if o.clusterID != 7 || o.id != 2 || o.electionTicks != 20 || o.tick != 10*time.Millisecond || !o.faultInjection ||
		o.peers != "1=127.0.0.1:8001/127.0.0.1:7001,2=127.0.0.1:8002/127.0.0.1:7002" {
		t.Fatalf("resolved %+v: want cluster 7 (flag), id 2 (env), election ticks 20 (env), the rest from the file", o)
	}

	// The environment alone names the file.
	o, err = resolveServer(t, nil, map[string]string{"CAIRN_CONFIG": file})
	if err != nil || o.id != 1 || o.clusterID != 5 {
		t.Fatalf("CAIRN_CONFIG: %+v, %v", o, err)
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.json")
	writeFile(t, file, `{"id": 1, "no-such-flag": 3, "tick": {"x": 1}}`)
	_, err := resolveServer(t, []string{"--config", file}, map[string]string{"CAIRN_ELECTION_TICKS": "many"})
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{`CAIRN_ELECTION_TICKS="many"`, `unknown key "no-such-flag"`, `"tick"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	_, err = resolveServer(t, []string{"--id", "3", "--cluster-id", "1", "--data-dir", dir,
		"--peers", "1=127.0.0.1:8001/127.0.0.1:7001", "--log-format", "xml"}, nil)
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"do not include this node (3)", `--log-format "xml"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if code := reportError(io.Discard, "cairn server", &globals{}, err); code != exitUsage {
		t.Errorf("exit code %d, want %d", code, exitUsage)
	}
}

func TestServerStartsAndStops(t *testing.T) {
	// With its context already ended, cairn server starts the node, shuts
	// it down and exits 0; a second start on the same data directory with
	// another cluster id is refused.
	dir := t.TempDir()
	peerPort, clientPort := freePort(t), freePort(t)
	args := []string{"server", "--id", "1", "--data-dir", dir,
		"--peers", "1=127.0.0.1:" + peerPort + "/127.0.0.1:" + clientPort}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stderr strings.Builder
	if code := run(ctx, append(args, "--cluster-id", "1"), nil, io.Discard, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	code := run(ctx, append(args, "--cluster-id", "2"), nil, io.Discard, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "belongs to cluster 1 node 1") {
		t.Fatalf("another cluster's data dir: exit %d: %s", code, stderr.String())
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/loadgen"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/server"
)

// startCluster starts an in-process 3-node cluster (real gRPC on
// 127.0.0.1) whose scans return at most 2 keys a page, so that scan must
// follow continuations, and waits for its leader. It returns the
// --endpoints flag for it.
func startCluster(t *testing.T) (*testcluster.Cluster, string) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{
		Configure: func(cfg *server.Config) { cfg.MaxScanLimit = 2 },
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c.WaitLeader(ctx, server.DefaultGroup)
	return c, "--endpoints=" + strings.Join(c.Endpoints(), ",")
}

// cli runs a verb against the cluster at eps and checks its exit code.
func cli(t *testing.T, eps string, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, "", append([]string{eps, "--timeout=20s"}, args...)...)
	if code != wantCode {
		t.Fatalf("cairn %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	return stdout, stderr
}

func mustMatch(t *testing.T, what, got, pattern string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(got) {
		t.Errorf("%s: %q does not match %s", what, got, pattern)
	}
}

func TestVerbs(t *testing.T) {
	_, eps := startCluster(t)

	// put, get.
	out, _ := cli(t, eps, 0, "put", "k", "v1")
	mustMatch(t, "put", out, `^OK version \d+ \(new key\)\n$`)
	out, _ = cli(t, eps, 0, "put", "k", "v2")
	mustMatch(t, "put again", out, `^OK version \d+ \(was version \d+\)\n$`)
	out, _ = cli(t, eps, 0, "get", "k")
	mustMatch(t, "get", out, `^KEY +VERSION +VALUE\nk +\d+ +v2\n$`)
	for _, level := range []string{"linearizable", "lease", "serializable"} {
		out, _ = cli(t, eps, 0, "get", "k", "--value-only", "--consistency", level)
		if out != "v2\n" {
			t.Errorf("get --value-only --consistency %s = %q", level, out)
		}
	}
	out, _ = cli(t, eps, 0, "get", "k", "--output", "json")
	var got struct {
		Key     string `json:"key"`
		Value   string `json:"value"`
		Version uint64 `json:"version"`
		Header  struct {
			Node         uint64 `json:"node"`
			AppliedIndex uint64 `json:"applied_index"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Key != "k" || got.Value != "v2" ||
		got.Version == 0 || got.Header.Node == 0 || got.Header.AppliedIndex < got.Version {
		t.Errorf("get --output json = %s (%+v, %v)", out, got, err)
	}
	version := got.Version

	_, errOut := cli(t, eps, exitNotFound, "get", "missing")
	mustMatch(t, "get missing", errOut, `^cairn get: missing: no such key\n$`)

	// cas, by value, version and absence; failures say why, write nothing.
	out, _ = cli(t, eps, 0, "cas", "k", "v3", "--expect-value", "v2")
	mustMatch(t, "cas", out, `^OK version \d+\n$`)
	_, errOut = cli(t, eps, exitCASFailed, "cas", "k", "v4", "--expect-value", "v2")
	mustMatch(t, "cas failed", errOut, `^cairn cas: compare-and-swap failed: k is at version \d+ with value v3; nothing written\n$`)
	_, errOut = cli(t, eps, exitCASFailed, "cas", "k", "v4", "--expect-version", fmt.Sprint(version))
	mustMatch(t, "cas by old version", errOut, `is at version \d+ with value v3`)
	out, _ = cli(t, eps, exitCASFailed, "cas", "k", "v4", "--expect-absent", "--output", "json")
	var failed struct {
		Succeeded bool `json:"succeeded"`
		Current   struct {
			Value string `json:"value"`
		} `json:"current"`
	}
	if err := json.Unmarshal([]byte(out), &failed); err != nil || failed.Succeeded || failed.Current.Value != "v3" {
		t.Errorf("cas --output json on failure = %s (%v)", out, err)
	}
	cli(t, eps, 0, "cas", "fresh", "x", "--expect-absent")
	_, errOut = cli(t, eps, exitCASFailed, "cas", "gone", "x", "--expect-value", "y")
	mustMatch(t, "cas on absent", errOut, `gone is absent`)
	out, _ = cli(t, eps, 0, "get", "k", "--value-only")
	if out != "v3\n" {
		t.Errorf("after failed cas, k = %q, want v3", out)
	}
	out, _ = cli(t, eps, 0, "get", "fresh", "--output", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	out, _ = cli(t, eps, 0, "cas", "fresh", "--delete", "--expect-version", fmt.Sprint(got.Version))
	if out != "OK deleted\n" {
		t.Errorf("cas --delete = %q", out)
	}
	cli(t, eps, exitNotFound, "get", "fresh")

	// del.
	out, _ = cli(t, eps, 0, "del", "k")
	mustMatch(t, "del", out, `^deleted \(was version \d+\)\n$`)
	out, _ = cli(t, eps, 0, "del", "k")
	if out != "not found: nothing to delete\n" {
		t.Errorf("del absent = %q", out)
	}

	// The server refuses what breaks a limit; nothing is applied.
	_, errOut = cli(t, eps, exitInvalid, "put", strings.Repeat("x", 5000), "v")
	mustMatch(t, "put too-large key", errOut, `^cairn put: invalid request: .*max_key_size is 4096 bytes, found 5000.*nothing applied\n$`)
}

func TestScan(t *testing.T) {
	_, eps := startCluster(t)
	for _, k := range []string{"a1", "a2", "a3", "a4", "a5", "b1", "c1"} {
		cli(t, eps, 0, "put", k, "val-"+k)
	}
	// Pages hold 2 keys: every listing below follows continuations.
	out, _ := cli(t, eps, 0, "scan", "a", "b")
	mustMatch(t, "scan a b", out, `^KEY +VERSION +VALUE\na1 +\d+ +val-a1\na2 .*\na3 .*\na4 .*\na5 +\d+ +val-a5\n\(5 keys\)\n$`)
	out, _ = cli(t, eps, 0, "scan", "a", "--prefix", "--keys-only")
	mustMatch(t, "scan --prefix", out, `^KEY +VERSION\na1 +\d+\n(a\d +\d+\n){4}\(5 keys\)\n$`)
	out, _ = cli(t, eps, 0, "scan", "--limit", "3")
	mustMatch(t, "scan --limit", out, `^KEY +VERSION +VALUE\na1 .*\na2 .*\na3 .*\n\(3 keys\)\n$`)
	out, _ = cli(t, eps, 0, "scan", "--output", "json", "--consistency", "serializable")
	var res struct {
		KVs []struct {
			Key string `json:"key"`
		} `json:"kvs"`
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Count != 7 || len(res.KVs) != 7 || res.KVs[6].Key != "c1" {
		t.Errorf("scan --output json = %s (%v)", out, err)
	}
	out, _ = cli(t, eps, 0, "scan", "x")
	if out != "KEY  VERSION  VALUE\n(0 keys)\n" {
		t.Errorf("empty scan = %q", out)
	}
}

func TestStatus(t *testing.T) {
	c, eps := startCluster(t)
	cli(t, eps, 0, "put", "k", "v")
	out, _ := cli(t, eps, 0, "status")
	mustMatch(t, "status", out, `^NODE +ENDPOINT +GROUP +ROLE +TERM +LEADER +COMMIT +APPLIED +LAST +LOG +SNAPSHOT\n`)
	if n := len(regexp.MustCompile(`(?m)^[123] +127\.0\.0\.1:\d+ +1 +(leader|follower) +\d+ +[123] +\d+ +\d+ +\d+ +\S+ +\S+`).FindAllString(out, -1)); n != 3 {
		t.Errorf("status has %d node rows, want 3:\n%s", n, out)
	}
	if strings.Count(out, " leader ") != 1 {
		t.Errorf("status does not show exactly one leader:\n%s", out)
	}

	out, _ = cli(t, eps, 0, "status", "--output", "json")
	var st struct {
		Nodes []nodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) != 3 {
		t.Fatalf("status --output json = %s (%v)", out, err)
	}
	lead, _ := leaderOf(st.Nodes)
	for _, n := range st.Nodes {
		if n.Leader != lead || n.Applied == 0 || n.LastIndex < n.Commit {
			t.Errorf("node status %+v (leader %d)", n, lead)
		}
	}

	// A stopped node is listed as unreachable, and the exit status says so.
	c.Stop(c.IDs()[0])
	out, _ = cli(t, eps, exitUnavailable, "status", "--timeout=2s")
	mustMatch(t, "status with a node down", out, `(?m)^\? +127\.0\.0\.1:\d+ +- +unreachable: connection refused`)
}

func TestUnavailable(t *testing.T) {
	c, eps := startCluster(t)
	for _, id := range c.IDs() {
		c.Stop(id)
	}
	_, errOut := cli(t, eps, exitUnavailable, "put", "k", "v", "--timeout=1s")
	mustMatch(t, "put to a stopped cluster", errOut, `^cairn put: cluster unavailable: no answer within 1s .*nothing was applied`)
	_, errOut = cli(t, eps, exitUnavailable, "get", "k", "--timeout=1s")
	if strings.Contains(errOut, "applied") {
		t.Errorf("a read's message talks of applying: %q", errOut)
	}
}

func TestBench(t *testing.T) {
	_, eps := startCluster(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"put", []string{"--clients", "4", "--ops", "200"}},
		{"get-lin", []string{"--clients", "4", "--ops", "200", "--read-fraction", "1", "--preload", "--keys", "50"}},
		{"get-ser", []string{"--clients", "4", "--ops", "200", "--read-fraction", "1", "--read-level", "serializable", "--keys", "50"}},
	} {
		path := filepath.Join(dir, tc.name+".json")
		args := append([]string{"bench", "--progress", "off", "--workload", tc.name, "--json", path,
			"--server-pids", fmt.Sprint(os.Getpid())}, tc.args...)
		out, _ := cli(t, eps, 0, args...)
		if !strings.Contains(out, tc.name) {
			t.Errorf("%s: summary does not name the workload:\n%s", tc.name, out)
		}
		res, err := loadgen.ReadResult(path)
		if err != nil {
			t.Fatal(err)
		}
		if res.Target != "cairn" || res.Ops != 200 || res.Errors != 0 || res.Latency.P50US <= 0 || res.ServerCPU == nil {
			t.Errorf("%s: result %+v", tc.name, res)
		}
		if tc.name == "get-lin" && res.Misses != 0 {
			t.Errorf("%s: %d misses after preload", tc.name, res.Misses)
		}
	}
}

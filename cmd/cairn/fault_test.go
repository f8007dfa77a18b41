package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/adminpb"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

// faultCLI runs cairn fault ARGS against the node at addr and checks its
// exit code.
func faultCLI(t *testing.T, addr string, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	full := append(append([]string{"fault"}, args...), "--endpoint", addr, "--timeout=20s")
	code, stdout, stderr := runCLI(t, "", full...)
	if code != wantCode {
		t.Fatalf("cairn fault %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	return stdout, stderr
}

// faultShowJSON is fault show's JSON output.
type faultShowJSON struct {
	Endpoint       string     `json:"endpoint"`
	Node           uint64     `json:"node"`
	FaultInjection bool       `json:"fault_injection"`
	Network        []ruleJSON `json:"network"`
	Disk           *diskJSON  `json:"disk"`
}

func showJSON(t *testing.T, addr string) faultShowJSON {
	t.Helper()
	out, _ := faultCLI(t, addr, 0, "show", "-w", "json")
	var v faultShowJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Endpoint != addr || v.Network == nil || v.Disk == nil {
		t.Fatalf("fault show -w json = %s (%v)", out, err)
	}
	return v
}

// inForce is what node id itself (not the CLI) says is in force.
func inForce(t *testing.T, c *testcluster.Cluster, id raft.NodeID) ([]*adminpb.FaultRule, *adminpb.DiskFaults) {
	t.Helper()
	st, err := c.Node(id).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.GetFaults(), st.GetDiskFaults()
}

func TestFault(t *testing.T) {
	// Nodes 1 and 2 allow fault injection, node 3 does not.
	c := testcluster.Start(t, testcluster.Options{
		Configure: func(cfg *server.Config) { cfg.EnableFaultInjection = cfg.NodeID != 3 },
	})
	addr := c.ClientAddr(1)
	head := regexp.QuoteMeta("node 1 ("+addr+"): fault injection enabled") + `\n`

	out, _ := faultCLI(t, addr, 0, "show")
	mustMatch(t, "show, healthy", out, `^`+head+`network: no rules \(healthy\)\ndisk: no faults \(healthy\)\n$`)

	// A cut: both directions, every peer, and show reports it.
	cut := `^` + head + `network: 2 rules\nPEER +DIRECTION +LOSS +DUPLICATE +DELAY +JITTER\n` +
		`all +outbound +1 +0 +0s +0s\nall +inbound +1 +0 +0s +0s\ndisk: no faults \(healthy\)\n$`
	out, _ = faultCLI(t, addr, 0, "net", "--cut")
	mustMatch(t, "net --cut", out, cut)
	out, _ = faultCLI(t, addr, 0, "show")
	mustMatch(t, "show after net --cut", out, cut)
	want := []ruleJSON{{Direction: "outbound", Loss: 1}, {Direction: "inbound", Loss: 1}}
	if v := showJSON(t, addr); v.Node != 1 || !v.FaultInjection || !reflect.DeepEqual(v.Network, want) || *v.Disk != (diskJSON{}) {
		t.Errorf("show -w json after net --cut = %+v", v)
	}
	if rules, _ := inForce(t, c, 1); len(rules) != 2 || rules[0].GetLoss() != 1 || rules[1].GetLoss() != 1 {
		t.Errorf("node 1's rules after net --cut: %v", rules)
	}

	// net replaces every rule in force.
	out, _ = faultCLI(t, addr, 0, "net", "--peer", "2", "--direction", "outbound", "--loss", "0.25", "--duplicate", "0.5",
		"--delay", "20ms", "--jitter", "5ms", "-w", "json")
	var v faultShowJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil ||
		!reflect.DeepEqual(v.Network, []ruleJSON{{Peer: 2, Direction: "outbound", Loss: 0.25, Duplicate: 0.5, DelayMs: 20, JitterMs: 5}}) {
		t.Errorf("net --peer 2 ... -w json = %s (%v)", out, err)
	}
	out, _ = faultCLI(t, addr, 0, "show")
	mustMatch(t, "show after a one-rule net", out, `(?m)^network: 1 rule\n.*\n2 +outbound +0\.25 +0\.5 +20ms +5ms\n`)

	// A full disk, then a slow one (replacing it); the network rule stays.
	out, _ = faultCLI(t, addr, 0, "disk", "--full")
	mustMatch(t, "disk --full", out, `(?m)^disk: full \(writes fail with ENOSPC\)\n\z`)
	out, _ = faultCLI(t, addr, 0, "show")
	mustMatch(t, "show after disk --full", out, `(?m)^network: 1 rule\n(.*\n){2}disk: full \(writes fail with ENOSPC\)\n\z`)
	if v := showJSON(t, addr); len(v.Network) != 1 || *v.Disk != (diskJSON{NoSpace: true}) {
		t.Errorf("show -w json after disk --full = %+v", v)
	}
	if _, d := inForce(t, c, 1); !d.GetNoSpace() {
		t.Errorf("node 1's disk faults after disk --full: %v", d)
	}
	out, _ = faultCLI(t, addr, 0, "disk", "--write-delay", "2ms", "--sync-delay", "3ms")
	mustMatch(t, "disk delays", out, `(?m)^disk: write delay 2ms, sync delay 3ms\n\z`)

	// Bad values: exit 7, before any RPC, and nothing changes.
	rules, disk := inForce(t, c, 1)
	for _, args := range [][]string{
		{"net", "--loss", "1.5"},
		{"net", "--loss", "-0.1"},
		{"net", "--duplicate", "2"},
		{"net", "--loss", "NaN"},
		{"net", "--delay", "-5ms"},
		{"net", "--delay", "1500us"},
		{"net", "--jitter", "-1ms"},
		{"net", "--jitter", "0.5ms"},
		{"net", "--cut", "--direction", "sideways"},
		{"net", "--cut", "--loss", "0.5"},
		{"disk", "--write-delay", "-1ms"},
		{"disk", "--sync-delay", "1.5ms"},
		{"disk", "--sync-delay", "11s"},
	} {
		_, errOut := faultCLI(t, addr, exitInvalid, args...)
		mustMatch(t, strings.Join(args, " "), errOut, `^cairn fault `+args[0]+`: invalid request: --\S+ .*; nothing changed\n$`)
		// Nothing listens on port 1: refused before dialling, or it would be 5.
		faultCLI(t, "127.0.0.1:1", exitInvalid, args...)
	}
	if r, d := inForce(t, c, 1); !slicesEqualProto(r, rules) || !proto.Equal(d, disk) {
		t.Errorf("invalid fault commands changed node 1's faults: %v %v, was %v %v", r, d, rules, disk)
	}

	// Command-line mistakes: exit 2.
	for _, args := range [][]string{
		{"fault", "show"},                                   // no --endpoint
		{"fault", "net", "--endpoint", addr},                // nothing to set
		{"fault", "disk", "--endpoint", addr},               // nothing to set
		{"fault", "net", "--endpoint", addr, "--loss", "x"}, // not a number
		{"fault", "frobnicate", "--endpoint", addr},
	} {
		if code, _, errOut := runCLI(t, "", args...); code != exitUsage || !strings.HasPrefix(errOut, "cairn fault") {
			t.Errorf("%v: exit %d, stderr %q; want %d", args, code, errOut, exitUsage)
		}
	}

	// heal clears both.
	healthy := `^` + head + `network: no rules \(healthy\)\ndisk: no faults \(healthy\)\n$`
	out, _ = faultCLI(t, addr, 0, "heal")
	mustMatch(t, "heal", out, healthy)
	out, _ = faultCLI(t, addr, 0, "show")
	mustMatch(t, "show after heal", out, healthy)
	if v := showJSON(t, addr); len(v.Network) != 0 || *v.Disk != (diskJSON{}) {
		t.Errorf("show -w json after heal = %+v", v)
	}
	if r, d := inForce(t, c, 1); len(r) != 0 || d != nil {
		t.Errorf("node 1's faults after heal: %v %v", r, d)
	}

	// A node without fault injection: show says so; changes are refused
	// with a message naming the flag, exit 7.
	addr3 := c.ClientAddr(3)
	out, _ = faultCLI(t, addr3, 0, "show")
	mustMatch(t, "show on node 3", out, `^node 3 \(`+regexp.QuoteMeta(addr3)+`\): fault injection disabled \(start the node with cairn server --enable-fault-injection to set faults\)\n$`)
	if v := showJSON(t, addr3); v.FaultInjection || len(v.Network) != 0 {
		t.Errorf("show -w json on node 3 = %+v", v)
	}
	for _, args := range [][]string{{"net", "--cut"}, {"disk", "--full"}, {"heal"}} {
		_, errOut := faultCLI(t, addr3, exitInvalid, args...)
		mustMatch(t, "node 3: "+args[0], errOut, `^cairn fault `+args[0]+`: the node at `+regexp.QuoteMeta(addr3)+
			` does not allow fault injection: start it with cairn server --enable-fault-injection \(tests and chaos runs only\); nothing changed\n$`)
	}

	// An unreachable node.
	_, errOut := faultCLI(t, "127.0.0.1:1", exitUnavailable, "show")
	mustMatch(t, "show, unreachable", errOut, `^cairn fault show: node unavailable at 127\.0\.0\.1:1 \(connection refused\)\n$`)
	_, errOut = faultCLI(t, "127.0.0.1:1", exitUnavailable, "net", "--cut")
	mustMatch(t, "net, unreachable", errOut, `; nothing changed\n$`)
}

func slicesEqualProto(a, b []*adminpb.FaultRule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

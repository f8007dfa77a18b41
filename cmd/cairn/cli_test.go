package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/client"
)

// Every command stops what it starts (clusters, clients, the demo's
// watcher and reader); goleak fails the package otherwise.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runCLI runs the cairn command line in-process and returns its exit code
// and output.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"put", "k"},
		{"get"},
		{"get", "k", "extra"},
		{"get", "k", "--consistency", "eventual"},
		{"get", "k", "--output", "yaml"},
		{"cas", "k", "v"},
		{"cas", "k", "v", "--expect-absent", "--expect-version", "3"},
		{"scan", "a", "b", "--prefix"},
		{"scan", "--limit", "-1"},
		{"frobnicate"},
		{"get", "k", "--no-such-flag"},
		{"bench", "--target", "redis"},
		{"bench", "--clients", "-3"},
	} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if !strings.HasPrefix(stderr, "cairn") {
			t.Errorf("%v: stderr %q does not name the command", args, stderr)
		}
	}
}

func TestUnreachableCluster(t *testing.T) {
	// Nothing listens on port 1.
	code, _, stderr := runCLI(t, "", "put", "k", "v", "--endpoints", "127.0.0.1:1", "--timeout", "300ms")
	if code != exitUnavailable {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUnavailable, stderr)
	}
	for _, want := range []string{"cairn put: cluster unavailable", "127.0.0.1:1", "nothing was applied"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	code, stdout, _ := runCLI(t, "", "status", "--endpoints", "127.0.0.1:1", "--timeout", "300ms")
	if code != exitUnavailable || !strings.Contains(stdout, "unreachable") {
		t.Errorf("status: exit %d, stdout %q", code, stdout)
	}
}

func TestDescribe(t *testing.T) {
	g := &globals{endpoints: []string{"a:1"}, timeout: 1}
	cur := &client.KeyValue{Key: []byte("k"), Value: []byte("old"), Version: 7}
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{fmt.Errorf("client: get: %w", client.ErrKeyNotFound), exitNotFound, "not found"},
		{&client.CASFailedError{Key: []byte("k"), Current: cur}, exitCASFailed, "k is at version 7 with value old"},
		{&client.CASFailedError{Key: []byte("k")}, exitCASFailed, "k is absent"},
		{&client.InvalidArgumentError{Message: "key too large", Limit: "max_key_size", LimitValue: 4096, Actual: 5000},
			exitInvalid, "max_key_size is 4096 bytes, found 5000"},
		{&client.OutcomeUnknownError{Op: "put", Err: context.DeadlineExceeded}, exitOutcomeUnknown, "may or may not have been applied"},
		{fmt.Errorf("x: %w", client.ErrUnavailable), exitUnavailable, "cluster unavailable"},
		{context.Canceled, exitInterrupted, "interrupted"},
		{errors.New("boom"), exitFailure, "boom"},
	} {
		msg, code := describe(tc.err, g, true)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("describe(%v) = %q, %d; want %q, %d", tc.err, msg, code, tc.want, tc.code)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"put a 1", []string{"put", "a", "1"}},
		{`  put   "a b"  "x\ty" `, []string{"put", "a b", "x\ty"}},
		{`put k ""`, []string{"put", "k", ""}},
	} {
		got, err := splitArgs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := splitArgs(`put "a`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a", "b"}, {"ab", "ac"}, {"a\xff", "b"}, {"\xff\xff", ""}, {"", ""},
	} {
		if got := string(prefixEnd([]byte(tc.in))); got != tc.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrintableAndJSONBytes(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "a b": "a b", " a": `" a"`, "": `""`, "\x00": `"\x00"`, "é": "é"} {
		if got := printable([]byte(in)); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"abc": `"abc"`, "\xff": `{"base64":"/w=="}`} {
		got, _ := jsonBytes(in).MarshalJSON()
		if string(got) != want {
			t.Errorf("jsonBytes(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 64 << 20: "64MiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

// leaderOf (a test helper) is the leader the reachable nodes report: the node that says
// it leads in the highest term (an old leader cut off from the others may
// still believe it leads, in an older term).
func leaderOf(st []nodeStatus) (id, term uint64) {
	for _, s := range st {
		if s.Err == "" && s.Role == "leader" && s.Term > term {
			id, term = s.Node, s.Term
		}
	}
	return id, term
}

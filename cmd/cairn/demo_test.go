package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoScript drives `cairn demo` through a pipe, as a newcomer's
// session would go: write, read, kill the leader, write and read again
// (a new leader takes over), restart the killed node, look at the status.
func TestDemoScript(t *testing.T) {
	script := `# a comment
put greeting hello
get greeting
kill leader
put after-kill "still works"
get after-kill
get greeting serializable
restart
status
scan
leader
quit
put never reached
`
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"demo", "--base-port", "0"}, strings.NewReader(script), &out, &errb)
	transcript := out.String()
	t.Logf("transcript:\n%s", transcript)
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errb.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^cairn demo: 3 nodes on 127\.0\.0\.1, data in .* \(removed on exit\)`),
		regexp.MustCompile(`(?m)^> put greeting hello\n(\* leader: node \d \(term \d+\)\n)?OK version \d+`),
		regexp.MustCompile(`(?m)^> get greeting\n(\* .*\n)*hello \(version \d+, linearizable read from node \d`),
		regexp.MustCompile(`(?m)^> kill leader\n(\* .*\n)*node \d killed$`),
		regexp.MustCompile(`(?m)^> put after-kill "still works"\n(\* .*\n)*OK version \d+`),
		regexp.MustCompile(`(?m)^> get after-kill\n(\* .*\n)*still works \(version \d+`),
		regexp.MustCompile(`(?m)^> get greeting serializable\n(\* .*\n)*hello \(version \d+, serializable read`),
		regexp.MustCompile(`(?m)^> restart\n(\* .*\n)*node \d restarted$`),
		regexp.MustCompile(`(?m)^> scan\n(\* .*\n)*KEY +VERSION +VALUE\nafter-kill +\d+ +still works\ngreeting +\d+ +hello\n\(2 keys\)`),
		regexp.MustCompile(`(?m)^> leader\n(\* .*\n)*node \d leads, term \d+$`),
		regexp.MustCompile(`(?m)^stopping the cluster$`),
	} {
		if !want.MatchString(transcript) {
			t.Errorf("transcript does not match %s", want)
		}
	}
	if strings.Contains(transcript, "never reached") || strings.Contains(transcript, "error:") {
		t.Errorf("transcript has an error or ran past quit")
	}
	// The watcher announced the first leader and, after the kill, a new one.
	if n := len(regexp.MustCompile(`(?m)^\* leader: node \d`).FindAllString(transcript, -1)); n < 2 {
		t.Errorf("%d leader announcements, want at least 2", n)
	}
	// After the restart every node is up again: three rows with a role, one leader.
	status := transcript[strings.Index(transcript, "> status"):strings.Index(transcript, "> scan")]
	if got := len(regexp.MustCompile(`(?m)^\d +127\.0\.0\.1:\d+ +1 +(leader|follower)`).FindAllString(status, -1)); got != 3 {
		t.Errorf("status shows %d live nodes, want 3:\n%s", got, status)
	}
	if got := strings.Count(status, " leader "); got != 1 {
		t.Errorf("status shows %d leaders, want 1:\n%s", got, status)
	}
}

// TestDemoPartition cuts the leader off: the others elect a new leader in
// a higher term, writes go on through it, and heal brings the old leader
// back as a follower.
func TestDemoPartition(t *testing.T) {
	script := `put k v1
partition leader
put k v2
get k
status
heal
put k v3
get k serializable
quit
`
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(t.Context(), []string{"demo", "--base-port", "0"}, strings.NewReader(script), &out, &errb)
	transcript := out.String()
	t.Logf("transcript (%v):\n%s", time.Since(start), transcript)
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errb.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^> partition leader\n(\* .*\n)*node \d cut off from the other nodes$`),
		regexp.MustCompile(`(?m)^> put k v2\n(\* .*\n)*OK version \d+`),
		regexp.MustCompile(`(?m)^> get k\n(\* .*\n)*v2 \(version`),
		regexp.MustCompile(`(?m)^\d .* (leader|follower|pre-candidate|candidate) \(cut off\)`),
		regexp.MustCompile(`(?m)^> heal\n(\* .*\n)*every link restored, every disk healthy$`),
		regexp.MustCompile(`(?m)^> put k v3\n(\* .*\n)*OK version \d+`),
	} {
		if !want.MatchString(transcript) {
			t.Errorf("transcript does not match %s", want)
		}
	}
	if strings.Contains(transcript, "error:") {
		t.Errorf("transcript has an error")
	}
}

// TestDemoDisk fills the leader's disk: writes go on (the full leader
// hands off), status shows the full disk, a slow disk and a bad command
// are answered, and heal makes every disk healthy again.
func TestDemoDisk(t *testing.T) {
	script := `put k v1
disk full leader
put k v2
status
disk slow 1 50
disk ok 1
disk bogus 1
heal
put k v3
get k
quit
`
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(t.Context(), []string{"demo", "--base-port", "0"}, strings.NewReader(script), &out, &errb)
	transcript := out.String()
	t.Logf("transcript (%v):\n%s", time.Since(start), transcript)
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errb.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^> disk full leader\n(\* .*\n)*node \d's disk is full$`),
		regexp.MustCompile(`(?m)^> put k v2\n(\* .*\n)*OK version \d+`),
		regexp.MustCompile(`(?m)^\d .*\(disk full\)`),
		regexp.MustCompile(`(?m)^> disk slow 1 50\n(\* .*\n)*node 1's disk is slow \(50ms per fsync\)$`),
		regexp.MustCompile(`(?m)^> disk ok 1\n(\* .*\n)*node 1's disk is healthy$`),
		regexp.MustCompile(`(?m)^> disk bogus 1\n(\* .*\n)*error: disk bogus: want full, slow or ok$`),
		regexp.MustCompile(`(?m)^> heal\n(\* .*\n)*every link restored, every disk healthy$`),
		regexp.MustCompile(`(?m)^> get k\n(\* .*\n)*v3 \(version`),
	} {
		if !want.MatchString(transcript) {
			t.Errorf("transcript does not match %s", want)
		}
	}
}

package loadgen

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want int64
		bad  bool
	}{
		{
			name: "plain",
			stat: "1234 (etcd) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 12 0 100 0 0",
			want: 325,
		},
		{
			name: "command name with spaces and parentheses",
			stat: "42 (a (weird) name) R 1 42 42 0 -1 0 0 0 0 0 7 3 100 100 20 0 1 0",
			want: 10,
		},
		{name: "truncated", stat: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 7", bad: true},
		{name: "no command", stat: "42 x R 1", bad: true},
		{name: "not a number", stat: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 7x 3", bad: true},
		{name: "negative", stat: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 -7 3", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if tc.bad {
				if err == nil {
					t.Fatalf("parseStatCPU = %d, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStatCPU = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestProcessCPUOfSelfGrows(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn about 100ms of CPU; /proc's resolution is 10ms.
	x := 0
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
		for i := range 1000 {
			x += i
		}
	}
	_ = x
	after, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time went from %v to %v after burning CPU", before, after)
	}
	if self := selfCPU(); self < after-time.Second {
		t.Errorf("getrusage says %v, /proc says %v", self, after)
	}
}

func TestProcessCPUOfMissingProcess(t *testing.T) {
	// PIDs are at most 2^22 on Linux.
	_, err := ProcessCPU(1 << 30)
	if !errors.Is(err, ErrProcStat) {
		t.Fatalf("err = %v, want ErrProcStat", err)
	}
}

func TestServerCPUPer1kOps(t *testing.T) {
	before := cpuSnapshot{10: time.Second, 20: 2 * time.Second}
	after := cpuSnapshot{10: 3 * time.Second, 20: 2500 * time.Millisecond}
	c := serverCPU([]int{10, 20, 30}, before, after, 5000, errors.New("pid 30 gone"))
	if c.Seconds != 2.5 || c.PerPID[10] != 2 || c.PerPID[20] != 0.5 {
		t.Errorf("got %+v, want 2.5s = 2s + 0.5s", c)
	}
	if _, ok := c.PerPID[30]; ok {
		t.Errorf("pid 30 was never read but has a figure: %+v", c)
	}
	if c.SecondsPer1kOps != 0.5 {
		t.Errorf("SecondsPer1kOps = %v, want 0.5", c.SecondsPer1kOps)
	}
	if c.Error == "" {
		t.Errorf("the read error is not reported")
	}
}

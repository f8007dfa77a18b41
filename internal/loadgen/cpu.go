package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrProcStat is returned (wrapped) by ProcessCPU when /proc/<pid>/stat cannot
// be read or parsed, for example because the process has exited.
var ErrProcStat = errors.New("loadgen: cannot read process CPU time")

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, which
// the Linux ABI fixes at 100 on every architecture Go supports (it is not the
// kernel's CONFIG_HZ; sysconf(_SC_CLK_TCK) returns this same constant).
const userHZ = 100

// ProcessCPU returns the CPU time (user + system, all threads, reaped
// children not included) consumed so far by process pid, read from
// /proc/<pid>/stat. Its resolution is 10ms.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: pid %d: %w", ErrProcStat, pid, err)
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("%w: pid %d: %w", ErrProcStat, pid, err)
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// parseStatCPU returns utime + stime, in clock ticks, from the contents of a
// /proc/<pid>/stat file:
//
//	pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
//	majflt cmajflt utime stime cutime cstime ...
//
// comm may itself contain spaces and parentheses, so fields are counted from
// the last ')'. utime and stime are fields 14 and 15 (1-based) of the whole
// line, so the 12th and 13th after comm.
func parseStatCPU(b []byte) (int64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	fields := bytes.Fields(b[end+1:])
	const utimeIdx, stimeIdx = 11, 12 // 0-based, after comm
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("%d fields after the command name, want at least %d", len(fields), stimeIdx+1)
	}
	var total int64
	for _, f := range [][]byte{fields[utimeIdx], fields[stimeIdx]} {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad CPU time field %q", f)
		}
		total += n
	}
	return total, nil
}

// selfCPU returns the CPU time (user + system) this process has consumed.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuSnapshot is the CPU time of each server process at one moment.
type cpuSnapshot map[int]time.Duration

func snapshotCPU(pids []int) (cpuSnapshot, error) {
	s := make(cpuSnapshot, len(pids))
	var errs []error
	for _, pid := range pids {
		d, err := ProcessCPU(pid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s[pid] = d
	}
	return s, errors.Join(errs...)
}

// ServerCPU is the CPU time the server processes consumed during the
// measured phase.
type ServerCPU struct {
	PIDs []int `json:"pids"`
	// Seconds is the sum over all PIDs; PerPID breaks it down.
	Seconds float64         `json:"seconds"`
	PerPID  map[int]float64 `json:"per_pid"`
	// SecondsPer1kOps is Seconds per 1,000 measured operations (successful
	// or not: a failed operation costs the server too).
	SecondsPer1kOps float64 `json:"seconds_per_1k_ops"`
	// Error is set if some process could not be read at the start or end
	// (it exited, say); the figures then cover only the others.
	Error string `json:"error,omitempty"`
}

func serverCPU(pids []int, before, after cpuSnapshot, ops int64, readErr error) *ServerCPU {
	c := &ServerCPU{PIDs: pids, PerPID: make(map[int]float64, len(pids))}
	for _, pid := range pids {
		b, ok1 := before[pid]
		a, ok2 := after[pid]
		if !ok1 || !ok2 {
			continue
		}
		s := (a - b).Seconds()
		c.PerPID[pid] = s
		c.Seconds += s
	}
	if ops > 0 {
		c.SecondsPer1kOps = c.Seconds / float64(ops) * 1000
	}
	if readErr != nil {
		c.Error = readErr.Error()
	}
	return c
}

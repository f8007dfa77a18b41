package chaos

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr puts a server process in a process group of its own (a
// Ctrl-C in the terminal reaches the runner alone, not the servers while
// the runner still watches them) and has the kernel kill it if the
// process that started it dies without killing it, so that no server
// outlives its runner.
//
// Pdeathsig fires when the OS thread that forked the child exits; Go ends
// a thread only when a goroutine locked to it (runtime.LockOSThread) exits
// without unlocking, which nothing in a runner or its tests does.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

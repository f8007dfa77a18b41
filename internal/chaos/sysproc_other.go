//go:build !linux

package chaos

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr puts a server process in a process group of its own, so
// that a Ctrl-C in the terminal reaches the runner alone, not the servers
// while the runner still watches them. (Only on Linux does the kernel
// also kill the servers if the runner dies without killing them.)
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill a server if this tool dies without
// stopping it (a panic, or SIGKILL).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

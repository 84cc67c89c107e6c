//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing outside Linux: servers are still stopped by
// PID when the run ends.
func setDeathSignal(*exec.Cmd) {}

//go:build !linux

package apikeystest

import "os/exec"

// setDeathSignal does nothing outside Linux: servers are still killed in
// t.Cleanup.
func setDeathSignal(*exec.Cmd) {}

// Package secretfiletest helps tests that read secret files checked into the
// repository. A checkout made under umask 002 (the default for users with a
// private group on Debian and Ubuntu) leaves them group-writable, which
// secretfile.Read rightly refuses; the tests should not fail for it.
package secretfiletest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/secretfile"
)

// ProtectFixtures removes group and other write permission from every file
// matching the glob patterns, as an operator is told to do with a real
// secret. It changes nothing else and reports the first failure.
func ProtectFixtures(patterns ...string) error {
	for _, pattern := range patterns {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("secretfiletest: %s: %w", pattern, err)
		}
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("secretfiletest: %w", err)
			}
			if perm := fi.Mode().Perm(); perm&0o022 != 0 {
				if err := os.Chmod(p, perm&^0o022); err != nil {
					return fmt.Errorf("secretfiletest: %w", err)
				}
			}
		}
	}
	return nil
}

// Unsafe is a secret file that secretfile.Read must refuse, and the error it
// must match.
type Unsafe struct {
	Name string // what is wrong with it, for t.Run
	Path string
	Want error
}

// UnsafeFiles makes, in a temporary directory, one file of every kind a
// secret must not be: a directory, a FIFO (which must not block the
// reader), a file over the size limit, and group- and world-writable files.
// Each consumer of secret files runs its own loader over them to prove that
// the error names its configuration key.
func UnsafeFiles(t testing.TB) []Unsafe {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name string, size int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return []Unsafe{
		{"directory", dir, secretfile.ErrNotRegular},
		{"FIFO", fifo, secretfile.ErrNotRegular},
		{"10 MiB file", write("huge", 10<<20, 0o600), secretfile.ErrTooLarge},
		{"group-writable file", write("gw", 100, 0o660), secretfile.ErrWritable},
		{"world-writable file", write("ww", 100, 0o602), secretfile.ErrWritable},
	}
}

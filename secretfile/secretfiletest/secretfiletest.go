// Package secretfiletest helps tests that read secret files checked into the
// repository. A checkout made under umask 002 (the default for users with a
// private group on Debian and Ubuntu) leaves them group-writable, which
// secretfile.Read rightly refuses; the tests should not fail for it.
package secretfiletest

import (
	"fmt"
	"os"
	"path/filepath"
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

package config

import (
	"fmt"
	"os"
	"testing"

	"github.com/extauthz/extauthz/secretfile/secretfiletest"
)

func TestMain(m *testing.M) {
	// The secret fixtures must not be group-writable, whatever the umask
	// of the checkout.
	if err := secretfiletest.ProtectFixtures("testdata/*secret*.txt"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

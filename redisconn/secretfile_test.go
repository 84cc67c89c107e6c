package redisconn_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/redisconn"
	"github.com/extauthz/extauthz/secretfile"
)

// TestOptions_RefusesUnsafePasswordFile: the password file must be a small
// regular file nobody else can write; the error names password_file.
func TestOptions_RefusesUnsafePasswordFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	groupWritable := filepath.Join(dir, "gw")
	if err := os.WriteFile(groupWritable, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(groupWritable, 0o660); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, make([]byte, 10<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       error
	}{
		{"directory", dir, secretfile.ErrNotRegular},
		{"FIFO", fifo, secretfile.ErrNotRegular},
		{"10 MiB file", huge, secretfile.ErrTooLarge},
		{"group-writable file", groupWritable, secretfile.ErrWritable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.Options(redisconn.Config{Addrs: []string{"r:1"}, PasswordFile: tt.path}, redisconn.OptionsOverrides{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Options = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "password_file: ") {
				t.Errorf("error %q does not start with password_file", err)
			}
		})
	}
}

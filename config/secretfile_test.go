package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/secretfile"
)

// TestTLS_RefusesUnsafeKeyFile: check-config refuses a TLS private key that
// is not a small regular file nobody else can write, naming the key.
func TestTLS_RefusesUnsafeKeyFile(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.crt")
	if err := os.WriteFile(cert, []byte("certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
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
	tests := []struct {
		name, key string
		want      error
	}{
		{"private key 0600", write("ok.key", 100, 0o600), nil},
		{"directory", dir, secretfile.ErrNotRegular},
		{"FIFO", fifo, secretfile.ErrNotRegular},
		{"10 MiB file", write("huge.key", 10<<20, 0o600), secretfile.ErrTooLarge},
		{"group-writable file", write("gw.key", 100, 0o660), secretfile.ErrWritable},
		{"world-writable file", write("ww.key", 100, 0o602), secretfile.ErrWritable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TLS{CertFile: cert, KeyFile: tt.key}.validate()
			if !errors.Is(err, tt.want) {
				t.Fatalf("validate = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "listen.tls.key_file: ") {
				t.Errorf("error %q does not start with listen.tls.key_file", err)
			}
		})
	}
}

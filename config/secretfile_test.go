package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/secretfile/secretfiletest"
)

// TestTLS_RefusesUnsafeKeyFile: check-config refuses a TLS private key that
// is not a small regular file nobody else can write, naming the key.
func TestTLS_RefusesUnsafeKeyFile(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.crt")
	if err := os.WriteFile(cert, []byte("certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "ok.key")
	if err := os.WriteFile(key, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key string
		want      error
	}{
		{"private key 0600", key, nil},
	}
	for _, u := range secretfiletest.UnsafeFiles(t) {
		tests = append(tests, struct {
			name, key string
			want      error
		}{u.Name, u.Path, u.Want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TLS{CertFile: cert, KeyFile: tt.key}.Validate("listen.tls")
			if !errors.Is(err, tt.want) {
				t.Fatalf("validate = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "listen.tls.key_file: ") {
				t.Errorf("error %q does not start with listen.tls.key_file", err)
			}
		})
	}
}

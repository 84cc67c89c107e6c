package introspect

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/secretfile"
)

// TestNew_RefusesUnsafeClientSecretFile: the client secret file must be a
// small regular file nobody else can write; the error names the config key.
func TestNew_RefusesUnsafeClientSecretFile(t *testing.T) {
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
			cfg := Config{Endpoint: "https://idp.test/introspect", ClientID: "extauthz", ClientSecretFile: tt.path, Timeout: 200 * time.Millisecond}
			_, err := New(context.Background(), cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "client_secret_file") {
				t.Errorf("error %q does not name client_secret_file", err)
			}
		})
	}
}

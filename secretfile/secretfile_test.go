package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int, mode fs.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("s", size)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		return p
	}
	good := write("good", 32, 0o400)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A Kubernetes secret volume: key -> ..data/key -> the real file.
	if err := os.Mkdir(filepath.Join(dir, "..2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("..2026/password", 16, 0o644)
	if err := os.Symlink("..2026", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	k8s := filepath.Join(dir, "password")
	if err := os.Symlink("..data/password", k8s); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink("nowhere", dangling); err != nil {
		t.Fatal(err)
	}
	linkToDir := filepath.Join(dir, "linkdir")
	if err := os.Symlink(dir, linkToDir); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		wantLen int
		wantErr error
	}{
		{"regular file 0400", good, 32, nil},
		{"world-readable 0644 (the Kubernetes default)", write("readable", 8, 0o644), 8, nil},
		{"symlinked Kubernetes secret", k8s, 16, nil},
		{"exactly 64 KiB", write("max", MaxBytes, 0o600), MaxBytes, nil},
		{"directory", dir, 0, ErrNotRegular},
		{"symlink to a directory", linkToDir, 0, ErrNotRegular},
		{"FIFO (would block)", fifo, 0, ErrNotRegular},
		{"device", "/dev/zero", 0, ErrNotRegular},
		{"10 MiB file", write("huge", 10<<20, 0o600), 0, ErrTooLarge},
		{"group-writable", write("gw", 8, 0o660), 0, ErrWritable},
		{"world-writable", write("ww", 8, 0o606), 0, ErrWritable},
		{"missing", filepath.Join(dir, "missing"), 0, fs.ErrNotExist},
		{"dangling symlink", dangling, 0, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read("api_keys.redis.password_file", tt.path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "api_keys.redis.password_file: ") || !strings.Contains(err.Error(), tt.path) {
					t.Errorf("error %q does not start with the config key and name the path", err)
				}
				if strings.Contains(err.Error(), "ssss") {
					t.Errorf("error %q contains the secret", err)
				}
				return
			}
			if diff := cmp.Diff(tt.wantLen, len(b)); diff != "" {
				t.Errorf("length mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

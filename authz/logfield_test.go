package authz

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLogField(t *testing.T) {
	long := strings.Repeat("a", maxLogField+10)
	tests := []struct {
		name, in, want string
	}{
		{"short ASCII unchanged", "/v1/models", "/v1/models"},
		{"valid UTF-8 unchanged", "/ünïcode/€", "/ünïcode/€"},
		{"invalid byte as %XX", "/a\xffb\x80", "/a%FFb%80"},
		{"control characters as %XX", "a\nb\x00c\x7f", "a%0Ab%00c%7F"},
		{"cut with a marker", long, strings.Repeat("a", maxLogField) + "…(+10 bytes)"},
		{"cut on a rune boundary", strings.Repeat("a", maxLogField-1) + "€x", strings.Repeat("a", maxLogField-1) + "…(+4 bytes)"},
		{"cut on an escape boundary", strings.Repeat("a", maxLogField-2) + "\xff", strings.Repeat("a", maxLogField-2) + "…(+1 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, logField(tt.in)); diff != "" {
				t.Errorf("logField(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { _ = logField("/v1/chat/completions/ünïcode") }); n != 0 {
		t.Errorf("logField of a short plain string allocates %v times, want 0", n)
	}
}

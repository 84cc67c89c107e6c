package config

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoad_SecureDefaults pins the defaults an operator who never reads the
// docs gets (docs/SECURITY.md "Defaults"): a config file that does not
// mention them keeps the credential away from the upstream, denies unrouted
// paths, listens on loopback only and bounds repeated denial lines.
func TestLoad_SecureDefaults(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "valid.yaml")) // sets none of these
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"headers.strip_credentials", c.Headers.StripCredentials, true},
		{"default_route", c.DefaultRoute, "deny"},
		{"listen.http", c.Listen.HTTP, "127.0.0.1:9002"},
		{"listen.admin", c.Listen.Admin, "127.0.0.1:9090"},
		{"log.denials_per_second", c.Log.DenialsPerSecond, 10},
		{"server.pprof", c.Server.Pprof, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("default mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/keysapi"
	"github.com/extauthz/extauthz/ratelimit"
)

// TestLoad_API loads the key API fixtures and asserts the exact messages a
// user sees for each mistake.
func TestLoad_API(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"api.yaml", nil},
		{"api_mistakes.yaml", []string{
			`config testdata/api_mistakes.yaml: listen.api: "9003" must be host:port, e.g. 127.0.0.1:9001 or 0.0.0.0:9001 (in a pod)`,
			`api.max_ttl: must be positive (or absent for 24h), e.g. 24h`,
			`api.max_keys_per_owner: must be at least 1 (or absent for 20), e.g. 20`,
			`api.mint_rate_limit.requests: 0 must be between 1 and 1000000, e.g. 60`,
			`api.exchange.default_ttl: must not exceed max_ttl (1h0m0s); lower it or raise max_ttl`,
			`api.exchange.ttl_by_role.agnet: unknown role; define it under roles or remove the entry`,
			`api.exchange.ttl_by_role.viewer: must be positive, e.g. 2m`,
		}},
		{"api_misspelled.yaml", []string{
			`config testdata/api_misspelled.yaml: line 6: unknown key "ttl_per_role" in api.exchange: check its spelling and indentation (the README lists every key)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoad_APIDefaultsAndValues(t *testing.T) {
	cfg, err := Load("testdata/api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := keysapi.Config{
		Exchange: keysapi.ExchangeConfig{
			DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour,
			TTLByRole: map[string]time.Duration{"agent": 2 * time.Minute, "developer": 15 * time.Minute, "admin": time.Hour},
		},
		MaxTTL:          8 * time.Hour,
		MaxKeysPerOwner: keysapi.DefaultMaxKeysPerOwner,
		MintRateLimit:   ratelimit.Limit{Requests: 5, Per: time.Minute},
	}
	if diff := cmp.Diff(want, cfg.API); diff != "" || cfg.Listen.API != "127.0.0.1:9003" {
		t.Errorf("api (-want +got):\n%s listen.api=%q", diff, cfg.Listen.API)
	}
	def, err := Load("testdata/peer_identity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keysapi.Default(), def.API); diff != "" || def.Listen.API != "" {
		t.Errorf("without an api section (-want +got):\n%s listen.api=%q", diff, def.Listen.API)
	}
}

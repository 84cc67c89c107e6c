package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoad_IdentitySourceMistakes loads one fixture per peer_identity or
// HMAC provider mistake and asserts the exact messages a user sees.
func TestLoad_IdentitySourceMistakes(t *testing.T) {
	short := filepath.Join("testdata", "hmac_short_secret.txt") // resolved against the config's directory
	tests := []struct {
		file string
		want []string // every message, in order
	}{
		{"peer_identity.yaml", nil},
		{"hmac_provider.yaml", nil},
		{"peer_identity_mistakes.yaml", []string{
			`config testdata/peer_identity_mistakes.yaml: peer_identity.rules[0].principal: "*" matches peers of every trust domain: name at least the scheme and trust domain, e.g. spiffe://cluster.local/ns/agents/*`,
			`peer_identity.rules[1].principal: "spiffe://cluster.local/*/sa/summarizer": * is allowed only as the last character (it matches any suffix)`,
			`peer_identity.rules[2].roles[0]: role "agnet" is not defined under roles: define it or fix the spelling`,
		}},
		{"peer_identity_misspelled.yaml", []string{
			`config testdata/peer_identity_misspelled.yaml: line 6: unknown key "principle" in peer_identity.rules[0]: check its spelling and indentation (the README lists every key)`,
		}},
		{"hmac_short_secret.yaml", []string{
			"config testdata/hmac_short_secret.yaml: jwt.providers[0].hmac_secret_file: the secret in " + short + " is 21 bytes; at least 32 are required (generate one with: head -c 48 /dev/urandom | base64)",
			`jwt.providers[0].algorithms[1]: "RS256" is not allowed with hmac_secret_file: an HMAC provider accepts only HS256, HS384, HS512 (use a jwks_url, jwks_file or discovery provider for asymmetric keys)`,
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
			if err != nil && strings.Contains(err.Error(), "too-short-hmac-secret") {
				t.Errorf("the error leaks the secret: %v", err)
			}
		})
	}
}

func TestLoad_PeerIdentityReachesEngineConfig(t *testing.T) {
	cfg, err := Load("testdata/peer_identity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pi := cfg.Authz().PeerIdentity
	if !pi.Enabled || len(pi.Rules) != 1 || pi.Rules[0].Principal != "spiffe://cluster.local/ns/agents/*" {
		t.Errorf("Authz().PeerIdentity = %+v", pi)
	}
	hcfg, err := Load("testdata/hmac_provider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("testdata", "hmac_secret.txt")
	if got := hcfg.JWT.Providers[0].HMACSecretFile; got != want {
		t.Errorf("hmac_secret_file = %q, want %q (resolved against the config's directory)", got, want)
	}
}

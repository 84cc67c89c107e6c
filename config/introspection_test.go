package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/introspect"
)

func TestLoad_Introspection(t *testing.T) {
	cfg, err := Load("testdata/introspection.yaml")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	// Relative files resolve against the config file's directory.
	secret := filepath.Join("testdata", "introspection_secret.txt")
	want := &introspect.Config{
		Endpoint: "https://idp.example.com/oauth2/introspect", ClientID: "extauthz", ClientSecretFile: secret,
		Audiences: []string{"llm-gateway"},
		// The default 500ms does not fit in the default 300ms check_timeout:
		// two thirds of it.
		Timeout:  200 * time.Millisecond,
		CacheTTL: time.Minute, NegativeCacheTTL: 5 * time.Second, CacheSize: 10000,
		SubjectClaim: "sub", GroupsClaim: "groups", MaxTokenBytes: 4096,
		NegativeCacheSize: 10000, MaxConcurrent: 16, MaxRequestsPerSecond: 50, MaxRequestsBurst: 100,
	}
	if diff := cmp.Diff(want, cfg.Introspection); diff != "" {
		t.Errorf("introspection mismatch (-want +got):\n%s", diff)
	}
	for _, w := range cfg.Warnings() {
		if strings.Contains(w, "only public routes") {
			t.Errorf("warning with introspection configured: %s", w)
		}
	}
}

// TestLoad_IntrospectionMistakes asserts the exact messages of each
// introspection mistake.
func TestLoad_IntrospectionMistakes(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"introspection_mistakes.yaml", []string{
			`introspection.endpoint: "http://idp.example.com/oauth2/introspect" must use https (http is accepted only on a loopback address, for tests)`,
			"introspection.client_id: must be set: the client extauthz authenticates as at the endpoint",
			"introspection.client_secret_file: cannot be read: no such file or directory",
			"introspection.cache_size: -5 must be between 1 and 10000000",
			"introspection.max_requests_per_second: -1 must be above 0 and at most 1000000, e.g. 50 (the endpoint is never called faster)",
			"introspection.timeout: 1s must be below server.check_timeout (300ms), or a slow endpoint turns every uncached check into a timeout: e.g. 200ms with check_timeout 300ms",
		}},
		{"introspection_inline_secret.yaml", []string{
			`line 7: unknown key "client_secret" in introspection: check its spelling and indentation (the README lists every key)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatal("Load = nil, want an error")
			}
			prefix := "config " + filepath.Join("testdata", tt.file) + ": "
			got := strings.Split(strings.TrimPrefix(err.Error(), prefix), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

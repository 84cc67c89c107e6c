package introspect

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfig_Validate(t *testing.T) {
	secret := writeSecret(t, "s3cret")
	valid := func() Config {
		c := Config{Endpoint: "https://idp.example.com/introspect", ClientID: "extauthz", ClientSecretFile: secret}
		c.ApplyDefaults()
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"valid", func(*Config) {}, nil},
		{"http_on_loopback", func(c *Config) { c.Endpoint = "http://127.0.0.1:8080/introspect" }, nil},
		{"missing_everything", func(c *Config) { c.Endpoint, c.ClientID, c.ClientSecretFile = "", "", "" }, []string{
			"introspection.endpoint: must be set, e.g. https://idp.example.com/oauth2/introspect",
			"introspection.client_id: must be set: the client extauthz authenticates as at the endpoint",
			"introspection.client_secret_file: must be set: the client secret is read from a file (e.g. a mounted Secret), never inline",
		}},
		{"plain_http", func(c *Config) { c.Endpoint = "http://idp.example.com/introspect" }, []string{
			`introspection.endpoint: "http://idp.example.com/introspect" must use https (http is accepted only on a loopback address, for tests)`,
		}},
		{"credentials_in_url", func(c *Config) { c.Endpoint = "https://u:p@idp.example.com/" }, []string{
			`introspection.endpoint: "https://u:p@idp.example.com/" must not hold credentials: use client_id and client_secret_file`,
		}},
		{"bad_numbers", func(c *Config) {
			c.Timeout, c.CacheTTL, c.NegativeCacheTTL, c.CacheSize, c.MaxTokenBytes = 20*time.Second, time.Millisecond, -time.Second, -1, 1
		}, []string{
			"introspection.timeout: 20s must be between 1ms and 10s (and below server.check_timeout), e.g. 200ms",
			"introspection.cache_ttl: 1ms must be between 1s and 24h, e.g. 60s (revocation at the endpoint takes up to this long to reach extauthz)",
			"introspection.negative_cache_ttl: -1s must be between 1ms and 10m, e.g. 5s",
			"introspection.cache_size: -1 must be between 1 and 10000000",
			"introspection.max_token_bytes: 1 must be between 16 and 65536",
		}},
		{"bad_bounds", func(c *Config) {
			c.NegativeCacheSize, c.MaxConcurrent, c.MaxRequestsPerSecond, c.MaxRequestsBurst = -1, 5000, -1, 0
		}, []string{
			"introspection.negative_cache_size: -1 must be between 1 and 10000000",
			"introspection.max_concurrent: 5000 must be between 1 and 4096, e.g. 16",
			"introspection.max_requests_per_second: -1 must be above 0 and at most 1000000, e.g. 50 (the endpoint is never called faster)",
			"introspection.max_requests_burst: 0 must be between 1 and 1000000, e.g. 100",
		}},
		{"missing_files", func(c *Config) { c.ClientSecretFile, c.CAFile = "/nonexistent/secret", "/nonexistent/ca.pem" }, []string{
			"introspection.client_secret_file: cannot be read: no such file or directory",
			"introspection.ca_file: cannot be read: no such file or directory",
		}},
		{"empty_audience", func(c *Config) { c.Audiences = []string{"a", " "} }, []string{"introspection.audiences[1]: must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			var got []string
			if err := c.Validate("introspection"); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfig_ApplyDefaults(t *testing.T) {
	var c Config
	c.ApplyDefaults()
	want := Config{Timeout: 500 * time.Millisecond, CacheTTL: time.Minute, NegativeCacheTTL: 5 * time.Second, CacheSize: 10000, SubjectClaim: "sub", GroupsClaim: "groups", MaxTokenBytes: 4096,
		NegativeCacheSize: 10000, MaxConcurrent: 16, MaxRequestsPerSecond: 50, MaxRequestsBurst: 100}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
}

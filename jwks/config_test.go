package jwks

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func validProvider() ProviderConfig {
	p := ProviderConfig{
		Name:      "corp",
		Issuer:    "https://issuer.test",
		Audiences: []string{"llm-gateway"},
		JWKSURL:   "https://issuer.test/.well-known/jwks.json",
	}
	p.ApplyDefaults()
	return p
}

func TestDefault(t *testing.T) {
	want := Config{
		Leeway:        30 * time.Second,
		MaxTokenBytes: 8192,
		Cache:         CacheConfig{MaxEntries: 10000, MaxTTL: 5 * time.Minute},
	}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default mismatch (-want +got):\n%s", diff)
	}
	if err := Default().Validate("jwt"); err != nil {
		t.Errorf("Default().Validate(\"jwt\") = %v", err)
	}
}

func TestProviderConfig_ApplyDefaults(t *testing.T) {
	p := ProviderConfig{ClaimsToHeaders: map[string]string{"email": "X-Auth-Email"}}
	p.ApplyDefaults()
	want := ProviderConfig{
		RefreshInterval: 5 * time.Minute,
		FetchTimeout:    5 * time.Second,
		Algorithms:      []string{"RS256", "ES256", "EdDSA"},
		SubjectClaim:    "sub",
		GroupsClaim:     "groups",
		ClaimsToHeaders: map[string]string{"email": "x-auth-email"},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("ApplyDefaults mismatch (-want +got):\n%s", diff)
	}
	again := p
	again.ApplyDefaults()
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("ApplyDefaults is not idempotent:\n%s", diff)
	}
	kept := ProviderConfig{RefreshInterval: time.Minute, Algorithms: []string{"PS256"}, GroupsClaim: "roles"}
	kept.ApplyDefaults()
	if kept.RefreshInterval != time.Minute || kept.Algorithms[0] != "PS256" || kept.GroupsClaim != "roles" {
		t.Errorf("ApplyDefaults overwrote set fields: %+v", kept)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // every message, in order
	}{
		{"valid", func(c *Config) {}, nil},
		{"http on loopback is allowed", func(c *Config) {
			c.Providers[0].JWKSURL = "http://127.0.0.1:8080/jwks.json"
			c.Providers[0].Issuer = "http://[::1]:9000"
		}, nil},
		{"http on localhost is allowed", func(c *Config) { c.Providers[0].JWKSURL = "http://localhost/jwks" }, nil},
		{"jwks_file alone is allowed", func(c *Config) {
			c.Providers[0].JWKSURL = ""
			c.Providers[0].JWKSFile = "/etc/extauthz/jwks.json"
		}, nil},
		{"discovery with an https issuer is allowed", func(c *Config) {
			c.Providers[0].JWKSURL = ""
			c.Providers[0].Discovery = true
		}, nil},
		{"cache disabled ignores its sizes", func(c *Config) { c.Cache = CacheConfig{Disabled: true} }, nil},
		{"no providers is allowed", func(c *Config) { c.Providers = nil }, nil},

		{"jwks_url over http", func(c *Config) { c.Providers[0].JWKSURL = "http://issuer.test/jwks" }, []string{
			"jwt.providers[0].jwks_url: must use https (http is allowed only for 127.0.0.1, ::1 and localhost) (or set jwks_file for local keys)",
		}},
		{"jwks_url relative", func(c *Config) { c.Providers[0].JWKSURL = "/jwks.json" }, []string{
			"jwt.providers[0].jwks_url: must be an absolute https URL (or set jwks_file for local keys)",
		}},
		{"jwks_url with credentials", func(c *Config) { c.Providers[0].JWKSURL = "https://u:p@issuer.test/jwks" }, []string{
			"jwt.providers[0].jwks_url: must not contain credentials (or set jwks_file for local keys)",
		}},
		{"no key source", func(c *Config) { c.Providers[0].JWKSURL = "" }, []string{
			"jwt.providers[0]: set exactly one of jwks_url, jwks_file, discovery: true and hmac_secret_file (found 0)",
		}},
		{"two key sources", func(c *Config) { c.Providers[0].JWKSFile = "/k.json" }, []string{
			"jwt.providers[0]: set exactly one of jwks_url, jwks_file, discovery: true and hmac_secret_file (found 2)",
		}},
		{"discovery with a non-URL issuer", func(c *Config) {
			c.Providers[0].JWKSURL = ""
			c.Providers[0].Discovery = true
			c.Providers[0].Issuer = "corp-issuer"
		}, []string{
			"jwt.providers[0].issuer: discovery needs the issuer to be a URL: must be an absolute https URL (or set jwks_url)",
		}},
		{"ca_file with jwks_file", func(c *Config) {
			c.Providers[0].JWKSURL = ""
			c.Providers[0].JWKSFile = "/k.json"
			c.Providers[0].CAFile = "/ca.pem"
		}, []string{"jwt.providers[0].ca_file: only applies to jwks_url and discovery; remove it"}},
		{"HS256 and none", func(c *Config) { c.Providers[0].Algorithms = []string{"RS256", "HS256", "none"} }, []string{
			`jwt.providers[0].algorithms[1]: "HS256" is not allowed: none and HMAC (HS256, HS384, HS512) are never accepted with JWKS; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA`,
			`jwt.providers[0].algorithms[2]: "none" is not allowed: none and HMAC (HS256, HS384, HS512) are never accepted with JWKS; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA`,
		}},
		{"duplicate algorithm", func(c *Config) { c.Providers[0].Algorithms = []string{"RS256", "RS256"} }, []string{
			`jwt.providers[0].algorithms[1]: "RS256" is listed twice`,
		}},
		{"missing name, issuer and audiences", func(c *Config) {
			c.Providers[0].Name = ""
			c.Providers[0].Issuer = ""
			c.Providers[0].Audiences = nil
		}, []string{
			"jwt.providers[0].name: must be set (it names the provider in logs and metrics)",
			"jwt.providers[0].issuer: must be set to the exact iss value of the provider's tokens",
			"jwt.providers[0].audiences: must list at least one accepted aud value",
		}},
		{"bad name", func(c *Config) { c.Providers[0].Name = "Corp IdP" }, []string{
			`jwt.providers[0].name: "Corp IdP" must be 1-64 characters of a-z, 0-9, '-' and '_' (it is a metric label value)`,
		}},
		{"duplicate name and issuer", func(c *Config) {
			p := c.Providers[0]
			c.Providers = append(c.Providers, p)
		}, []string{
			`jwt.providers[1].name: "corp" is already used by jwt.providers[0]; names must be unique`,
			`jwt.providers[1].issuer: "https://issuer.test" is already used by jwt.providers[0]; a token's iss must select exactly one provider`,
		}},
		{"empty audience", func(c *Config) { c.Providers[0].Audiences = []string{"a", ""} }, []string{
			"jwt.providers[0].audiences[1]: must not be empty",
		}},
		{"durations", func(c *Config) {
			c.Providers[0].RefreshInterval = 100 * time.Millisecond
			c.Providers[0].FetchTimeout = -time.Second
			c.Leeway = -time.Second
		}, []string{
			"jwt.leeway: must be between 0s and 5m0s (it is the allowed clock skew)",
			"jwt.providers[0].refresh_interval: must be between 1s and 24h0m0s",
			"jwt.providers[0].fetch_timeout: must be greater than 0s and at most 1m0s",
		}},
		{"max_token_bytes out of range", func(c *Config) { c.MaxTokenBytes = 100 }, []string{
			"jwt.max_token_bytes: must be between 1024 and 65536 (a token travels in one HTTP header)",
		}},
		{"cache with zero entries", func(c *Config) { c.Cache.MaxEntries = 0; c.Cache.MaxTTL = 0 }, []string{
			"jwt.cache.max_entries: must be between 1 and 1000000 (set jwt.cache.disabled: true to turn the cache off)",
			"jwt.cache.max_ttl: must be between 1s and 1h0m0s",
		}},
		{"claim paths", func(c *Config) {
			c.Providers[0].SubjectClaim = "a..b"
			c.Providers[0].GroupsClaim = ".roles"
		}, []string{
			`jwt.providers[0].subject_claim: "a..b" has an empty path segment`,
			`jwt.providers[0].groups_claim: ".roles" has an empty path segment`,
		}},
		{"claims_to_headers", func(c *Config) {
			c.Providers[0].ClaimsToHeaders = map[string]string{
				"email":  "X-Email",
				"name":   "x auth name",
				"tenant": "authorization",
				"org":    "x-auth-tenant",
				"team":   "x-auth-tenant",
			}
		}, []string{
			`jwt.providers[0].claims_to_headers["email"]: header name "X-Email" must be a lower-case HTTP token (a-z, 0-9, and !#$%&'*+-.^_` + "`" + `|~)`,
			`jwt.providers[0].claims_to_headers["name"]: header name "x auth name" must be a lower-case HTTP token (a-z, 0-9, and !#$%&'*+-.^_` + "`" + `|~)`,
			`jwt.providers[0].claims_to_headers["team"]: header "x-auth-tenant" is already set from claim "org"; each header may carry one claim`,
			`jwt.providers[0].claims_to_headers["tenant"]: header "authorization" carries a credential; choose another name, e.g. x-auth-tenant`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Providers = []ProviderConfig{validProvider()}
			tc.change(&c)
			err := c.Validate("jwt")
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate messages mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfig_DecodesStrictYAML checks the yaml field names and that
// durations decode from strings, the way the config loader decodes.
func TestConfig_DecodesStrictYAML(t *testing.T) {
	const doc = `
leeway: 10s
max_token_bytes: 4096
cache: {max_entries: 50, max_ttl: 1m, disabled: false}
providers:
  - name: corp
    issuer: https://issuer.test
    audiences: [llm-gateway]
    jwks_url: https://issuer.test/jwks.json
    refresh_interval: 2m
    fetch_timeout: 3s
    ca_file: /etc/ca.pem
    algorithms: [RS256, ES256, EdDSA]
    subject_claim: sub
    groups_claim: realm_access.roles
    claims_to_headers: {email: x-auth-email}
  - name: dev
    issuer: https://dev.local
    audiences: [a]
    jwks_file: /tmp/jwks.json
  - name: oidc
    issuer: https://login.test
    audiences: [a]
    discovery: true
`
	c := Default()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	for i := range c.Providers {
		c.Providers[i].ApplyDefaults()
	}
	if err := c.Validate("jwt"); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Leeway != 10*time.Second || c.Cache.MaxTTL != time.Minute || c.Providers[0].FetchTimeout != 3*time.Second {
		t.Errorf("durations not decoded: %+v", c)
	}

	bad := yaml.NewDecoder(bytes.NewReader([]byte("providers: [{name: x, jwks_uri: https://x}]")))
	bad.KnownFields(true)
	var c2 Config
	if err := bad.Decode(&c2); err == nil || !strings.Contains(err.Error(), "jwks_uri") {
		t.Errorf("unknown key: Decode = %v, want an error naming jwks_uri", err)
	}
}

func TestConfig_ValidateJoinsEveryProblem(t *testing.T) {
	c := Config{Providers: []ProviderConfig{{}, {}}}
	err := c.Validate("jwt")
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 10 {
		t.Errorf("Validate returned %d problems, want every problem", len(joined.Unwrap()))
	}
}

package introspect

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout          = 500 * time.Millisecond
	DefaultCacheTTL         = 60 * time.Second
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultCacheSize        = 10000
	DefaultSubjectClaim     = "sub"
	DefaultGroupsClaim      = "groups"
	DefaultMaxTokenBytes    = 4096
	// The bounds on requests to the endpoint: an anonymous flood of
	// distinct garbage tokens reaches the endpoint at most at this rate.
	DefaultNegativeCacheSize    = 10000
	DefaultMaxConcurrent        = 16
	DefaultMaxRequestsPerSecond = 50
	DefaultMaxRequestsBurst     = 100
	// MaxResponseBytes caps an introspection response body.
	MaxResponseBytes = 64 << 10
)

// Config is the introspection: section. A zero field means its default
// (see ApplyDefaults).
type Config struct {
	// Endpoint is the RFC 7662 introspection endpoint: https, or http on a
	// loopback address (tests, a local sidecar).
	Endpoint string `yaml:"endpoint"`
	// ClientID and ClientSecretFile are the client credentials sent with
	// HTTP Basic authentication (RFC 7662 section 2.1). The secret is read
	// from the file (surrounding white space removed), never inline.
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// Timeout bounds one introspection request (default 500ms); keep it
	// below server.check_timeout.
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is how long an active answer is reused (default 60s), never
	// beyond the token's exp. NegativeCacheTTL is how long an inactive
	// answer is reused (default 5s).
	CacheTTL         time.Duration `yaml:"cache_ttl"`
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// CacheSize bounds the number of cached answers (default 10000, LRU).
	CacheSize int `yaml:"cache_size"`
	// Audiences, when set, requires the response's aud to hold one of them.
	Audiences []string `yaml:"audiences"`
	// SubjectClaim names the member holding the subject (default sub).
	SubjectClaim string `yaml:"subject_claim"`
	// GroupsClaim names the member holding the groups (default groups): a
	// string or an array of strings; "scope" splits the space-separated
	// scope string.
	GroupsClaim string `yaml:"groups_claim"`
	// CAFile is a PEM bundle that replaces the system roots for the
	// endpoint's certificate.
	CAFile string `yaml:"ca_file"`
	// MaxTokenBytes refuses longer tokens before any request (default 4096).
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// NegativeCacheSize bounds the number of cached inactive answers
	// (default 10000, LRU), kept apart from the active answers so that a
	// flood of garbage tokens cannot evict them.
	NegativeCacheSize int `yaml:"negative_cache_size"`
	// MaxConcurrent bounds the requests to the endpoint in flight at once
	// (default 16); a request outlives the check that started it by up to
	// Timeout. A check that finds no free slot within Timeout (or its own
	// deadline) is refused with 503.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxRequestsPerSecond and MaxRequestsBurst are a token bucket on the
	// requests to the endpoint (cache misses), shared by all callers
	// (defaults 50/s, burst 100). A miss beyond it is refused with 503 and
	// never reaches the endpoint.
	MaxRequestsPerSecond float64 `yaml:"max_requests_per_second"`
	MaxRequestsBurst     int     `yaml:"max_requests_burst"`
}

// ApplyDefaults sets every zero field to its default.
func (c *Config) ApplyDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = DefaultNegativeCacheTTL
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = DefaultSubjectClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.NegativeCacheSize == 0 {
		c.NegativeCacheSize = DefaultNegativeCacheSize
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxRequestsPerSecond == 0 {
		c.MaxRequestsPerSecond = DefaultMaxRequestsPerSecond
	}
	if c.MaxRequestsBurst == 0 {
		c.MaxRequestsBurst = DefaultMaxRequestsBurst
	}
}

// Validate reports every problem of the section (after ApplyDefaults), each
// as the key's path, the rule it breaks and how to fix it, joined with
// errors.Join.
func (c Config) Validate(path string) error {
	p := path + "."
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(p+format, a...)) }
	if c.Endpoint == "" {
		add("endpoint: must be set, e.g. https://idp.example.com/oauth2/introspect")
	} else if err := checkEndpoint(c.Endpoint); err != nil {
		add("endpoint: %q %v", c.Endpoint, err)
	}
	if c.ClientID == "" {
		add("client_id: must be set: the client extauthz authenticates as at the endpoint")
	}
	if c.ClientSecretFile == "" {
		add("client_secret_file: must be set: the client secret is read from a file (e.g. a mounted Secret), never inline")
	} else if _, err := os.Stat(c.ClientSecretFile); err != nil {
		add("client_secret_file: cannot be read: %v", errors.Unwrap(err))
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			add("ca_file: cannot be read: %v", errors.Unwrap(err))
		}
	}
	if c.Timeout < time.Millisecond || c.Timeout > 10*time.Second {
		add("timeout: %s must be between 1ms and 10s (and below server.check_timeout), e.g. 200ms", c.Timeout)
	}
	if c.CacheTTL < time.Second || c.CacheTTL > 24*time.Hour {
		add("cache_ttl: %s must be between 1s and 24h, e.g. 60s (revocation at the endpoint takes up to this long to reach extauthz)", c.CacheTTL)
	}
	if c.NegativeCacheTTL < time.Millisecond || c.NegativeCacheTTL > 10*time.Minute {
		add("negative_cache_ttl: %s must be between 1ms and 10m, e.g. 5s", c.NegativeCacheTTL)
	}
	if c.CacheSize < 1 || c.CacheSize > 10_000_000 {
		add("cache_size: %d must be between 1 and 10000000", c.CacheSize)
	}
	if c.MaxTokenBytes < 16 || c.MaxTokenBytes > 64<<10 {
		add("max_token_bytes: %d must be between 16 and 65536", c.MaxTokenBytes)
	}
	if c.NegativeCacheSize < 1 || c.NegativeCacheSize > 10_000_000 {
		add("negative_cache_size: %d must be between 1 and 10000000", c.NegativeCacheSize)
	}
	if c.MaxConcurrent < 1 || c.MaxConcurrent > 4096 {
		add("max_concurrent: %d must be between 1 and 4096, e.g. 16", c.MaxConcurrent)
	}
	if !(c.MaxRequestsPerSecond > 0 && c.MaxRequestsPerSecond <= 1e6) {
		add("max_requests_per_second: %g must be above 0 and at most 1000000, e.g. 50 (the endpoint is never called faster)", c.MaxRequestsPerSecond)
	}
	if c.MaxRequestsBurst < 1 || c.MaxRequestsBurst > 1_000_000 {
		add("max_requests_burst: %d must be between 1 and 1000000, e.g. 100", c.MaxRequestsBurst)
	}
	if c.SubjectClaim == "" {
		add("subject_claim: must not be empty, e.g. sub")
	}
	if c.GroupsClaim == "" {
		add("groups_claim: must not be empty, e.g. groups or scope")
	}
	for i, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			add("audiences[%d]: must not be empty", i)
		}
	}
	return errors.Join(errs...)
}

// checkEndpoint requires an absolute https URL, or http on loopback.
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute URL, e.g. https://idp.example.com/oauth2/introspect")
	}
	if u.User != nil {
		return errors.New("must not hold credentials: use client_id and client_secret_file")
	}
	if u.Fragment != "" {
		return errors.New("must not hold a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if jwks.IsLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("must use https (http is accepted only on a loopback address, for tests)")
	}
	return errors.New("must use https")
}

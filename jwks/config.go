package jwks

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/extauthz/extauthz/secretfile"
)

// Config is the jwt section of the config file.
type Config struct {
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	Leeway time.Duration `yaml:"leeway"`
	// MaxTokenBytes is the longest token accepted; longer tokens are refused
	// before any decoding.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// Cache configures the verified-token cache.
	Cache CacheConfig `yaml:"cache"`
	// Providers are the trusted issuers. A token is checked against the one
	// provider whose issuer equals its iss claim.
	Providers []ProviderConfig `yaml:"providers"`
}

// CacheConfig configures the cache of verified tokens. Only tokens that passed
// every check are cached, keyed by the SHA-256 of the token. An entry lives
// until the token's exp or MaxTTL after it was cached, whichever is sooner,
// and is dropped as soon as a refresh shows that the key that signed it was
// removed from its provider's key set.
//
// Memory is bounded by MaxEntries times the largest entry: tokens whose
// extracted claims (subject, groups, header values) exceed 4 KiB are never
// cached, so with the default 10000 entries the cache holds at most about
// 45 MiB, and typically (a few hundred bytes of claims) a few MiB.
type CacheConfig struct {
	// MaxEntries bounds the number of cached tokens (least recently used
	// are evicted first). It must be at least 1; use Disabled to turn the
	// cache off.
	MaxEntries int `yaml:"max_entries"`
	// MaxTTL bounds how long a verified token is served from the cache.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Disabled turns the cache off: every Verify checks the signature.
	Disabled bool `yaml:"disabled"`
}

// ProviderConfig describes one trusted token issuer and where its keys come
// from. Exactly one of JWKSURL, JWKSFile, Discovery and HMACSecretFile must
// be set.
type ProviderConfig struct {
	// Name identifies the provider in logs, metrics (label provider) and
	// Claims.Provider.
	Name string `yaml:"name"`
	// Issuer must equal the token's iss claim exactly.
	Issuer string `yaml:"issuer"`
	// Audiences are accepted aud values; the token's aud must contain at
	// least one of them.
	Audiences []string `yaml:"audiences"`
	// JWKSURL is the https URL of the provider's JWK Set.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSFile is a local JWK Set file. It is re-read when its modification
	// time or size changes, so keys can be rotated by rewriting the file.
	JWKSFile string `yaml:"jwks_file"`
	// Discovery reads jwks_uri from Issuer + /.well-known/openid-configuration
	// (retried in the background until it works).
	Discovery bool `yaml:"discovery"`
	// HMACSecretFile makes this an HMAC provider: tokens are verified with
	// the shared secret held in this file (HS256, HS384 or HS512 only, at
	// least 32 bytes; one trailing newline is ignored). The file is re-read
	// when its modification time or size changes. An HMAC provider accepts
	// no asymmetric algorithm, and no other provider ever accepts HMAC.
	HMACSecretFile string `yaml:"hmac_secret_file"`
	// RefreshInterval is how often the keys are fetched again.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// FetchTimeout bounds each JWKS or discovery HTTP request.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// CAFile is a PEM bundle of the CAs trusted for the JWKS and discovery
	// HTTPS requests of this provider. When set, it replaces the system
	// roots.
	CAFile string `yaml:"ca_file"`
	// Algorithms is the provider's allow-list of token alg values. A JWKS
	// provider allows only asymmetric algorithms (none and HMAC are never
	// accepted); an HMAC provider allows only HS256, HS384 and HS512.
	Algorithms []string `yaml:"algorithms"`
	// SubjectClaim names the claim holding the subject.
	SubjectClaim string `yaml:"subject_claim"`
	// GroupsClaim names the claim holding the groups: a string or an array
	// of strings. A dotted path (realm_access.roles) walks nested objects; a
	// top-level claim whose name contains dots (https://example.com/groups)
	// takes precedence over the path.
	GroupsClaim string `yaml:"groups_claim"`
	// ClaimsToHeaders maps a claim (name or dotted path) to the name of a
	// header that carries its value upstream.
	ClaimsToHeaders map[string]string `yaml:"claims_to_headers"`
	// TokenTypes, when set, is the list of accepted values of the JWS typ
	// header (RFC 8725 section 3.11, explicit typing), e.g. [at+jwt] so that
	// an ID token or a logout token of the same issuer and audience is not
	// taken for an access token. Compared case-insensitively, with an
	// "application/" prefix ignored; a token without typ is then refused.
	// Empty: typ is not checked.
	TokenTypes []string `yaml:"token_types"`
}

// Defaults and limits.
const (
	defaultLeeway          = 30 * time.Second
	defaultMaxTokenBytes   = 8192
	defaultCacheEntries    = 10000
	defaultCacheTTL        = 5 * time.Minute
	defaultRefreshInterval = 5 * time.Minute
	defaultFetchTimeout    = 5 * time.Second

	minTokenBytes   = 1024
	maxTokenBytes   = 64 << 10
	maxLeeway       = 5 * time.Minute
	maxCacheEntries = 1_000_000
	maxCacheTTL     = time.Hour
	minRefresh      = time.Second
	maxRefresh      = 24 * time.Hour
	maxFetchTimeout = time.Minute
)

// supportedAlgorithms lists every alg a provider may allow.
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// hmacAlgorithms lists every alg an HMAC provider may allow.
var hmacAlgorithms = []string{"HS256", "HS384", "HS512"}

// minHMACSecretBytes is the shortest HMAC secret accepted (RFC 7518 section
// 3.2 asks for a key at least as long as the hash output; 32 bytes is
// HS256's).
const minHMACSecretBytes = 32

// maxHMACSecretBytes bounds an HMAC secret file.
const maxHMACSecretBytes = 4096

// Default returns the defaults of the jwt section, with no providers.
func Default() Config {
	return Config{
		Leeway:        defaultLeeway,
		MaxTokenBytes: defaultMaxTokenBytes,
		Cache: CacheConfig{
			MaxEntries: defaultCacheEntries,
			MaxTTL:     defaultCacheTTL,
		},
	}
}

// ApplyDefaults fills the unset fields of p with their defaults and
// lower-cases the header names of ClaimsToHeaders. It is idempotent.
func (p *ProviderConfig) ApplyDefaults() {
	if p.RefreshInterval == 0 {
		p.RefreshInterval = defaultRefreshInterval
	}
	if p.FetchTimeout == 0 {
		p.FetchTimeout = defaultFetchTimeout
	}
	if len(p.Algorithms) == 0 {
		if p.HMACSecretFile != "" {
			p.Algorithms = []string{"HS256"}
		} else {
			p.Algorithms = []string{"RS256", "ES256", "EdDSA"}
		}
	}
	if p.SubjectClaim == "" {
		p.SubjectClaim = "sub"
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if len(p.ClaimsToHeaders) > 0 {
		m := make(map[string]string, len(p.ClaimsToHeaders))
		for claim, header := range p.ClaimsToHeaders {
			m[claim] = strings.ToLower(header)
		}
		p.ClaimsToHeaders = m
	}
}

// Validate reports every problem of the section at path (jwt), joined with
// errors.Join. Each problem names its path (jwt.providers[1].jwks_url), the
// rule, and how to fix it.
// It does not touch the network; of the file system it reads only each
// hmac_secret_file, to check the secret's length (never logging or
// returning the secret).
func (c Config) Validate(path string) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		add("leeway", "must be between 0s and %s (it is the allowed clock skew)", maxLeeway)
	}
	if c.MaxTokenBytes < minTokenBytes || c.MaxTokenBytes > maxTokenBytes {
		add("max_token_bytes", "must be between %d and %d (a token travels in one HTTP header)", minTokenBytes, maxTokenBytes)
	}
	if !c.Cache.Disabled {
		if c.Cache.MaxEntries < 1 || c.Cache.MaxEntries > maxCacheEntries {
			add("cache.max_entries", "must be between 1 and %d (set jwt.cache.disabled: true to turn the cache off)", maxCacheEntries)
		}
		if c.Cache.MaxTTL < time.Second || c.Cache.MaxTTL > maxCacheTTL {
			add("cache.max_ttl", "must be between 1s and %s", maxCacheTTL)
		}
	}
	names := map[string]int{}
	issuers := map[string]int{}
	for i, p := range c.Providers {
		pre := fmt.Sprintf("providers[%d]", i)
		padd := func(field, format string, args ...any) {
			if field != "" {
				field = "." + field
			}
			add(pre+field, format, args...)
		}

		switch {
		case p.Name == "":
			padd("name", "must be set (it names the provider in logs and metrics)")
		case !validName(p.Name):
			padd("name", "%q must be 1-64 characters of a-z, 0-9, '-' and '_' (it is a metric label value)", p.Name)
		default:
			if j, ok := names[p.Name]; ok {
				padd("name", "%q is already used by %s.providers[%d]; names must be unique", p.Name, path, j)
			} else {
				names[p.Name] = i
			}
		}
		if p.Issuer == "" {
			padd("issuer", "must be set to the exact iss value of the provider's tokens")
		} else if j, ok := issuers[p.Issuer]; ok {
			padd("issuer", "%q is already used by %s.providers[%d]; a token's iss must select exactly one provider", p.Issuer, path, j)
		} else {
			issuers[p.Issuer] = i
		}
		if len(p.Audiences) == 0 {
			padd("audiences", "must list at least one accepted aud value")
		}
		for j, a := range p.Audiences {
			if a == "" {
				padd(fmt.Sprintf("audiences[%d]", j), "must not be empty")
			}
		}

		sources := 0
		if p.JWKSURL != "" {
			sources++
		}
		if p.JWKSFile != "" {
			sources++
		}
		if p.Discovery {
			sources++
		}
		if p.HMACSecretFile != "" {
			sources++
		}
		if sources != 1 {
			padd("", "set exactly one of jwks_url, jwks_file, discovery: true and hmac_secret_file (found %d)", sources)
		}
		if p.HMACSecretFile != "" {
			if _, err := readHMACSecret(p.HMACSecretFile); err != nil {
				padd("hmac_secret_file", "%v", err)
			}
		}
		if p.JWKSURL != "" {
			if err := checkFetchURL(p.JWKSURL); err != nil {
				padd("jwks_url", "%v (or set jwks_file for local keys)", err)
			}
		}
		if p.Discovery && p.Issuer != "" {
			if err := checkFetchURL(p.Issuer); err != nil {
				padd("issuer", "discovery needs the issuer to be a URL: %v (or set jwks_url)", err)
			}
		}
		if p.CAFile != "" && p.JWKSURL == "" && !p.Discovery {
			padd("ca_file", "only applies to jwks_url and discovery; remove it")
		}

		if p.RefreshInterval < minRefresh || p.RefreshInterval > maxRefresh {
			padd("refresh_interval", "must be between %s and %s", minRefresh, maxRefresh)
		}
		if p.FetchTimeout <= 0 || p.FetchTimeout > maxFetchTimeout {
			padd("fetch_timeout", "must be greater than 0s and at most %s", maxFetchTimeout)
		}

		allowed := supportedAlgorithms
		if p.HMACSecretFile != "" {
			allowed = hmacAlgorithms
		}
		if len(p.Algorithms) == 0 {
			padd("algorithms", "must list at least one of %s", strings.Join(allowed, ", "))
		}
		seenAlg := map[string]bool{}
		for j, a := range p.Algorithms {
			path := fmt.Sprintf("algorithms[%d]", j)
			switch {
			case p.HMACSecretFile != "" && !slices.Contains(hmacAlgorithms, a):
				padd(path, "%q is not allowed with hmac_secret_file: an HMAC provider accepts only %s (use a jwks_url, jwks_file or discovery provider for asymmetric keys)", a, strings.Join(hmacAlgorithms, ", "))
			case p.HMACSecretFile == "" && !slices.Contains(supportedAlgorithms, a):
				padd(path, "%q is not allowed: none and HMAC (HS256, HS384, HS512) are never accepted with JWKS; use %s", a, strings.Join(supportedAlgorithms, ", "))
			case seenAlg[a]:
				padd(path, "%q is listed twice", a)
			}
			seenAlg[a] = true
		}

		for j, tt := range p.TokenTypes {
			if normalTokenType(tt) == "" || strings.ContainsAny(tt, " \t,") {
				padd(fmt.Sprintf("token_types[%d]", j), "%q must be a media type such as at+jwt or JWT", tt)
			}
		}

		if err := checkClaimPath(p.SubjectClaim); err != nil {
			padd("subject_claim", "%v", err)
		}
		if err := checkClaimPath(p.GroupsClaim); err != nil {
			padd("groups_claim", "%v", err)
		}
		headerOf := map[string]string{}
		for _, claim := range sortedKeys(p.ClaimsToHeaders) {
			header := p.ClaimsToHeaders[claim]
			path := fmt.Sprintf("claims_to_headers[%q]", claim)
			if err := checkClaimPath(claim); err != nil {
				padd(path, "%v", err)
			}
			switch why := ReservedHeader(header); {
			case !ValidHeaderToken(header):
				padd(path, "header name %q must be a lower-case HTTP token (a-z, 0-9, and !#$%%&'*+-.^_`|~)", header)
			case why != "":
				padd(path, "header %q %s; choose another name, e.g. %s", header, why, claimHeaderExample(claim))
			case strings.Contains(header, "_"):
				padd(path, "header %q contains '_', which proxies drop and CGI upstreams read as '-'; choose another name, e.g. %s", header, claimHeaderExample(claim))
			default:
				if other, ok := headerOf[header]; ok {
					padd(path, "header %q is already set from claim %q; each header may carry one claim", header, other)
				} else {
					headerOf[header] = claim
				}
			}
		}
	}
	return errors.Join(errs...)
}

// readHMACSecret reads an HMAC secret file: a regular file of at most
// maxHMACSecretBytes, not writable by group or others (secretfile.Read),
// whose content, without one trailing newline, is at least
// minHMACSecretBytes long. Errors name the file, never its content.
func readHMACSecret(path string) ([]byte, error) {
	b, err := secretfile.Read("", path) // callers name the key
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (create the file, or fix the path)", err)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > maxHMACSecretBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxHMACSecretBytes)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	// A public key is no secret: refuse the likely mix-ups of pointing
	// hmac_secret_file at a PEM key or certificate, or at a JWK (Set).
	if bytes.Contains(b, []byte("-----BEGIN")) || bytes.Contains(b, []byte(`"kty"`)) {
		return nil, fmt.Errorf("%s holds a PEM block or a JWK, not a shared secret: an HMAC secret is random bytes known only to the issuer and extauthz", path)
	}
	if len(b) < minHMACSecretBytes {
		return nil, fmt.Errorf("the secret in %s is %d bytes; at least %d are required (generate one with: head -c 48 /dev/urandom | base64)", path, len(b), minHMACSecretBytes)
	}
	return b, nil
}

// checkFetchURL accepts absolute https URLs, and http URLs whose host is a
// loopback address (for tests and development).
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("must be a valid absolute URL")
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("must be an absolute https URL")
	}
	if u.User != nil {
		return errors.New("must not contain credentials")
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return errors.New("must use https (http is allowed only for 127.0.0.1, ::1 and localhost)")
	}
	return nil
}

// IsLoopback reports whether host (a URL's Hostname) is "localhost" or a
// loopback IP address: the only hosts a fetch or introspection URL may reach
// over plain http.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkClaimPath(path string) error {
	if path == "" {
		return errors.New("must name a claim")
	}
	if slices.Contains(strings.Split(path, "."), "") {
		return fmt.Errorf("%q has an empty path segment", path)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// normalTokenType lower-cases a typ value and drops an "application/"
// prefix (RFC 7515 section 4.1.9).
func normalTokenType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	return strings.TrimPrefix(t, "application/")
}

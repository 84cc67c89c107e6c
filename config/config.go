// Package config owns the extauthz configuration file: its schema (composed
// of the sections that the jwks, apikeys, rolemap and authz packages define),
// strict decoding, defaults, path resolution and the validation that spans
// sections. It builds nothing: cmd/extauthz turns a Config into running
// parts.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/keysapi"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
	"github.com/extauthz/extauthz/secretfile"
)

// Config is the whole configuration file.
type Config struct {
	Listen       Listen              `yaml:"listen"`
	Server       Server              `yaml:"server"`
	Log          Log                 `yaml:"log"`
	JWT          jwks.Config         `yaml:"jwt"`
	APIKeys      apikeys.Config      `yaml:"api_keys"`
	RateLimits   *ratelimit.Config   `yaml:"rate_limits"`
	Roles        map[string][]string `yaml:"roles"`
	RoleMapping  rolemap.Mapping     `yaml:"role_mapping"`
	Routes       []authz.Route       `yaml:"routes"`
	DefaultRoute string              `yaml:"default_route"`
	Headers      authz.Headers       `yaml:"headers"`
	// PeerIdentity maps mTLS peers reported by Envoy/Istio to identities
	// (x-auth-method: mtls) for requests without a credential.
	PeerIdentity authz.PeerIdentityConfig `yaml:"peer_identity"`
	// API configures the key API and token exchange served on listen.api.
	API keysapi.Config `yaml:"api"`
	// Introspection validates opaque bearer tokens (neither API key nor
	// JWT) with an OAuth 2.0 introspection endpoint (x-auth-method:
	// opaque); nil: off.
	Introspection *introspect.Config `yaml:"introspection"`

	warnings []string
}

// Listen holds the listener addresses (host:port).
type Listen struct {
	GRPC  string `yaml:"grpc"`  // ext_authz v3 gRPC and grpc.health.v1
	HTTP  string `yaml:"http"`  // HTTP forward-auth; empty: off
	Admin string `yaml:"admin"` // /metrics /healthz /readyz; empty: off
	API   string `yaml:"api"`   // key API and token exchange (/v1/keys, /v1/token); empty: off
	// TLS, when CertFile is set, serves the gRPC and HTTP listeners over TLS
	// (the admin listener stays plain, for probes and Prometheus).
	TLS TLS `yaml:"tls"`
}

// TLS configures the check listeners' TLS and, with ClientCAFile, mutual TLS.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain
	KeyFile  string `yaml:"key_file"`  // PEM private key
	// ClientCAFile turns on mTLS: a client must present a certificate that
	// chains to one of these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowedClients, when set, further restricts mTLS clients to these
	// identities: a SPIFFE ID or other URI SAN (spiffe://cluster.local/ns/
	// istio-system/sa/istio-ingressgateway-service-account), a DNS SAN, or
	// the subject common name. A trailing * matches any suffix.
	AllowedClients []string `yaml:"allowed_clients"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ReloadInterval is how often the files are checked for changes (default
	// 10s); a rotated certificate is served without a restart.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Enabled reports whether the check listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Server tunes the servers.
type Server struct {
	// CheckTimeout bounds one check; keep it below the proxy's timeout.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// HTTPPathPrefix is removed from HTTP-mode check paths (Envoy
	// http_service path_prefix).
	HTTPPathPrefix string `yaml:"http_path_prefix"`
	// HTTPForwardedHeaders names the one header family the HTTP listener
	// reads the original request from: forwarded (default:
	// x-forwarded-method/-uri/-host, as nginx/extauthz.conf, Traefik and
	// Caddy send), original (x-original-method/-uri, nginx's documentation)
	// or none (the check request itself: Envoy http_service). A check
	// carrying the other family is refused.
	HTTPForwardedHeaders string `yaml:"http_forwarded_headers"`
	// GRPCReflection enables gRPC server reflection (for grpcurl).
	GRPCReflection bool `yaml:"grpc_reflection"`
	// GRPCMaxRecvBytes caps one gRPC message (a CheckRequest with headers,
	// and body when Envoy sends it).
	GRPCMaxRecvBytes int `yaml:"grpc_max_recv_bytes"`
	// MaxHeaderBytes caps the request headers of the HTTP listener.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin listener.
	Pprof bool `yaml:"pprof"`
	// ShutdownDelay is how long readiness reports not-ready on SIGTERM before
	// the listeners stop accepting, so that load balancers move away first.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	// ConfigPollInterval, when set, re-reads the config file at this interval
	// and reloads it when its content changed (for ConfigMap updates);
	// SIGHUP always reloads.
	ConfigPollInterval time.Duration `yaml:"config_poll_interval"`
	// ShutdownTimeout bounds the graceful stop; checks still running then are
	// cut off.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Log configures the JSON log on stdout.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
	// AllowSampleRate is the fraction (0..1) of allowed decisions logged;
	// denials are always logged.
	AllowSampleRate float64 `yaml:"allow_sample_rate"`
	// DenialsPerSecond is how many identical denials (same outcome, reason,
	// route and method) are logged per second; the next line logged says
	// how many were suppressed. 0 logs every denial.
	DenialsPerSecond int `yaml:"denials_per_second"`
}

// Default returns the configuration before the file is applied.
func Default() Config {
	return Config{
		Listen: Listen{GRPC: "127.0.0.1:9001", HTTP: "127.0.0.1:9002", Admin: "127.0.0.1:9090"},
		Server: Server{
			CheckTimeout:         authz.DefaultCheckTimeout,
			HTTPForwardedHeaders: authz.ForwardedForwarded,
			GRPCMaxRecvBytes:     4 << 20,
			MaxHeaderBytes:       64 << 10,
			ShutdownTimeout:      15 * time.Second,
		},
		Log:          Log{Level: "info", AllowSampleRate: 1, DenialsPerSecond: authz.DefaultDenialLogRate},
		JWT:          jwks.DefaultConfig(),
		APIKeys:      apikeys.DefaultConfig(),
		DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.DefaultHeaders(),
		API:          keysapi.DefaultConfig(),
	}
}

// Load reads, decodes and validates the file at path. Relative file paths in
// it (jwks_file, hmac_secret_file, password_file, ca_file, api_keys.file) are resolved against
// the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.resolvePaths(filepath.Dir(path))
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates a configuration held in memory. Relative paths
// stay relative to the working directory.
func Parse(data []byte) (*Config, error) {
	cfg, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Warnings returns what Validate found questionable but not wrong.
func (c *Config) Warnings() []string { return c.warnings }

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type (\S+)`)

// decode applies the file over the defaults, strictly: an unknown key is an
// error naming the key and its line, and a second YAML document is refused.
func decode(data []byte) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: at least listen and routes are needed (see examples/dev/config.yaml)")
		}
		return nil, friendlyYAMLError(err, data)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document (a second '---'): put everything in one document")
	}
	for i := range cfg.JWT.Providers {
		cfg.JWT.Providers[i].ApplyDefaults()
	}
	if in := cfg.Introspection; in != nil {
		// The default timeout must leave the check time to answer: 500ms,
		// or two thirds of a shorter server.check_timeout.
		if in.Timeout == 0 && cfg.Server.CheckTimeout > 0 {
			in.Timeout = min(introspect.DefaultTimeout, cfg.Server.CheckTimeout*2/3)
		}
		in.ApplyDefaults()
	}
	return &cfg, nil
}

var lineRef = regexp.MustCompile(`^line (\d+): `)

// friendlyYAMLError rewrites the decoder's messages so that each names the
// key (by its dotted path) and says how to fix it.
func friendlyYAMLError(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	msgs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			section := sectionOf(m[3])
			line := 0
			fmt.Sscan(m[1], &line)
			// The key's own position names its section exactly
			// (api_keys.redis vs rate_limits.redis share one Go type).
			if p := keyAtLine(&root, line, ""); p != "" {
				if i := strings.LastIndexAny(p, ".["); i > 0 {
					section = p[:i]
				} else {
					section = "the top level"
				}
			}
			msgs = append(msgs, fmt.Errorf("line %s: unknown key %q in %s: check its spelling and indentation (the README lists every key)", m[1], m[2], section))
			continue
		}
		if m := lineRef.FindStringSubmatch(e); m != nil {
			line := 0
			fmt.Sscan(m[1], &line)
			if key := keyAtLine(&root, line, ""); key != "" {
				e = "line " + m[1] + " (" + key + "): " + strings.TrimPrefix(e, m[0])
			}
		}
		if strings.Contains(e, "time.Duration") {
			e += `: durations are strings with a unit, e.g. "300ms", "30s" or "5m"`
		}
		msgs = append(msgs, errors.New(e))
	}
	return errors.Join(msgs...)
}

// keyAtLine returns the dotted path of the deepest mapping key on line (or
// whose scalar value is on line), or "".
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			// The deepest key on the line wins (flow maps put several on one).
			if found := keyAtLine(v, line, path); found != "" {
				return found
			}
			if k.Line == line || (v.Line == line && v.Kind == yaml.ScalarNode) {
				return path
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if found := keyAtLine(c, line, fmt.Sprintf("%s[%d]", prefix, i)); found != "" {
				return found
			}
		}
	}
	return ""
}

// sectionOf names the config section of a Go type in a decode error.
func sectionOf(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "config.Config":
		return "the top level"
	case "config.Listen":
		return "listen"
	case "config.TLS":
		return "listen.tls"
	case "config.Server":
		return "server"
	case "config.Log":
		return "log"
	case "keysapi.Config":
		return "api"
	case "keysapi.ExchangeConfig":
		return "api.exchange"
	case "jwks.Config":
		return "jwt"
	case "jwks.ProviderConfig":
		return "jwt.providers[]"
	case "jwks.CacheConfig":
		return "jwt.cache"
	case "apikeys.Config":
		return "api_keys"
	case "apikeys.RedisConfig", "redisconn.Config":
		return "api_keys.redis"
	case "rolemap.Mapping":
		return "role_mapping"
	case "rolemap.Rule":
		return "role_mapping.rules[]"
	case "authz.Route":
		return "routes[]"
	case "authz.Match":
		return "routes[].match"
	case "authz.Require":
		return "routes[].require"
	case "authz.Headers":
		return "headers"
	case "authz.PeerIdentityConfig":
		return "peer_identity"
	case "authz.PeerRule":
		return "peer_identity.rules[]"
	case "ratelimit.Config":
		return "rate_limits"
	case "ratelimit.Limit":
		return "a rate limit (requests, per, burst)"
	case "ratelimit.RouteLimit":
		return "routes[].rate_limit"
	case "introspect.Config":
		return "introspection"
	}
	return goType
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.JWT.Providers {
		abs(&c.JWT.Providers[i].JWKSFile)
		abs(&c.JWT.Providers[i].CAFile)
		abs(&c.JWT.Providers[i].HMACSecretFile)
	}
	abs(&c.APIKeys.File)
	abs(&c.Listen.TLS.CertFile)
	abs(&c.Listen.TLS.KeyFile)
	abs(&c.Listen.TLS.ClientCAFile)
	if r := c.APIKeys.Redis; r != nil {
		abs(&r.PasswordFile)
		abs(&r.CAFile)
	}
	if c.RateLimits != nil && c.RateLimits.Redis != nil {
		abs(&c.RateLimits.Redis.PasswordFile)
		abs(&c.RateLimits.Redis.CAFile)
	}
	if in := c.Introspection; in != nil {
		abs(&in.ClientSecretFile)
		abs(&in.CAFile)
	}
}

// Validate reports every problem in the configuration, each as the key's path
// and the rule it breaks, joined with errors.Join. Questionable but valid
// settings are recorded as Warnings.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.warnings = nil

	add(checkAddr("listen.grpc", c.Listen.GRPC, true))
	add(checkAddr("listen.http", c.Listen.HTTP, false))
	add(checkAddr("listen.admin", c.Listen.Admin, false))
	add(checkAddr("listen.api", c.Listen.API, false))
	add(c.Listen.TLS.validate())
	if c.Server.CheckTimeout <= 0 || c.Server.CheckTimeout > 10*time.Second {
		add(fmt.Errorf("server.check_timeout: %s must be between 1ms and 10s (and below the proxy's ext_authz timeout), e.g. 300ms", c.Server.CheckTimeout))
	}
	if p := c.Server.HTTPPathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#")) {
		add(fmt.Errorf("server.http_path_prefix: %q must start with / and hold no query, e.g. /check", p))
	}
	switch c.Server.HTTPForwardedHeaders {
	case authz.ForwardedForwarded, authz.ForwardedOriginal:
		if c.Server.HTTPPathPrefix != "" {
			add(fmt.Errorf("server.http_path_prefix: is used only with server.http_forwarded_headers: none (Envoy http_service); set that too, or remove the prefix"))
		}
	case authz.ForwardedNone:
	default:
		add(fmt.Errorf("server.http_forwarded_headers: %q is not valid: use forwarded (x-forwarded-*: nginx/extauthz.conf, Traefik, Caddy), original (x-original-*) or none (Envoy http_service)", c.Server.HTTPForwardedHeaders))
	}
	if n := c.Server.GRPCMaxRecvBytes; n < 4<<10 || n > 64<<20 {
		add(fmt.Errorf("server.grpc_max_recv_bytes: %d must be between 4096 and 67108864", n))
	}
	if n := c.Server.MaxHeaderBytes; n < 4<<10 || n > 1<<20 {
		add(fmt.Errorf("server.max_header_bytes: %d must be between 4096 and 1048576", n))
	}
	if c.Server.ShutdownDelay < 0 || c.Server.ShutdownDelay > time.Minute {
		add(fmt.Errorf("server.shutdown_delay: %s must be between 0s and 1m", c.Server.ShutdownDelay))
	}
	if iv := c.Server.ConfigPollInterval; iv != 0 && (iv < time.Second || iv > time.Hour) {
		add(fmt.Errorf("server.config_poll_interval: %s must be 0s (off) or between 1s and 1h, e.g. 10s", iv))
	}
	if c.Server.ShutdownTimeout <= 0 || c.Server.ShutdownTimeout > 5*time.Minute {
		add(fmt.Errorf("server.shutdown_timeout: %s must be between 1s and 5m", c.Server.ShutdownTimeout))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Errorf("log.level: %q must be one of debug, info, warn, error", c.Log.Level))
	}
	if c.Log.AllowSampleRate < 0 || c.Log.AllowSampleRate > 1 {
		add(fmt.Errorf("log.allow_sample_rate: %v must be between 0 (log no allows) and 1 (log every allow)", c.Log.AllowSampleRate))
	}
	if c.Log.DenialsPerSecond < 0 || c.Log.DenialsPerSecond > 100000 {
		add(fmt.Errorf("log.denials_per_second: %d must be between 0 (log every denial) and 100000, e.g. 10", c.Log.DenialsPerSecond))
	}

	add(c.JWT.Validate())
	add(c.APIKeys.Validate())
	add(rolemap.Validate(c.RoleMapping, c.Roles))
	known := func(r string) bool { _, ok := c.Roles[r]; return ok }
	add(authz.ValidateRoutes(c.Routes, c.DefaultRoute, c.Headers, known))
	add(authz.ValidatePeerIdentity(c.PeerIdentity, known))
	add(c.API.Validate(known))
	add(c.validatePolicy())
	add(c.validateRateLimits(known))
	add(c.validateClaimHeaders())
	if in := c.Introspection; in != nil {
		add(in.Validate())
		if in.Timeout >= c.Server.CheckTimeout && c.Server.CheckTimeout > 0 {
			add(fmt.Errorf("introspection.timeout: %s must be below server.check_timeout (%s), or a slow endpoint turns every uncached check into a timeout: e.g. 200ms with check_timeout 300ms", in.Timeout, c.Server.CheckTimeout))
		}
	}
	if len(c.JWT.Providers) == 0 && c.APIKeys.Redis == nil && c.APIKeys.File == "" && c.Introspection == nil {
		c.warnings = append(c.warnings, "neither jwt.providers nor an API-key store (api_keys.redis or api_keys.file) is configured: only public routes can ever be allowed")
	}
	if c.APIKeys.Redis == nil {
		c.warnings = append(c.warnings, "api_keys.redis is not set: API keys live in the embedded store, which is for development only (one replica, no shared revocation)")
	}
	return errors.Join(errs...)
}

// validatePolicy checks that what routes require can be granted: a required
// role must be reachable through role mapping (or, if API keys are on,
// carried by a key), and a required permission must be held by some role.
func (c *Config) validatePolicy() error {
	mapper, err := rolemap.New(c.RoleMapping, c.Roles)
	if err != nil {
		return nil // reported by rolemap.Validate
	}
	keysOn := c.APIKeys.Redis != nil || c.APIKeys.File != ""
	// Roles that peer_identity rules give (directly or through their
	// groups) are reachable too.
	peerRoles := map[string]bool{}
	if c.PeerIdentity.Enabled {
		for _, r := range c.PeerIdentity.Rules {
			for _, role := range mapper.Roles(r.Groups, r.Roles) {
				peerRoles[role] = true
			}
		}
	}
	var errs []error
	for i, r := range c.Routes {
		for j, role := range r.Require.AnyRole {
			if _, ok := c.Roles[role]; !ok || mapper.Reachable(role) || peerRoles[role] {
				continue
			}
			msg := fmt.Sprintf("routes[%d].require.any_role[%d]: no role_mapping rule or default_roles produces role %q, so no JWT caller can ever reach route %q: add a rule that grants it", i, j, role, r.Name)
			if keysOn {
				c.warnings = append(c.warnings, msg+" (API keys created with --roles "+role+" can)")
				continue
			}
			errs = append(errs, errors.New(msg))
		}
		for j, perm := range r.Require.Permissions {
			granted := false
			for role := range c.Roles {
				if mapper.Permits([]string{role}, []string{perm}) {
					granted = true
					break
				}
			}
			if !granted {
				errs = append(errs, fmt.Errorf("routes[%d].require.permissions[%d]: no role under roles grants %q: add it to a role (or fix the spelling)", i, j, perm))
			}
		}
		warns, err := authz.ValidateLLMPermissions(fmt.Sprintf("routes[%d]", i), r.LLM(), c.Roles)
		c.warnings = append(c.warnings, warns...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validateRateLimits checks the rate_limits section and the routes'
// rate_limit entries, and that the counters have a Redis and a timeout that
// fits in a check.
func (c *Config) validateRateLimits(knownRole func(string) bool) error {
	var rc ratelimit.Config
	if c.RateLimits != nil {
		rc = *c.RateLimits
	}
	var errs []error
	if c.RateLimits != nil {
		if err := rc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ratelimit.ValidatePolicy(rc, authz.RateLimitRoutes(c.Routes), knownRole); err != nil {
		errs = append(errs, err)
	}
	if !c.rateLimitsOn() {
		return errors.Join(errs...)
	}
	if rc.Redis == nil && c.APIKeys.Redis == nil {
		errs = append(errs, errors.New("rate_limits.redis: rate limits need Redis to share their counters: set rate_limits.redis or api_keys.redis"))
	}
	timeout := rc.Timeout
	if timeout <= 0 {
		timeout = ratelimit.DefaultTimeout
	}
	if timeout >= c.Server.CheckTimeout && c.Server.CheckTimeout > 0 {
		errs = append(errs, fmt.Errorf("rate_limits.timeout: %s must be below server.check_timeout (%s), or a slow Redis turns every check into a timeout: e.g. 100ms with check_timeout 300ms", timeout, c.Server.CheckTimeout))
	}
	return errors.Join(errs...)
}

// RateLimitConfig returns the effective rate_limits section: nil when rate
// limiting is off, otherwise the section (or an empty one when only routes
// have a rate_limit) with Redis filled in from api_keys.redis when it has
// none of its own.
func (c *Config) RateLimitConfig() *ratelimit.Config {
	if !c.rateLimitsOn() {
		return nil
	}
	var rc ratelimit.Config
	if c.RateLimits != nil {
		rc = *c.RateLimits
	}
	if rc.Redis == nil && c.APIKeys.Redis != nil {
		r := *c.APIKeys.Redis
		rc.Redis = &r
	}
	return &rc
}

func (c *Config) rateLimitsOn() bool {
	return authz.Config{Routes: c.Routes, RateLimits: c.RateLimits}.RateLimitsOn()
}

func (c *Config) validateClaimHeaders() error {
	reserved := map[string]bool{}
	for _, n := range []string{"subject", "method", "issuer", "groups", "roles", "key-id"} {
		reserved[c.Headers.Prefix+n] = true
	}
	var errs []error
	for i, p := range c.JWT.Providers {
		keys := make([]string, 0, len(p.ClaimsToHeaders))
		for k := range p.ClaimsToHeaders {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, claim := range keys {
			h := p.ClaimsToHeaders[claim]
			path := fmt.Sprintf("jwt.providers[%d].claims_to_headers.%s", i, claim)
			switch {
			case !authz.ValidHeaderName(h):
				// Reported, with the reason and the fix, by the jwt
				// section's own validation (jwks.ReservedHeader).
			case reserved[h]:
				errs = append(errs, fmt.Errorf("%s: %q is an identity header extauthz sets itself: choose another name", path, h))
			case !strings.HasPrefix(h, c.Headers.Prefix):
				c.warnings = append(c.warnings, fmt.Sprintf("%s: %q does not start with headers.prefix %q; it is still removed from requests when the claim is absent, but keeping identity headers under one prefix is simpler to audit", path, h, c.Headers.Prefix))
			}
		}
	}
	return errors.Join(errs...)
}

// ClaimHeaders returns every header name that some provider's
// claims_to_headers may set, sorted.
func (c *Config) ClaimHeaders() []string {
	var out []string
	for _, p := range c.JWT.Providers {
		for _, h := range p.ClaimsToHeaders {
			out = append(out, strings.ToLower(h))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Authz returns the Engine's part of the configuration.
func (c *Config) Authz() authz.Config {
	return authz.Config{
		Routes:          c.Routes,
		DefaultRoute:    c.DefaultRoute,
		Headers:         c.Headers,
		APIKeyPrefix:    c.APIKeys.Prefix,
		ClaimHeaders:    c.ClaimHeaders(),
		RateLimits:      c.RateLimitConfig(),
		LLMMaxBodyBytes: c.Server.GRPCMaxRecvBytes,
		PeerIdentity:    c.PeerIdentity,
	}
}

// ServerOptions returns the authz.Server's part of the configuration.
func (c *Config) ServerOptions() authz.ServerOptions {
	return authz.ServerOptions{
		CheckTimeout:         c.Server.CheckTimeout,
		AllowSampleRate:      c.Log.AllowSampleRate,
		DenialLogRate:        denialLogRate(c.Log.DenialsPerSecond),
		HTTPPathPrefix:       c.Server.HTTPPathPrefix,
		HTTPForwardedHeaders: c.Server.HTTPForwardedHeaders,
	}
}

// denialLogRate maps log.denials_per_second (0: every denial) to
// authz.ServerOptions.DenialLogRate (0: the default, negative: every denial).
func denialLogRate(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func checkAddr(key, addr string, required bool) error {
	if addr == "" {
		if required {
			return fmt.Errorf("%s: must be set, e.g. 127.0.0.1:9001", key)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%s: %q must be host:port, e.g. 127.0.0.1:9001 or 0.0.0.0:9001 (in a pod)", key, addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%s: %q has an invalid host", key, addr)
	}
	return nil
}

func (t TLS) validate() error {
	var errs []error
	if t.CertFile == "" {
		if t.KeyFile != "" || t.ClientCAFile != "" || len(t.AllowedClients) > 0 {
			errs = append(errs, errors.New("listen.tls.cert_file: must be set when key_file, client_ca_file or allowed_clients is"))
		}
		return errors.Join(errs...)
	}
	if t.KeyFile == "" {
		errs = append(errs, errors.New("listen.tls.key_file: must be set with cert_file"))
	}
	for key, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "client_ca_file": t.ClientCAFile} {
		if f == "" {
			continue
		}
		if key == "key_file" {
			// The private key: a small regular file nobody else can write.
			if _, err := secretfile.Read("listen.tls.key_file", f); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("listen.tls.%s: %v", key, err))
		}
	}
	if len(t.AllowedClients) > 0 && t.ClientCAFile == "" {
		errs = append(errs, errors.New("listen.tls.allowed_clients: needs client_ca_file (client certificates are only verified with mTLS on)"))
	}
	for i, c := range t.AllowedClients {
		if c == "" || strings.Contains(strings.TrimSuffix(c, "*"), "*") {
			errs = append(errs, fmt.Errorf("listen.tls.allowed_clients[%d]: %q must be a non-empty identity, optionally ending in *", i, c))
		}
	}
	switch t.MinVersion {
	case "", "1.2", "1.3":
	default:
		errs = append(errs, fmt.Errorf("listen.tls.min_version: %q must be 1.2 or 1.3", t.MinVersion))
	}
	if t.ReloadInterval < 0 {
		errs = append(errs, errors.New("listen.tls.reload_interval: must not be negative, e.g. 10s"))
	}
	return errors.Join(errs...)
}

package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
)

// Route is one entry of the `routes` list. Routes are tried in order and the
// first whose Match fits the request decides.
type Route struct {
	Name    string  `yaml:"name"`
	Match   Match   `yaml:"match"`
	Public  bool    `yaml:"public"`
	Require Require `yaml:"require"`
	// ModelHeader names a request header that may carry the requested model
	// (read only with require.model; see LLMRoute).
	ModelHeader string `yaml:"model_header"`
	// ModelHeaderSetBy names the proxy that sets ModelHeader on every
	// request, overwriting what the client sent; required with ModelHeader.
	ModelHeaderSetBy string `yaml:"model_header_set_by"`
	// RateLimit is the route's own rate limit (see ratelimit.RouteLimit);
	// nil means rate_limits applies as configured.
	RateLimit *ratelimit.RouteLimit `yaml:"rate_limit"`
}

// LLM returns the route's LLM policy: require.model, require.tools and
// model_header.
func (r Route) LLM() LLMRoute {
	return LLMRoute{RequireModel: r.Require.Model, RequireTools: r.Require.Tools, ModelHeader: r.ModelHeader, ModelHeaderSetBy: r.ModelHeaderSetBy}
}

// Match selects requests. Every field that is set must fit; an empty Match
// fits every request.
type Match struct {
	// Host is an exact host name or "*.example.com" (any sub-domain). The
	// request's port is ignored and the comparison is case-insensitive.
	Host string `yaml:"host"`
	// PathPrefix matches the path itself and everything below it on a segment
	// boundary: /v1/models matches /v1/models and /v1/models/x but not
	// /v1/modelsx. The query string is ignored.
	PathPrefix string `yaml:"path_prefix"`
	// Path matches exactly (query string ignored).
	Path string `yaml:"path"`
	// Methods lists the HTTP methods that fit (upper-case tokens); empty
	// means all. A request whose method is not an upper-case token is
	// refused before matching (invalid_method).
	Methods []string `yaml:"methods"`
	// ContextExtensions must all be present with equal values in the Envoy
	// CheckRequest's context_extensions (set per route in Envoy's
	// check_settings).
	ContextExtensions map[string]string `yaml:"context_extensions"`
}

// Require says what an authenticated identity needs on a non-public route.
// Exactly one of AnyRole, Permissions and Authenticated is set, or none when
// Model or Tools is (which then implies Authenticated).
type Require struct {
	AnyRole       []string `yaml:"any_role"`
	Permissions   []string `yaml:"permissions"`
	Authenticated bool     `yaml:"authenticated"`
	// Model requires the permission model:<name> for the model the request
	// names (body or model_header); see LLMRoute.
	Model bool `yaml:"model"`
	// Tools requires tool:<name> for every tool the request body declares.
	Tools bool `yaml:"tools"`
}

// Headers is the `headers` section: how identity reaches the upstream.
type Headers struct {
	// Prefix of every identity header (default "x-auth-"). Client-sent
	// headers with this prefix are always removed unless this decision set
	// them.
	Prefix string `yaml:"prefix"`
	// StripCredentials removes authorization and x-api-key before the request
	// goes upstream (default true: an upstream that never needs the caller's
	// bearer token or API key cannot leak or replay it; set false only for an
	// upstream that re-validates the credential itself).
	StripCredentials bool `yaml:"strip_credentials"`
}

// The default_route values.
const (
	DefaultRouteDeny          = "deny"
	DefaultRouteAuthenticated = "authenticated"
)

// Config is everything the Engine needs from the configuration file.
type Config struct {
	Routes       []Route
	DefaultRoute string // deny (default) or authenticated
	Headers      Headers
	// APIKeyPrefix is the API-key prefix ("ek"); a credential starting with
	// APIKeyPrefix + "_" takes the API-key path.
	APIKeyPrefix string
	// ClaimHeaders lists every header name that claims_to_headers may set,
	// across providers, so that a client-sent copy is removed when the
	// decision does not set it.
	ClaimHeaders []string
	// RateLimits is the rate_limits section with its Redis settings filled
	// in; nil turns rate limiting off unless a route has a rate_limit (then
	// the zero Config applies). With rate limits on, Deps.Limiter is
	// required.
	RateLimits *ratelimit.Config
	// LLMMaxBodyBytes is the largest body the LLM policy parses (default
	// DefaultLLMMaxBodyBytes); set it to server.grpc_max_recv_bytes.
	LLMMaxBodyBytes int
	// PeerIdentity maps mTLS peers (gRPC only) to identities.
	PeerIdentity PeerIdentityConfig
}

// RateLimitsOn reports whether cfg turns rate limiting on: a rate_limits
// section, or a route with a rate_limit that is not disabled.
func (cfg Config) RateLimitsOn() bool {
	if cfg.RateLimits != nil {
		return true
	}
	for _, r := range cfg.Routes {
		if r.RateLimit != nil && !r.RateLimit.Disabled && !r.Public {
			return true
		}
	}
	return false
}

// RateLimitRoutes describes the routes to ratelimit.NewPolicy and
// ratelimit.ValidatePolicy, in config order.
func RateLimitRoutes(routes []Route) []ratelimit.Route {
	out := make([]ratelimit.Route, len(routes))
	for i, r := range routes {
		out[i] = ratelimit.Route{Name: r.Name, Public: r.Public, Limit: r.RateLimit}
	}
	return out
}

// DefaultHeaders returns the default `headers` section.
func DefaultHeaders() Headers { return Headers{Prefix: "x-auth-", StripCredentials: true} }

// Validate reports every problem of the engine's sections of the
// configuration file (routes, default_route, headers and peer_identity),
// each as the key's path and the rule it breaks, joined with errors.Join.
// knownRole says whether a role is defined under roles. Whether role
// mapping can produce a required role, and whether a role grants a required
// permission, span sections and are checked by the config package.
// NewEngine trusts a Config that passed Validate.
func (cfg Config) Validate(knownRole func(string) bool) error {
	return errors.Join(
		validateRoutes("routes", cfg.Routes, knownRole),
		validateDefaultRoute("default_route", cfg.DefaultRoute),
		cfg.Headers.Validate("headers"),
		cfg.PeerIdentity.Validate("peer_identity", knownRole),
	)
}

// validateRoutes reports every problem of the routes list at path.
func validateRoutes(path string, routes []Route, knownRole func(string) bool) error {
	var errs []error
	names := make(map[string]int, len(routes))
	for i, r := range routes {
		p := fmt.Sprintf("%s[%d]", path, i)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: must be set (it names the route in logs)", p))
		} else if r.Name == ratelimit.DefaultRouteLabel {
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved (it labels checks that matched no route): choose another name", p, r.Name))
		} else if j, dup := names[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is already used by %s[%d]: route names must be unique", p, r.Name, path, j))
		} else {
			names[r.Name] = i
		}
		m := r.Match
		if m.Path != "" && m.PathPrefix != "" {
			errs = append(errs, fmt.Errorf("%s.match: set either path or path_prefix, not both", p))
		}
		if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
			errs = append(errs, fmt.Errorf("%s.match.path: %q must start with /", p, m.Path))
		}
		if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
			errs = append(errs, fmt.Errorf("%s.match.path_prefix: %q must start with /", p, m.PathPrefix))
		}
		if strings.ContainsAny(m.Path+m.PathPrefix, "?#") {
			errs = append(errs, fmt.Errorf("%s.match: paths must not contain a query or fragment (the query string is ignored when matching)", p))
		} else {
			// Requests are matched by their canonical path, so a route
			// written otherwise could never match (see canonicalPath).
			for _, kv := range [][2]string{{"path", m.Path}, {"path_prefix", m.PathPrefix}} {
				key, v := kv[0], kv[1]
				if c, refused := canonicalPath(v); v != "" && strings.HasPrefix(v, "/") && (refused != "" || c != v) {
					errs = append(errs, fmt.Errorf("%s.match.%s: %q must be a plain decoded path: no %%-escapes, \\, ;, control characters, empty (//) or dot (., ..) segments", p, key, v))
				}
			}
		}
		if m.Host != "" && (strings.ContainsAny(m.Host, "/: ") || strings.Contains(m.Host[1:], "*")) {
			errs = append(errs, fmt.Errorf("%s.match.host: %q must be a host name or *.domain, without port", p, m.Host))
		}
		for j, meth := range m.Methods {
			if !validMethod(meth) {
				errs = append(errs, fmt.Errorf("%s.match.methods[%d]: %q must be an upper-case HTTP method token such as GET or POST (requests with other methods are refused)", p, j, meth))
			}
		}
		q := r.Require
		set := 0
		if len(q.AnyRole) > 0 {
			set++
		}
		if len(q.Permissions) > 0 {
			set++
		}
		if q.Authenticated {
			set++
		}
		// require.model and require.tools add to the clause; on their own
		// they imply authenticated: true.
		llm := q.Model || q.Tools
		switch {
		case r.Public && set > 0:
			errs = append(errs, fmt.Errorf("%s: a public route must not have require (it is allowed without credentials)", p))
		case !r.Public && set == 0 && !llm:
			errs = append(errs, fmt.Errorf("%s.require: set one of any_role, permissions or authenticated: true (or public: true)", p))
		case set > 1:
			errs = append(errs, fmt.Errorf("%s.require: set only one of any_role, permissions or authenticated", p))
		}
		for j, role := range q.AnyRole {
			if knownRole != nil && !knownRole(role) {
				errs = append(errs, fmt.Errorf("%s.require.any_role[%d]: role %q is not defined under roles", p, j, role))
			}
		}
		for j, perm := range q.Permissions {
			if perm == "" || strings.ContainsAny(perm, " \t*") {
				errs = append(errs, fmt.Errorf("%s.require.permissions[%d]: %q must be a permission name without spaces or wildcards", p, j, perm))
			}
		}
		if err := validateLLMRoute(p, r.Public, r.LLM()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validateDefaultRoute checks the default_route value at path.
func validateDefaultRoute(path, v string) error {
	switch v {
	case DefaultRouteDeny, DefaultRouteAuthenticated:
		return nil
	}
	return fmt.Errorf("%s: %q is not valid: use deny or authenticated", path, v)
}

// Validate reports the problems of the headers section at path.
func (h Headers) Validate(path string) error {
	if !validHeaderPrefix(h.Prefix) {
		return fmt.Errorf("%s.prefix: %q must be a non-empty lower-case header name prefix such as x-auth-", path, h.Prefix)
	}
	return nil
}

func validHeaderPrefix(p string) bool {
	if p == "" || p != strings.ToLower(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !isTokenChar(p[i]) {
			return false
		}
	}
	// A prefix that would swallow headers Envoy or the upstream rely on is
	// refused.
	reserved := []string{"authorization", "x-api-key", "host", "content-", "x-envoy-", "x-forwarded-", "x-request-id", ":"}
	return !slices.ContainsFunc(reserved, func(r string) bool { return strings.HasPrefix(r, p) || strings.HasPrefix(p, r) })
}

// ValidHeaderName reports whether name is a lower-case HTTP header name that
// extauthz may set upstream.
func ValidHeaderName(name string) bool {
	// Hop-by-hop, credential, framing and routing headers, x-envoy-* and
	// x-extauthz-*, in any spelling: one list for claims_to_headers and
	// every other configured header name.
	return jwks.ValidHeaderToken(name) && jwks.ReservedHeader(name) == ""
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

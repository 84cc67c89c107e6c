package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/rolemap"
)

// fakeVerifier and fakeKeys stand in for jwks.Verifier and apikeys.Store in
// the unit tests of the decision table; the end-to-end tests use the real
// ones.
type fakeVerifier map[string]any // token -> *jwks.Claims or error

func (f fakeVerifier) Verify(_ context.Context, token string) (*jwks.Claims, error) {
	switch v := f[token].(type) {
	case *jwks.Claims:
		return v, nil
	case error:
		return nil, v
	}
	return nil, fmt.Errorf("fake: %w", jwks.ErrSignature)
}

type fakeKeys map[string]any // key -> *apikeys.Record or error

func (f fakeKeys) Lookup(_ context.Context, key string) (*apikeys.Record, error) {
	switch v := f[key].(type) {
	case *apikeys.Record:
		return v, nil
	case error:
		return nil, v
	}
	return nil, apikeys.ErrNotFound
}

var testRoles = map[string][]string{
	"viewer":    {"models:list"},
	"developer": {"models:list", "chat:invoke"},
	"admin":     {"*"},
}

var testMapping = rolemap.Mapping{
	Rules: []rolemap.Rule{
		{Groups: []string{"eng", "ml-team"}, Roles: []string{"developer"}},
		{Groups: []string{"platform-admins"}, Roles: []string{"admin"}},
	},
	DefaultRoles: []string{"viewer"},
}

var testRoutes = []Route{
	{Name: "health", Match: Match{PathPrefix: "/healthz"}, Public: true},
	{Name: "chat", Match: Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}}, Require: Require{Permissions: []string{"chat:invoke"}}},
	{Name: "models", Match: Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: Require{AnyRole: []string{"viewer", "developer", "admin"}}},
	{Name: "admin", Match: Match{Path: "/admin", Host: "*.internal.test"}, Require: Require{AnyRole: []string{"admin"}}},
	{Name: "tenant", Match: Match{PathPrefix: "/v1/embeddings", ContextExtensions: map[string]string{"tenant": "a"}}, Require: Require{Authenticated: true}},
}

const (
	jwtAlice   = "aaa.bbb.ccc" // eng -> developer
	jwtBob     = "bbb.ccc.ddd" // no groups -> viewer
	jwtExpired = "eee.fff.ggg"
	jwtNoKeys  = "nnn.kkk.sss"
	jwtOdd     = "ooo.ddd.ddd" // groups with a comma and a control char
	keyCarol   = "ek_carol"
	keyRevoked = "ek_revoked"
	keyDown    = "ek_down"
	keyTimeout = "ek_timeout"
)

func newTestEngine(t testing.TB, mut func(*Config)) *Engine {
	t.Helper()
	mapper, err := rolemap.New(testMapping, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Routes:       testRoutes,
		DefaultRoute: DefaultRouteDeny,
		Headers:      Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: "ek",
		ClaimHeaders: []string{"x-auth-email"},
	}
	if mut != nil {
		mut(&cfg)
	}
	v := fakeVerifier{
		jwtAlice: &jwks.Claims{Provider: "corp", Issuer: "https://issuer.test", Subject: "alice", Groups: []string{"ml-team", "eng"},
			Headers: []jwks.Header{{Name: "x-auth-email", Value: "alice@example.com"}}},
		jwtBob:     &jwks.Claims{Provider: "corp", Issuer: "https://issuer.test", Subject: "bob"},
		jwtExpired: fmt.Errorf("exp: %w", jwks.ErrExpired),
		jwtNoKeys:  fmt.Errorf("corp: %w", jwks.ErrNoKeys),
		jwtOdd:     &jwks.Claims{Issuer: "https://issuer.test", Subject: "odd\r\nx-auth-roles: admin", Groups: []string{"platform-admins,eng", "eng", "ab\x00c"}},
	}
	k := fakeKeys{
		keyCarol:   &apikeys.Record{ID: "key123", Owner: "carol", Groups: []string{"sales"}, Roles: []string{"developer"}},
		keyRevoked: fmt.Errorf("lookup: %w", apikeys.ErrRevoked),
		keyDown:    fmt.Errorf("hgetall: %w", apikeys.ErrUnavailable),
		keyTimeout: fmt.Errorf("hgetall: %w", errors.Join(apikeys.ErrUnavailable, context.DeadlineExceeded)),
	}
	e, err := NewEngine(cfg, Deps{Verifier: v, Keys: k, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func req(method, path string, headers ...string) *Request {
	h := map[string]string{}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	return &Request{Method: method, Host: "llm.example.com", Path: path, Headers: h}
}

func TestEngine_Decide(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name   string
		req    *Request
		code   Code
		reason Reason
		route  string
		method AuthMethod
	}{
		{"public route needs no credential", req("GET", "/healthz"), Allowed, ReasonPublicRoute, "health", MethodNone},
		{"public route ignores a bad credential", req("GET", "/healthz/live", "authorization", "Bearer garbage"), Allowed, ReasonPublicRoute, "health", MethodNone},
		{"no route is forbidden before authentication", req("GET", "/v2/secret"), Forbidden, ReasonNoRoute, "", MethodNone},
		{"method outside the route is no route", req("DELETE", "/v1/models"), Forbidden, ReasonNoRoute, "", MethodNone},
		{"no credential", req("POST", "/v1/chat/completions"), MissingCredentials, ReasonNoCredentials, "chat", MethodNone},
		{"non-bearer authorization is no credential", req("POST", "/v1/chat/completions", "authorization", "Basic YWxpY2U6eA=="), MissingCredentials, ReasonNoCredentials, "chat", MethodNone},
		{"empty bearer is malformed", req("POST", "/v1/chat/completions", "authorization", "Bearer "), InvalidToken, ReasonMalformedCredential, "chat", MethodNone},
		{"garbage bearer is invalid_token", req("POST", "/v1/chat/completions", "authorization", "Bearer hello"), InvalidToken, ReasonMalformedCredential, "chat", MethodNone},
		{"garbage x-api-key is invalid_api_key", req("POST", "/v1/chat/completions", "x-api-key", "hello"), InvalidAPIKey, ReasonMalformedKey, "chat", MethodAPIKey},
		{"valid JWT with permission", req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtAlice), Allowed, ReasonAuthorized, "chat", MethodJWT},
		{"bearer scheme is case-insensitive", req("POST", "/v1/chat/completions", "authorization", "bEaReR  "+jwtAlice), Allowed, ReasonAuthorized, "chat", MethodJWT},
		{"valid JWT without permission", req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtBob), Forbidden, ReasonInsufficientPerms, "chat", MethodJWT},
		{"default role reaches any_role route", req("GET", "/v1/models", "authorization", "Bearer "+jwtBob), Allowed, ReasonAuthorized, "models", MethodJWT},
		{"expired JWT", req("GET", "/v1/models", "authorization", "Bearer "+jwtExpired), InvalidToken, ReasonExpiredToken, "models", MethodJWT},
		{"unknown signature", req("GET", "/v1/models", "authorization", "Bearer xxx.yyy.zzz"), InvalidToken, ReasonBadSignature, "models", MethodJWT},
		{"JWKS never loaded is unavailable", req("GET", "/v1/models", "authorization", "Bearer "+jwtNoKeys), Unavailable, ReasonJWKSUnavailable, "models", MethodJWT},
		{"API key in bearer", req("POST", "/v1/chat/completions", "authorization", "Bearer "+keyCarol), Allowed, ReasonAuthorized, "chat", MethodAPIKey},
		{"API key in x-api-key", req("POST", "/v1/chat/completions", "x-api-key", keyCarol), Allowed, ReasonAuthorized, "chat", MethodAPIKey},
		{"bearer wins over x-api-key", req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtBob, "x-api-key", keyCarol), Forbidden, ReasonInsufficientPerms, "chat", MethodJWT},
		{"JWT in x-api-key is still a JWT", req("GET", "/v1/models", "x-api-key", jwtBob), Allowed, ReasonAuthorized, "models", MethodJWT},
		{"unknown API key", req("GET", "/v1/models", "x-api-key", "ek_nobody"), InvalidAPIKey, ReasonUnknownKey, "models", MethodAPIKey},
		{"revoked API key", req("GET", "/v1/models", "x-api-key", keyRevoked), InvalidAPIKey, ReasonRevokedKey, "models", MethodAPIKey},
		{"Redis down, key not cached", req("GET", "/v1/models", "x-api-key", keyDown), Unavailable, ReasonRedisUnavailable, "models", MethodAPIKey},
		{"Redis timeout", req("GET", "/v1/models", "x-api-key", keyTimeout), Unavailable, ReasonRedisTimeout, "models", MethodAPIKey},
		{"host wildcard and exact path", &Request{Method: "GET", Host: "A.Internal.Test:8443", Path: "/admin?x=1", Headers: map[string]string{"authorization": "Bearer " + jwtAlice}}, Forbidden, ReasonInsufficientRole, "admin", MethodJWT},
		{"host wildcard does not match the bare domain", &Request{Method: "GET", Host: "internal.test", Path: "/admin", Headers: map[string]string{"authorization": "Bearer " + jwtAlice}}, Forbidden, ReasonNoRoute, "", MethodNone},
		{"context extension matches", &Request{Method: "POST", Path: "/v1/embeddings", Headers: map[string]string{"authorization": "Bearer " + jwtBob}, ContextExtensions: map[string]string{"tenant": "a"}}, Allowed, ReasonAuthorized, "tenant", MethodJWT},
		{"context extension differs", &Request{Method: "POST", Path: "/v1/embeddings", Headers: map[string]string{"authorization": "Bearer " + jwtBob}, ContextExtensions: map[string]string{"tenant": "b"}}, Forbidden, ReasonNoRoute, "", MethodNone},
		{"prefix respects segment boundaries", req("GET", "/v1/modelsX", "authorization", "Bearer "+jwtBob), Forbidden, ReasonNoRoute, "", MethodNone},
		{"dot segments are refused", req("POST", "/healthz/../v1/chat/completions"), InvalidRequest, ReasonAmbiguousPath, "", MethodNone},
		{"encoded slash is refused", req("POST", "/healthz%2F..%2Fv1%2Fchat%2Fcompletions"), InvalidRequest, ReasonAmbiguousPath, "", MethodNone},
		{"double slash is refused", req("GET", "//v1//models", "authorization", "Bearer "+jwtBob), InvalidRequest, ReasonAmbiguousPath, "", MethodNone},
		{"undecodable path is refused", req("GET", "/healthz%zz"), InvalidRequest, ReasonInvalidPath, "", MethodNone},
		{"query string is ignored for matching", req("GET", "/healthz?next=/v1/chat"), Allowed, ReasonPublicRoute, "health", MethodNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(context.Background(), tt.req)
			got := struct {
				Code   string
				Reason Reason
				Route  string
				Method string
			}{d.Code.String(), d.Reason, d.Route, d.Method.String()}
			want := got
			want.Code, want.Reason, want.Route, want.Method = tt.code.String(), tt.reason, tt.route, tt.method.String()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decide mismatch (-want +got):\n%s", diff)
			}
			if d.Code != Allowed && (len(d.Set) > 0 || len(d.Remove) > 0) {
				t.Errorf("a denial carries upstream headers: set=%v remove=%v", d.Set, d.Remove)
			}
		})
	}
}

func TestEngine_DecideDefaultRouteAuthenticated(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.DefaultRoute = DefaultRouteAuthenticated })
	if d := e.Decide(context.Background(), req("GET", "/other")); d.Code != MissingCredentials {
		t.Errorf("unauthenticated on default route: %v, want missing_credentials", d.Code)
	}
	if d := e.Decide(context.Background(), req("GET", "/other", "authorization", "Bearer "+jwtBob)); d.Code != Allowed || d.Route != "" {
		t.Errorf("authenticated on default route: %v route %q, want allowed with no route", d.Code, d.Route)
	}
}

func TestEngine_IdentityHeaders(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name       string
		req        *Request
		wantSet    []Header
		wantRemove []string
	}{
		{
			name: "JWT identity, spoofed headers removed, credentials stripped",
			req: req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtAlice,
				"x-auth-subject", "mallory", "x-auth-roles", "admin", "x-auth-key-id", "forged", "x-auth-whatever", "x", "x-other", "kept"),
			wantSet: []Header{
				{"x-auth-subject", "alice"},
				{"x-auth-method", "jwt"},
				{"x-auth-issuer", "https://issuer.test"},
				{"x-auth-groups", "eng,ml-team"},
				{"x-auth-roles", "developer,viewer"},
				{"x-auth-email", "alice@example.com"},
			},
			// subject and roles are overwritten, so only the ones not set
			// are listed for removal.
			wantRemove: []string{"authorization", "x-auth-key-id", "x-auth-whatever"},
		},
		{
			name:    "API key identity: key id, no issuer; a claim header the key cannot set is removed",
			req:     req("POST", "/v1/chat/completions", "x-api-key", keyCarol, "x-auth-issuer", "https://evil", "x-auth-email", "ceo@example.com"),
			wantSet: []Header{{"x-auth-subject", "carol"}, {"x-auth-method", "api_key"}, {"x-auth-groups", "sales"}, {"x-auth-roles", "developer,viewer"}, {"x-auth-key-id", "key123"}},
			// x-auth-issuer is not set for API keys, so a forged one goes.
			wantRemove: []string{"x-api-key", "x-auth-email", "x-auth-issuer"},
		},
		{
			name:       "public route removes spoofed identity too",
			req:        req("GET", "/healthz", "x-auth-subject", "admin", "X-Ignored-Case", "x"),
			wantSet:    nil,
			wantRemove: []string{"x-auth-subject"},
		},
		{
			name: "control characters and commas cannot forge headers or groups",
			req:  req("GET", "/v1/models", "authorization", "Bearer "+jwtOdd),
			wantSet: []Header{
				{"x-auth-subject", "oddx-auth-roles: admin"},
				{"x-auth-method", "jwt"},
				{"x-auth-issuer", "https://issuer.test"},
				{"x-auth-groups", "eng"},
				{"x-auth-roles", "developer,viewer"},
			},
			wantRemove: []string{"authorization"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(context.Background(), tt.req)
			if d.Code != Allowed {
				t.Fatalf("Decide = %v (%s), want allowed", d.Code, d.Reason)
			}
			if diff := cmp.Diff(tt.wantSet, d.Set); diff != "" {
				t.Errorf("Set mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRemove, d.Remove); diff != "" {
				t.Errorf("Remove mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEngine_NoStripKeepsCredentials(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Headers.StripCredentials = false })
	d := e.Decide(context.Background(), req("GET", "/v1/models", "authorization", "Bearer "+jwtBob))
	if d.Code != Allowed || len(d.Remove) != 0 {
		t.Errorf("Decide = %v remove %v, want allowed with nothing removed", d.Code, d.Remove)
	}
}

func TestEngine_LateAllowFailsClosed(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := e.Decide(ctx, req("GET", "/v1/models", "authorization", "Bearer "+jwtBob))
	if d.Code != Unavailable || d.Reason != ReasonCheckTimeout {
		t.Errorf("Decide after deadline = %v/%s, want unavailable/check_timeout", d.Code, d.Reason)
	}
}

func TestEngine_DisabledAuthenticators(t *testing.T) {
	mapper, _ := rolemap.New(testMapping, testRoles)
	e, err := NewEngine(Config{Routes: testRoutes, Headers: DefaultHeaders(), APIKeyPrefix: "ek"}, Deps{Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cred string
		want Code
	}{{"Bearer " + jwtBob, InvalidToken}, {"Bearer ek_abc", InvalidAPIKey}} {
		if d := e.Decide(context.Background(), req("GET", "/v1/models", "authorization", tt.cred)); d.Code != tt.want {
			t.Errorf("%s: Decide = %v, want %v", tt.cred, d.Code, tt.want)
		}
	}
}

func TestBearer(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER\tabc ", "abc", true},
		{"Bearer", "", true},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"", "", false},
		{"  Bearer   abc  ", "abc", true},
	}
	for _, tt := range tests {
		got, ok := bearer(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a.b.c", true},
		{"eyJ.eyJ.", true}, // unsigned: reaches the verifier, refused there
		{"a.b", false},
		{"a.b.c.d", false},
		{".b.c", false},
		{"a..c", false},
		{"a.b.c=", false},
		{"a+b.c.d", false},
		{"a.b.c ", false},
	}
	for _, tt := range tests {
		if got := looksLikeJWT(tt.in); got != tt.want {
			t.Errorf("looksLikeJWT(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestCanonicalPath: a path is decoded once and matched as written; what
// upstreams would read differently is refused (issue 13 changed dot
// segments, repeated slashes, backslashes, encoded slashes and relative
// paths from "resolved" to "refused").
func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   string
		reason Reason
	}{
		{"plain", "/v1/models", "/v1/models", ""},
		{"query ignored", "/v1/models?x=1", "/v1/models", ""},
		{"trailing slash kept", "/v1/", "/v1/", ""},
		{"root", "/", "/", ""},
		{"encoded letters decoded", "/v1/%6Dodels", "/v1/models", ""},
		{"dot file", "/.well-known/x", "/.well-known/x", ""},
		{"fragment refused", "/v1/models?x=1#f", "", ReasonAmbiguousPath},
		{"empty", "", "", ReasonInvalidPath},
		{"dot-dot refused", "/a/../b", "", ReasonAmbiguousPath},
		{"dot refused", "/a/./b/", "", ReasonAmbiguousPath},
		{"repeated slashes refused", "//a///b", "", ReasonAmbiguousPath},
		{"backslash refused", `/a\..\b`, "", ReasonAmbiguousPath},
		{"encoded slash refused", "/a%2F..%2Fb", "", ReasonAmbiguousPath},
		{"encoded dots refused", "/%2e%2e/etc", "", ReasonAmbiguousPath},
		{"bad escape", "/a%zz", "", ReasonInvalidPath},
		{"encoded NUL", "/a%00b", "", ReasonInvalidPath},
		{"encoded percent", "/a%2541", "", ReasonInvalidPath},
		{"relative refused", "relative", "", ReasonAmbiguousPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := canonicalPath(tt.in)
			if got != tt.want || reason != tt.reason {
				t.Errorf("canonicalPath(%q) = %q, %q; want %q, %q", tt.in, got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestValidateRoutes(t *testing.T) {
	known := func(r string) bool { _, ok := testRoles[r]; return ok }
	tests := []struct {
		name   string
		routes []Route
		def    string
		want   string
	}{
		{"missing name", []Route{{Public: true}}, "deny", "routes[0].name: must be set"},
		{"duplicate name", []Route{{Name: "a", Public: true}, {Name: "a", Public: true}}, "deny", `routes[1].name: "a" is already used by routes[0]`},
		{"no require", []Route{{Name: "a"}}, "deny", "routes[0].require: set one of any_role, permissions or authenticated: true"},
		{"public with require", []Route{{Name: "a", Public: true, Require: Require{Authenticated: true}}}, "deny", "a public route must not have require"},
		{"two requires", []Route{{Name: "a", Require: Require{Authenticated: true, AnyRole: []string{"admin"}}}}, "deny", "set only one of"},
		{"unknown role", []Route{{Name: "a", Require: Require{AnyRole: []string{"root"}}}}, "deny", `routes[0].require.any_role[0]: role "root" is not defined under roles`},
		{"path and prefix", []Route{{Name: "a", Public: true, Match: Match{Path: "/a", PathPrefix: "/a"}}}, "deny", "set either path or path_prefix"},
		{"relative prefix", []Route{{Name: "a", Public: true, Match: Match{PathPrefix: "v1"}}}, "deny", `routes[0].match.path_prefix: "v1" must start with /`},
		{"lower-case method", []Route{{Name: "a", Public: true, Match: Match{Methods: []string{"get"}}}}, "deny", `routes[0].match.methods[0]: "get" must be an upper-case HTTP method`},
		{"method with a space", []Route{{Name: "a", Public: true, Match: Match{Methods: []string{"GET POST"}}}}, "deny", `routes[0].match.methods[0]: "GET POST" must be an upper-case HTTP method token`},
		{"method with a slash", []Route{{Name: "a", Public: true, Match: Match{Methods: []string{"GET/"}}}}, "deny", `routes[0].match.methods[0]: "GET/" must be an upper-case HTTP method token`},
		{"path with dot segments", []Route{{Name: "a", Public: true, Match: Match{Path: "/a/../b"}}}, "deny", `routes[0].match.path: "/a/../b" must be a plain decoded path`},
		{"prefix with an escape", []Route{{Name: "a", Public: true, Match: Match{PathPrefix: "/a%20b"}}}, "deny", `routes[0].match.path_prefix: "/a%20b" must be a plain decoded path`},
		{"prefix with a backslash", []Route{{Name: "a", Public: true, Match: Match{PathPrefix: `/a\b`}}}, "deny", `routes[0].match.path_prefix: "/a\\b" must be a plain decoded path`},
		{"prefix with empty segment", []Route{{Name: "a", Public: true, Match: Match{PathPrefix: "/a//b"}}}, "deny", `routes[0].match.path_prefix: "/a//b" must be a plain decoded path`},
		{"host with port", []Route{{Name: "a", Public: true, Match: Match{Host: "a.test:80"}}}, "deny", "must be a host name or *.domain, without port"},
		{"bad default route", nil, "allow", `default_route: "allow" is not valid: use deny or authenticated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{Routes: tt.routes, DefaultRoute: tt.def, Headers: DefaultHeaders()}.Validate(known)
			if err == nil || !contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := (Config{Routes: testRoutes, DefaultRoute: "deny", Headers: DefaultHeaders()}).Validate(known); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	for _, p := range []string{"", "X-Auth-", "x-", "x-forwarded-", "authorization"} {
		if err := (Config{DefaultRoute: "deny", Headers: Headers{Prefix: p}}).Validate(known); err == nil {
			t.Errorf("headers.prefix %q accepted, want refused", p)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

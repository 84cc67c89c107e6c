// Package authztest provides the engine fixture the front ends' tests
// share: a small route table and role mapping, hand-written fakes of the
// token verifier and the key store with a fixed set of credentials, and a
// concurrency-safe log sink. It mirrors the fixture of authz's own unit
// tests (authz/engine_test.go), which cannot import it.
package authztest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/rolemap"
)

// FakeVerifier stands in for jwks.Verifier: token -> *jwks.Claims or error;
// any other token fails with jwks.ErrSignature.
type FakeVerifier map[string]any

// Verify answers from the map.
func (f FakeVerifier) Verify(_ context.Context, token string) (*jwks.Claims, error) {
	switch v := f[token].(type) {
	case *jwks.Claims:
		return v, nil
	case error:
		return nil, v
	}
	return nil, fmt.Errorf("fake: %w", jwks.ErrSignature)
}

// FakeKeys stands in for apikeys.Store: key -> *apikeys.Record or error;
// any other key is apikeys.ErrNotFound.
type FakeKeys map[string]any

// Lookup answers from the map.
func (f FakeKeys) Lookup(_ context.Context, key string) (*apikeys.Record, error) {
	switch v := f[key].(type) {
	case *apikeys.Record:
		return v, nil
	case error:
		return nil, v
	}
	return nil, apikeys.ErrNotFound
}

// PanickingVerifier stands for a bug in the token verifier.
type PanickingVerifier struct{}

// Verify panics.
func (PanickingVerifier) Verify(context.Context, string) (*jwks.Claims, error) {
	panic("verifier bug")
}

// PanickingKeys stands for a bug in the key store.
type PanickingKeys struct{}

// Lookup panics.
func (PanickingKeys) Lookup(context.Context, string) (*apikeys.Record, error) {
	panic("key store bug")
}

// Roles are the fixture's roles and their permissions.
var Roles = map[string][]string{
	"viewer":    {"models:list"},
	"developer": {"models:list", "chat:invoke"},
	"admin":     {"*"},
}

// Mapping maps the fixture's groups to Roles.
var Mapping = rolemap.Mapping{
	Rules: []rolemap.Rule{
		{Groups: []string{"eng", "ml-team"}, Roles: []string{"developer"}},
		{Groups: []string{"platform-admins"}, Roles: []string{"admin"}},
	},
	DefaultRoles: []string{"viewer"},
}

// Routes are the fixture's routes: health (public), chat (POST, chat:invoke),
// models (GET, any role), admin (a host) and tenant (a context extension).
var Routes = []authz.Route{
	{Name: "health", Match: authz.Match{PathPrefix: "/healthz"}, Public: true},
	{Name: "chat", Match: authz.Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}}, Require: authz.Require{Permissions: []string{"chat:invoke"}}},
	{Name: "models", Match: authz.Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: authz.Require{AnyRole: []string{"viewer", "developer", "admin"}}},
	{Name: "admin", Match: authz.Match{Path: "/admin", Host: "*.internal.test"}, Require: authz.Require{AnyRole: []string{"admin"}}},
	{Name: "tenant", Match: authz.Match{PathPrefix: "/v1/embeddings", ContextExtensions: map[string]string{"tenant": "a"}}, Require: authz.Require{Authenticated: true}},
}

// The credentials NewEngine's fakes know.
const (
	JWTAlice   = "aaa.bbb.ccc" // eng -> developer
	JWTBob     = "bbb.ccc.ddd" // no groups -> viewer
	JWTExpired = "eee.fff.ggg"
	JWTNoKeys  = "nnn.kkk.sss"
	JWTOdd     = "ooo.ddd.ddd" // groups with a comma and a control char
	KeyCarol   = "ek_carol"
	KeyRevoked = "ek_revoked"
	KeyDown    = "ek_down"
	KeyTimeout = "ek_timeout"
)

// NewEngine returns an Engine over Routes, Mapping and the fakes, with
// credential stripping on and x-auth-email as a claim header; mut, when
// set, changes the Config first.
func NewEngine(t testing.TB, mut func(*authz.Config)) *authz.Engine {
	t.Helper()
	mapper, err := rolemap.New(Mapping, Roles)
	if err != nil {
		t.Fatal(err)
	}
	cfg := authz.Config{
		Routes:       Routes,
		DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: "ek",
		ClaimHeaders: []string{"x-auth-email"},
	}
	if mut != nil {
		mut(&cfg)
	}
	v := FakeVerifier{
		JWTAlice: &jwks.Claims{Provider: "corp", Issuer: "https://issuer.test", Subject: "alice", Groups: []string{"ml-team", "eng"},
			Headers: []jwks.Header{{Name: "x-auth-email", Value: "alice@example.com"}}},
		JWTBob:     &jwks.Claims{Provider: "corp", Issuer: "https://issuer.test", Subject: "bob"},
		JWTExpired: fmt.Errorf("exp: %w", jwks.ErrExpired),
		JWTNoKeys:  fmt.Errorf("corp: %w", jwks.ErrNoKeys),
		JWTOdd:     &jwks.Claims{Issuer: "https://issuer.test", Subject: "odd\r\nx-auth-roles: admin", Groups: []string{"platform-admins,eng", "eng", "ab\x00c"}},
	}
	k := FakeKeys{
		KeyCarol:   &apikeys.Record{ID: "key123", Owner: "carol", Groups: []string{"sales"}, Roles: []string{"developer"}},
		KeyRevoked: fmt.Errorf("lookup: %w", apikeys.ErrRevoked),
		KeyDown:    fmt.Errorf("hgetall: %w", apikeys.ErrUnavailable),
		KeyTimeout: fmt.Errorf("hgetall: %w", errors.Join(apikeys.ErrUnavailable, context.DeadlineExceeded)),
	}
	e, err := authz.NewEngine(cfg, authz.Deps{Verifier: v, Keys: k, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// DiscardLogger returns a logger that writes nowhere.
func DiscardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// SyncBuffer is a log sink safe for concurrent writes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Lines returns what was written, one element per line.
func (b *SyncBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

// PathRoutes are the routes of issue 13's examples: a public health check,
// admin routes that differ by method, and (with default_route:
// authenticated) everything else for any authenticated caller.
var PathRoutes = []authz.Route{
	{Name: "health", Match: authz.Match{PathPrefix: "/healthz"}, Public: true},
	{Name: "admin-delete", Match: authz.Match{PathPrefix: "/admin", Methods: []string{"DELETE"}}, Require: authz.Require{AnyRole: []string{"admin"}}},
	{Name: "admin-read", Match: authz.Match{PathPrefix: "/admin"}, Require: authz.Require{Authenticated: true}},
	{Name: "models", Match: authz.Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: authz.Require{AnyRole: []string{"admin"}}},
	{Name: "settings", Match: authz.Match{Path: "/settings"}, Require: authz.Require{AnyRole: []string{"admin"}}},
}

// NewPathEngine is NewEngine over PathRoutes with default_route:
// authenticated.
func NewPathEngine(t testing.TB) *authz.Engine {
	t.Helper()
	return NewEngine(t, func(c *authz.Config) {
		c.Routes = PathRoutes
		c.DefaultRoute = authz.DefaultRouteAuthenticated
	})
}

// NewLogServer returns a Server over Routes whose verifier and key store
// panic, logging JSON into the returned buffer, with its metrics on the
// returned registry.
func NewLogServer(t testing.TB, opts authz.ServerOptions) (*authz.Server, *SyncBuffer, *prometheus.Registry) {
	t.Helper()
	mapper, err := rolemap.New(Mapping, Roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{Routes: Routes, Headers: authz.DefaultHeaders(), APIKeyPrefix: "ek"},
		authz.Deps{Verifier: PanickingVerifier{}, Keys: PanickingKeys{}, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	logs := &SyncBuffer{}
	reg := prometheus.NewRegistry()
	return authz.NewServer(e, opts, slog.New(slog.NewJSONHandler(logs, nil)), authz.NewMetrics(reg)), logs, reg
}

// CheckCount returns extauthz_check_requests_total for the labels; the
// series must exist (every method is pre-initialised).
func CheckCount(t testing.TB, reg prometheus.Gatherer, transport, method, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "extauthz_check_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["transport"] == transport && l["method"] == method && l["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series transport=%s method=%s outcome=%s", transport, method, outcome)
	return 0
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/health"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// sighupReplacing rewrites the config file of p, replacing from by to,
// sends SIGHUP and waits for the "config reloaded" line of that reload.
func sighupReplacing(t *testing.T, p *proc, from, to string) {
	t.Helper()
	replaceInFile(t, p.cfg, from, to)
	n := strings.Count(strings.Join(p.log(), "\n"), "config reloaded")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool {
		return strings.Count(strings.Join(p.log(), "\n"), "config reloaded") > n
	}) {
		t.Fatal("no config reloaded line within 10s")
	}
}

// replaceInFile replaces the first from in the file at path by to.
func replaceInFile(t *testing.T, path, from, to string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(b), from, to, 1)
	if next == string(b) {
		t.Fatalf("%q not in %s", from, path)
	}
	writeFile(t, path, []byte(next))
}

// waitCheckStatus repeats r until it gets want, for at most within.
func waitCheckStatus(t *testing.T, c authv3.AuthorizationClient, r *authv3.CheckRequest, want int, within time.Duration) {
	t.Helper()
	var st int
	if !eventually(within, func() bool {
		_, st = check(t, c, r)
		return st == want
	}) {
		t.Fatalf("status %d after %s, want %d", st, within, want)
	}
}

// TestServe_ReloadKeepsJWKSRefresh runs the binary against a JWKS over
// HTTP: after a reload that only renames a route (the jwt section
// unchanged, so the verifier is reused), key rotation still reaches the
// server in both directions. Before the fix the reload cancelled the
// verifier's refresh goroutines with the old generation: the new key was
// refused and the removed key stayed trusted, with readiness green.
func TestServe_ReloadKeepsJWKSRefresh(t *testing.T) {
	idp := jwkstest.NewServer(t)
	policy := strings.Replace(defaultPolicy, "name: models", "name: models-v1", 1)
	y := fmt.Sprintf(`listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}
jwt:
  providers:
    - {name: corp, issuer: %q, audiences: [llm-gateway], jwks_url: %q, refresh_interval: 1s}
`, idp.Issuer(), idp.JWKSURL()) + policy
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfg, []byte(y))
	p := startProc(t, cfg)
	p.waitReady(t)
	client, _ := p.client(t)
	models := func(tok string) *authv3.CheckRequest {
		return checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + tok})
	}
	old := idp.Sign(idp.Claims("alice", "llm-gateway")) // signed by the key loaded at startup
	if _, st := check(t, client, models(old)); st != 200 {
		t.Fatalf("before the reload: status %d, want 200", st)
	}
	sighupReplacing(t, p, "name: models-v1", "name: models-v2")

	for _, tt := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a token of a removed key is refused after refresh_interval", func(t *testing.T) {
			idp.Rotate() // the new key is never presented: only the periodic refresh sees it
			waitCheckStatus(t, client, models(old), 401, 3*time.Second)
		}},
		{"a token of a new key is allowed after a rotation", func(t *testing.T) {
			idp.Rotate()
			// The unknown kid triggers a refetch at once.
			waitCheckStatus(t, client, models(idp.Sign(idp.Claims("alice", "llm-gateway"))), 200, 3*time.Second)
		}},
		{"readiness stays green with refresh alive", func(t *testing.T) {
			if st := p.readyz(t); st != 200 {
				t.Errorf("/readyz = %d, want 200", st)
			}
		}},
	} {
		t.Run(tt.name, tt.run)
	}
}

// TestServe_ReloadKeepsHMACSecretRotation: the same for an HMAC provider,
// whose secret file is polled by the verifier's refresh goroutine.
func TestServe_ReloadKeepsHMACSecretRotation(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hmac.key")
	oldSecret := filepath.Join(dir, "old.key")
	newSecret := filepath.Join(dir, "new.key")
	writeFile(t, oldSecret, []byte(strings.Repeat("first-", 7)+"\n"))
	writeFile(t, newSecret, []byte(strings.Repeat("second", 7)+"\n"))
	writeFile(t, secret, []byte(strings.Repeat("first-", 7)+"\n"))
	policy := strings.Replace(defaultPolicy, "name: models", "name: models-v1", 1)
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, []byte(`listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}
jwt:
  providers:
    - {name: shared, issuer: https://internal.test, audiences: [llm-gateway], hmac_secret_file: hmac.key}
`+policy))
	p := startProc(t, cfg)
	p.waitReady(t)
	client, _ := p.client(t)
	mint := func(secretFile string) *authv3.CheckRequest {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"token", "--hmac-secret-file", secretFile,
			"--iss", "https://internal.test", "--aud", "llm-gateway", "--sub", "svc"}, &out, &errb)
		if code != 0 {
			t.Fatalf("token: exit %d: %s", code, errb.String())
		}
		return checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + strings.TrimSpace(out.String())})
	}
	if _, st := check(t, client, mint(oldSecret)); st != 200 {
		t.Fatalf("before the reload: status %d, want 200", st)
	}
	sighupReplacing(t, p, "name: models-v1", "name: models-v2")
	b, err := os.ReadFile(newSecret)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, secret, b) // rotate the secret
	for _, tt := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int
	}{
		{"a token of the new secret is allowed", mint(newSecret), 200},
		{"a token of the old secret is refused", mint(oldSecret), 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			waitCheckStatus(t, client, tt.req, tt.status, 3*time.Second)
		})
	}
	if st := p.readyz(t); st != 200 {
		t.Errorf("/readyz = %d, want 200", st)
	}
}

// goroutinesIn counts the goroutines whose stack runs fn (a qualified
// function name such as "jwks.(*provider).run").
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), fn+"(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// newInProcessServer builds the first generation from the config file at
// path and a server around it, as serve does, without listeners. The
// current generation is closed when the test ends.
func newInProcessServer(t *testing.T, path string) *server {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	m := newMetrics()
	p, err := build(cfg, nil, logger, m)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{path: path, logger: logger, level: new(slog.LevelVar), metrics: m, health: health.NewServer()}
	s.cur.Store(p)
	s.authz = authz.NewServer(p.engine, cfg.ServerOptions(), logger, m.authz)
	s.state.Store(&readiness{Checks: map[string]string{}})
	t.Cleanup(func() {
		s.closeRetired()
		s.cur.Load().close()
	})
	return s
}

// TestReload_LongLivedPartsStopWithTheirLastGeneration: the verifier, key
// store, rate limiter and introspection client outlive the generation that
// built them. A reload that leaves a part's section unchanged keeps the part
// running; a generation built and discarded stops only what it alone holds;
// a reload that changes the section stops the old part once no generation
// holds it; the last generation's close stops everything (goleak).
func TestReload_LongLivedPartsStopWithTheirLastGeneration(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last, after every other cleanup
	redis := apikeystest.StartServer(t)
	idp := jwkstest.NewServer(t)
	intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"active":false}`)
	}))
	t.Cleanup(intro.Close)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "intro.secret"), []byte("s3cret"))
	base := fmt.Sprintf(`listen: {grpc: 127.0.0.1:0}
jwt:
  providers:
    - {name: corp, issuer: %q, audiences: [llm-gateway], jwks_url: %q, refresh_interval: 1h}
api_keys:
  cache_ttl: 30s
  redis: {addrs: [%q]}
rate_limits:
  redis: {addrs: [%q]}
  timeout: 100ms
  default: {requests: 100, per: 1m}
introspection: {endpoint: %q, client_id: extauthz, client_secret_file: intro.secret, cache_ttl: 60s}
`, idp.Issuer(), idp.JWKSURL(), redis.URL(), redis.URL(), intro.URL) + defaultPolicy

	tests := []struct {
		name   string
		change [2]string // the section edit
		part   func(p *parts) any
		// instances counts the running instances of this kind of part
		// (-1: not observable).
		instances func(t *testing.T) int
		// closed reports whether part has been stopped (nil: not
		// observable).
		closed func(part any) bool
	}{
		{
			name:      "jwt",
			change:    [2]string{"refresh_interval: 1h", "refresh_interval: 2h"},
			part:      func(p *parts) any { return p.verifier },
			instances: func(*testing.T) int { return goroutinesIn("jwks.(*provider).run") },
		},
		{
			name:      "api_keys",
			change:    [2]string{"cache_ttl: 30s", "cache_ttl: 31s"},
			part:      func(p *parts) any { return p.store },
			instances: func(*testing.T) int { return goroutinesIn("apikeys.(*redisBackend).subscribe") },
			closed: func(part any) bool {
				return part.(interface{ Ping(context.Context) error }).Ping(context.Background()) != nil
			},
		},
		{
			name:      "rate_limits",
			change:    [2]string{"timeout: 100ms", "timeout: 150ms"},
			part:      func(p *parts) any { return p.limiter },
			instances: func(*testing.T) int { return -1 },
			closed: func(part any) bool {
				return part.(interface{ Ping(context.Context) error }).Ping(context.Background()) != nil
			},
		},
		{
			name:      "introspection",
			change:    [2]string{"cache_ttl: 60s", "cache_ttl: 61s"},
			part:      func(p *parts) any { return p.intro },
			instances: func(*testing.T) int { return -1 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yaml")
			writeFile(t, path, []byte(base))
			s := newInProcessServer(t, path)
			wantInstances := func(want int) {
				t.Helper()
				if tt.instances(t) < 0 {
					return
				}
				var got int
				if !eventually(10*time.Second, func() bool {
					got = tt.instances(t)
					return got == want
				}) {
					t.Fatalf("%d running instances, want %d", got, want)
				}
			}
			wantClosed := func(part any, want bool) {
				t.Helper()
				if tt.closed == nil {
					return
				}
				// A replaced generation is closed after its drain.
				deadline := time.Now().Add(10 * time.Second)
				for tt.closed(part) != want {
					if !want || time.Now().After(deadline) {
						t.Fatalf("part closed = %v, want %v", !want, want)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			first := tt.part(s.cur.Load())
			wantInstances(1)
			wantClosed(first, false)

			// A reload that only renames a route keeps the part running.
			replaceInFile(t, path, "name: models", "name: models-renamed")
			s.reload("test")
			if got := tt.part(s.cur.Load()); got != first {
				t.Fatal("a reload with the section unchanged built a new part")
			}
			wantInstances(1)
			wantClosed(first, false)

			// A generation with the section changed is built and discarded
			// (as when a later part of a reload fails): it stops its own
			// part, not the one the current generation holds.
			replaceInFile(t, path, tt.change[0], tt.change[1])
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			discarded, err := build(cfg, s.cur.Load(), s.logger, s.metrics)
			if err != nil {
				t.Fatal(err)
			}
			other := tt.part(discarded)
			if other == first {
				t.Fatal("a changed section reused the part")
			}
			wantInstances(2)
			discarded.close()
			wantInstances(1)
			wantClosed(other, true)
			wantClosed(first, false)

			// The reload that changes the section stops the old part once
			// its last generation is gone: after the drain of the replaced
			// generation, during which checks that started on it finish on
			// running parts.
			s.reload("test")
			second := tt.part(s.cur.Load())
			if second == first {
				t.Fatal("a reload that changed the section kept the part")
			}
			wantClosed(first, false)
			wantInstances(1)
			wantClosed(first, true)
			wantClosed(second, false)

			// Closing the last generation stops everything.
			s.cur.Load().close()
			wantInstances(0)
			wantClosed(second, true)
		})
	}
}

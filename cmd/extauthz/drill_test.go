package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// jwksURLConfig writes a config whose only provider fetches its keys from
// idp over HTTP, with a short fetch_timeout and refresh_interval and the
// verified-token cache off (every check verifies against the current keys).
func jwksURLConfig(t *testing.T, idp *jwkstest.Server) string {
	t.Helper()
	y := fmt.Sprintf(`listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0, admin: 127.0.0.1:0}
server: {check_timeout: 2s}
jwt:
  cache: {disabled: true}
  providers:
    - name: idp
      issuer: %s
      audiences: [llm-gateway]
      jwks_url: %s
      fetch_timeout: 500ms
      refresh_interval: 1s
`, idp.Issuer(), idp.JWKSURL()) + defaultPolicy
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readyz returns the status of the admin /readyz.
func (p *proc) readyz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// idpToken returns a fresh token of idp for sub in group eng (a developer).
func idpToken(idp *jwkstest.Server, sub string, opts ...jwkstest.SignOption) string {
	c := idp.Claims(sub, "llm-gateway")
	c["groups"] = []string{"eng"}
	return idp.Sign(jwt.MapClaims(c), opts...)
}

// TestServe_JWKSSlowAtStartup: a JWKS endpoint slower than fetch_timeout
// when the process starts leaves it not ready (gRPC health NOT_SERVING,
// /readyz 503), and every JWT check is answered 503 unavailable, never an
// allow; once the endpoint answers in time, the background retry loads the
// keys and the same token is allowed.
func TestServe_JWKSSlowAtStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("process drill: waits for a JWKS retry")
	}
	idp := jwkstest.NewServer(t)
	// Twenty times fetch_timeout: far enough from it that the time a busy
	// machine takes to start the process cannot blur the two.
	idp.SetDelay(10 * time.Second)
	start := time.Now()
	p := startProc(t, jwksURLConfig(t, idp))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("startup took %v: it must wait for a slow JWKS at most about fetch_timeout", took)
	}
	client, health := p.client(t)
	tok := idpToken(idp, "alice")
	chat := checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + tok})

	for i := range 5 {
		if code, st := check(t, client, chat); code != 14 || st != 503 {
			t.Fatalf("JWT check %d before any JWKS loaded: code %d status %d, want 14 503", i, code, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := p.readyz(t); st != 503 {
		t.Errorf("readyz = %d before any JWKS loaded, want 503", st)
	}
	hr, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health = %v, %v; want NOT_SERVING", hr.GetStatus(), err)
	}
	p.waitLog(t, "jwks refresh failed", `"provider":"idp"`)

	idp.SetDelay(0)
	recovered := time.Now()
	deadline := recovered.Add(15 * time.Second)
	for {
		code, st := check(t, client, chat)
		if st == 200 {
			break
		}
		if code != 14 || st != 503 {
			t.Fatalf("JWT check while keys load: code %d status %d, want 14 503 or an allow", code, st)
		}
		if time.Now().After(deadline) {
			t.Fatal("keys not loaded 15s after the JWKS endpoint recovered")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("allowed %v after the JWKS endpoint recovered", time.Since(recovered).Round(time.Millisecond))
	p.waitReady(t)
}

// TestServe_JWKSFailsAfterStartup: once keys are loaded, a JWKS endpoint
// that answers 500, then garbage, then is gone entirely does not take them
// away: new tokens signed with the loaded keys keep being allowed, readiness
// stays up, each failure is counted and logged, and a token with a kid
// outside the kept keys is refused 401, not allowed.
func TestServe_JWKSFailsAfterStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("process drill: waits for failed refreshes")
	}
	idp := jwkstest.NewServer(t)
	p := startProc(t, jwksURLConfig(t, idp))
	p.waitReady(t)
	client, _ := p.client(t)
	failures := map[string]string{"provider": "idp", "result": "failure"}

	n := 0
	allowFresh := func(phase string) {
		t.Helper()
		n++
		tok := idpToken(idp, fmt.Sprintf("user-%d", n))
		if code, st := check(t, client, checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + tok})); st != 200 {
			t.Errorf("%s: fresh token: code %d status %d, want 200 with the last good keys", phase, code, st)
		}
		foreign := idpToken(idp, "mallory", jwkstest.WithKey(jwkstest.MustKey(t, "RS256")))
		if code, st := check(t, client, checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + foreign})); code != 16 || st != 401 {
			t.Errorf("%s: token of an unknown key: code %d status %d, want 16 401", phase, code, st)
		}
		if st := p.readyz(t); st != 200 {
			t.Errorf("%s: readyz = %d, want 200 (keys are loaded)", phase, st)
		}
	}
	allowFresh("serving")

	for _, tc := range []struct {
		name  string
		apply func()
	}{
		{"JWKS answers 500", func() { idp.SetMode(jwkstest.Fail500) }},
		{"JWKS answers garbage", func() { idp.SetMode(jwkstest.Garbage) }},
		{"JWKS answers an empty key set", func() { idp.SetMode(jwkstest.Empty) }},
		{"JWKS unreachable", idp.Close},
	} {
		before := value(t, p.scrape(t), "extauthz_jwks_refresh_total", failures)
		tc.apply()
		if !eventually(10*time.Second, func() bool {
			return value(t, p.scrape(t), "extauthz_jwks_refresh_total", failures) >= before+2
		}) {
			t.Fatalf("%s: no failed refresh counted within 10s", tc.name)
		}
		allowFresh(tc.name)
	}
	p.waitLog(t, "jwks refresh failed", `"keys_kept":3`)
	if got := value(t, p.scrape(t), "extauthz_jwks_keys", map[string]string{"provider": "idp"}); got != 3 {
		t.Errorf("extauthz_jwks_keys = %v after the failures, want the 3 kept keys", got)
	}
}

package envoyauthz_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/rolemap"
)

// TestCheck_OpaqueTokenGolden runs Checks with opaque bearer tokens over a
// real gRPC connection against a real RFC 7662 endpoint (httptest): an
// active token is allowed with x-auth-method: opaque, an inactive one is
// 401 invalid_token, and an endpoint that is down is 503, never an allow.
func TestCheck_OpaqueTokenGolden(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exp := time.Now().Add(time.Hour).Unix()
	idp := startIdP(t, map[string]string{
		"opaque-active-alice": fmt.Sprintf(`{"active":true,"sub":"alice","groups":["eng"],"client_id":"web","exp":%d}`, exp),
		"opaque-revoked":      `{"active":false}`,
	})
	requests, secretFile := &idp.requests, idp.secretFile

	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	ic, err := introspect.New(ctx, introspect.Config{Endpoint: idp.URL + "/oauth2/introspect", ClientID: "extauthz", ClientSecretFile: secretFile, Timeout: 200 * time.Millisecond},
		introspect.Deps{Logger: logger, Metrics: introspect.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	mapper, err := rolemap.New(policy.mapping, policy.roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: policy.routes, DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: "ek",
	}, authz.Deps{Introspector: ic, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: time.Second, AllowSampleRate: 1}, logger, authz.NewMetrics(reg))
	client := serveBufconn(t, srv)

	bearer := func(tok string) map[string]string {
		return map[string]string{"authorization": "Bearer " + tok, "x-auth-subject": "mallory", "x-request-id": "o1"}
	}
	check := func(t *testing.T, name string, req *authv3.CheckRequest) {
		t.Helper()
		resp, err := client.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check returned an RPC error: %v", err)
		}
		golden(t, name, resp, nil)
	}
	tests := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"allowed_opaque_token", checkRequest("POST", "/v1/chat/completions", bearer("opaque-active-alice"))},
		{"forbidden_opaque_token", checkRequest("GET", "/admin/users", bearer("opaque-active-alice"))},
		{"invalid_token_inactive_opaque", checkRequest("GET", "/v1/models", bearer("opaque-revoked"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.name, tt.req) })
	}
	// The active token was introspected once and then served from cache.
	if n := requests.Load(); n != 2 {
		t.Errorf("introspection requests = %d, want 2 (one per token)", n)
	}
	// A JWT-shaped credential never goes to the endpoint.
	check(t, "invalid_token_jwt_shape_with_introspection", checkRequest("GET", "/v1/models", bearer("aaa.bbb.ccc")))
	if n := requests.Load(); n != 2 {
		t.Errorf("introspection requests = %d after a JWT-shaped token, want 2", n)
	}

	idp.Close() // the endpoint goes down
	t.Run("unavailable_introspection_down", func(t *testing.T) {
		check(t, "unavailable_introspection_down", checkRequest("GET", "/v1/models", bearer("opaque-never-seen")))
	})
	// A cached active token keeps working while the endpoint is down.
	t.Run("allowed_opaque_token_cached", func(t *testing.T) {
		check(t, "allowed_opaque_token", checkRequest("POST", "/v1/chat/completions", bearer("opaque-active-alice")))
	})

	for _, c := range []struct {
		outcome string
		want    float64
	}{{"allowed", 2}, {"forbidden", 1}, {"invalid_token", 1}, {"unavailable", 1}} {
		if got := checkCount(t, reg, "grpc", "opaque", c.outcome); got != c.want {
			t.Errorf(`extauthz_check_requests_total{transport="grpc",method="opaque",outcome=%q} = %v, want %v`, c.outcome, got, c.want)
		}
	}
	out := logs.String()
	for _, want := range []string{`"reason":"inactive_token"`, `"reason":"introspection_unavailable"`, `"method":"opaque"`, `"subject":"alice"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the decision log lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{"opaque-active-alice", "opaque-revoked", "opaque-never-seen", "s3cret"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}
}

// introspectionIdP is a real RFC 7662 endpoint (httptest) that answers the
// tokens it was given (anything else is inactive) to the client extauthz
// with secret s3cret, and counts the requests it receives.
type introspectionIdP struct {
	*httptest.Server
	requests   atomic.Int64
	secretFile string // holds the client secret, for client_secret_file
}

func startIdP(t *testing.T, answers map[string]string) *introspectionIdP {
	t.Helper()
	idp := &introspectionIdP{secretFile: filepath.Join(t.TempDir(), "client-secret")}
	if err := os.WriteFile(idp.secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	idp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.requests.Add(1)
		if id, secret, ok := r.BasicAuth(); !ok || id != "extauthz" || secret != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, ok := answers[r.PostFormValue("token")]
		if !ok {
			body = `{"active":false}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(idp.Close)
	return idp
}

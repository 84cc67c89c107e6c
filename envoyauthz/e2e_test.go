package envoyauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/envoyauthz"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
	"github.com/extauthz/extauthz/rolemap"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current responses")

// stack is a real engine over real parts: a jwkstest JWKS server, a second
// provider whose JWKS endpoint is down, and an API-key store.
type stack struct {
	idp    *jwkstest.Server
	down   string // issuer of the provider that never loads keys
	store  *apikeys.Store
	server *authz.Server
	client authv3.AuthorizationClient
	logs   *logtest.Buffer
}

var policy = struct {
	roles   map[string][]string
	mapping rolemap.Mapping
	routes  []authz.Route
}{
	roles: map[string][]string{"viewer": {"models:list"}, "developer": {"models:list", "chat:invoke"}, "admin": {"*"}},
	mapping: rolemap.Mapping{
		Rules:        []rolemap.Rule{{Groups: []string{"eng"}, Roles: []string{"developer"}}},
		DefaultRoles: []string{"viewer"},
	},
	routes: []authz.Route{
		{Name: "health", Match: authz.Match{PathPrefix: "/healthz"}, Public: true},
		{Name: "chat", Match: authz.Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}}, Require: authz.Require{Permissions: []string{"chat:invoke"}}},
		{Name: "models", Match: authz.Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: authz.Require{AnyRole: []string{"viewer"}}},
		{Name: "admin", Match: authz.Match{PathPrefix: "/admin"}, Require: authz.Require{AnyRole: []string{"admin"}}},
	},
}

func newStack(t *testing.T, keys apikeys.Config) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idp := jwkstest.NewServer(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more

	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	jcfg := jwks.Default()
	jcfg.Providers = []jwks.ProviderConfig{
		{Name: "idp", Issuer: idp.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: idp.JWKSURL(), ClaimsToHeaders: map[string]string{"email": "x-auth-email"}},
		{Name: "down", Issuer: "https://down.test", Audiences: []string{"llm-gateway"}, JWKSURL: deadURL + "/jwks.json"},
	}
	for i := range jcfg.Providers {
		jcfg.Providers[i].ApplyDefaults()
	}
	v, err := jwks.New(ctx, jcfg, jwks.Deps{Logger: logger, Metrics: jwks.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	store, err := apikeys.New(ctx, keys, apikeys.Deps{Logger: logger, Metrics: apikeys.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mapper, err := rolemap.New(policy.mapping, policy.roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: policy.routes, DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: keys.Prefix, ClaimHeaders: []string{"x-auth-email"},
	}, authz.Deps{Verifier: v, Keys: store, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: time.Second, AllowSampleRate: 1}, logger, authz.NewMetrics(reg))

	client := serveBufconn(t, srv)

	// Wait until the reachable provider has its keys.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tok := sign(t, idp, jwt.MapClaims{"sub": "probe"})
		if _, err := v.Verify(ctx, tok); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("JWKS did not load within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &stack{idp: idp, down: "https://down.test", store: store, server: srv, client: client, logs: logs}
}

// sign returns a token from the IdP's RS256 key with sane defaults that
// claims may override (a nil value removes a claim).
func sign(t *testing.T, idp *jwkstest.Server, claims jwt.MapClaims) string {
	t.Helper()
	return signWith(t, idp.Key("RS256"), idp.Issuer(), claims, nil)
}

func signWith(t *testing.T, k *jwkstest.Key, iss string, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": iss, "aud": "llm-gateway", "sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := k.Sign(c, header)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "llm.example.com", Headers: headers},
	}}}
}

// golden compares resp, as indented protojson, with testdata/<name>.golden.
// replace maps volatile strings (generated ids) to stable placeholders.
func golden(t *testing.T, name string, resp *authv3.CheckResponse, replace map[string]string) {
	t.Helper()
	raw, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil { // protojson's own spacing is unstable by design
		t.Fatal(err)
	}
	got := buf.String() + "\n"
	for from, to := range replace {
		got = strings.ReplaceAll(got, from, to)
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./authz -run TestCheck_Golden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// TestCheck_Golden runs one Check per row of the response table over a real
// gRPC connection and compares the whole CheckResponse with a golden file.
func TestCheck_Golden(t *testing.T) {
	keys := apikeys.Default()
	st := newStack(t, keys)
	ctx := context.Background()
	secret, rec, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "carol", Groups: []string{"eng"}, Description: "golden"})
	if err != nil {
		t.Fatal(err)
	}
	revokedSecret, revoked, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.store.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	alice := sign(t, st.idp, jwt.MapClaims{"groups": []string{"eng"}, "email": "alice@example.com"})
	bob := sign(t, st.idp, jwt.MapClaims{"sub": "bob"})
	expired := sign(t, st.idp, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
	unsigned := strings.Join(strings.Split(alice, ".")[:2], ".") + "."
	noneHeader := `eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0` // {"alg":"none","typ":"JWT"}
	algNone := noneHeader + "." + strings.Split(alice, ".")[1] + "."
	downTok := signWith(t, st.idp.Key("RS256"), st.down, nil, nil)

	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		replace map[string]string
	}{
		{"allowed_jwt", checkRequest("POST", "/v1/chat/completions", map[string]string{
			"authorization": "Bearer " + alice, "x-auth-subject": "mallory", "x-auth-key-id": "forged", "x-request-id": "r1"}), nil},
		{"allowed_api_key", checkRequest("POST", "/v1/chat/completions", map[string]string{"x-api-key": secret}), map[string]string{rec.ID: "KEY_ID"}},
		{"allowed_public", checkRequest("GET", "/healthz", map[string]string{"x-auth-roles": "admin"}), nil},
		{"missing_credentials", checkRequest("GET", "/v1/models", nil), nil},
		{"invalid_token_expired", checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + expired}), nil},
		{"invalid_token_unsigned", checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + unsigned}), nil},
		{"invalid_token_alg_none", checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + algNone}), nil},
		{"invalid_api_key_revoked", checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + revokedSecret}), nil},
		{"invalid_api_key_malformed", checkRequest("GET", "/v1/models", map[string]string{"x-api-key": "ek_notakey"}), nil},
		{"forbidden_permission", checkRequest("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + bob}), nil},
		{"forbidden_no_route", checkRequest("GET", "/v2/unknown", map[string]string{"authorization": "Bearer " + alice}), nil},
		{"unavailable_jwks", checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + downTok}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := st.client.Check(ctx, tt.req)
			if err != nil {
				t.Fatalf("Check returned an RPC error: %v", err)
			}
			if tt.replace == nil {
				tt.replace = map[string]string{}
			}
			tt.replace[st.idp.Issuer()] = "ISSUER"
			golden(t, tt.name, resp, tt.replace)
		})
	}

	// The decision log carries every decision and never a credential.
	logs := st.logs.String()
	for _, secret := range []string{alice, bob, expired, secret, revokedSecret, strings.Split(alice, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains a credential")
		}
	}
	if n := strings.Count(logs, `"msg":"decision"`); n != len(tests) {
		t.Errorf("decision log lines = %d, want %d", n, len(tests))
	}
}

// TestCheck_RedisOutage proves the fail-closed behaviour with a real Redis:
// a cached key keeps working while Redis is down, an uncached key is refused
// with 503, and everything recovers when Redis returns.
func TestCheck_RedisOutage(t *testing.T) {
	redis := apikeystest.StartServer(t)
	keys := apikeys.Default()
	keys.Redis = &apikeys.RedisConfig{Addrs: []string{redis.URL()}, Timeout: 100 * time.Millisecond}
	st := newStack(t, keys)
	ctx := context.Background()
	cached, _, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "carol", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	uncached, _, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "erin", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	status := func(key string) (int32, int) {
		resp, err := st.client.Check(ctx, checkRequest("GET", "/v1/models", map[string]string{"x-api-key": key}))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			return resp.GetStatus().GetCode(), int(d.GetStatus().GetCode())
		}
		return resp.GetStatus().GetCode(), 200
	}
	if _, s := status(cached); s != 200 {
		t.Fatalf("before outage: %d, want 200", s)
	}
	redis.Stop()
	start := time.Now()
	if _, s := status(cached); s != 200 {
		t.Errorf("cached key during outage: %d, want 200", s)
	}
	if c, s := status(uncached); c != 14 || s != 503 {
		t.Errorf("uncached key during outage: code %d status %d, want 14/503", c, s)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("checks during the outage took %v, want bounded by the Redis timeout", el)
	}
	redis.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, s := status(uncached); s == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("did not recover within 5s of Redis returning")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveBufconn serves srv's gRPC front end on an in-memory connection for
// the test's lifetime and returns a client of it.
func serveBufconn(t *testing.T, srv *authz.Server) authv3.AuthorizationClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, envoyauthz.New(srv))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

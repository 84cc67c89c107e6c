package envoyauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/envoyauthz"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
	"github.com/extauthz/extauthz/rolemap"
)

// benchEngine returns the Engine of authz's BenchmarkServerDecide over the
// same real parts (a jwkstest JWKS over httptest, jwks.Verifier with its
// verified-token cache, an embedded apikeys.Store) and a typical RS256
// access token it allows on the chat route.
func benchEngine(b *testing.B) (*authz.Engine, string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	idp := jwkstest.NewServer(b)
	cfg := jwks.Default()
	cfg.Providers = []jwks.ProviderConfig{{
		Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: idp.JWKSURL(),
		ClaimsToHeaders: map[string]string{"email": "x-auth-email"},
	}}
	v, err := jwks.New(ctx, cfg, jwks.Deps{Logger: logger, Metrics: jwks.NewMetrics(reg)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	if !v.Ready() {
		b.Fatal("the JWKS did not load")
	}
	store, err := apikeys.New(ctx, apikeys.Default(), apikeys.Deps{Logger: logger, Metrics: apikeys.NewMetrics(reg)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	mapper, err := rolemap.New(rolemap.Mapping{
		Rules: []rolemap.Rule{
			{Groups: []string{"eng", "ml-team"}, Roles: []string{"developer"}},
			{Groups: []string{"platform-admins"}, Roles: []string{"admin"}},
		},
		DefaultRoles: []string{"viewer"},
	}, map[string][]string{"viewer": {"models:list"}, "developer": {"models:list", "chat:invoke"}, "admin": {"*"}})
	if err != nil {
		b.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: []authz.Route{
			{Name: "health", Match: authz.Match{PathPrefix: "/healthz"}, Public: true},
			{Name: "chat", Match: authz.Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}}, Require: authz.Require{Permissions: []string{"chat:invoke"}}},
			{Name: "completions", Match: authz.Match{PathPrefix: "/v1/completions", Methods: []string{"POST"}}, Require: authz.Require{Permissions: []string{"chat:invoke"}}},
			{Name: "models", Match: authz.Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: authz.Require{AnyRole: []string{"viewer", "developer", "admin"}}},
		},
		DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: "ek",
		ClaimHeaders: []string{"x-auth-email"},
	}, authz.Deps{Verifier: v, Keys: store, Mapper: mapper})
	if err != nil {
		b.Fatal(err)
	}
	c := idp.Claims("alice", "llm-gateway")
	c["groups"] = []string{"ml-team", "eng", "platform"}
	c["email"] = "alice@example.com"
	c["name"] = "Alice Example"
	c["scope"] = "openid profile email"
	c["jti"] = "3f2b1c9e-8d7a-4b6c-9e0f-1a2b3c4d5e6f"
	return e, idp.Sign(c, jwkstest.WithAlg("RS256"))
}

// envoyHeaders are the headers Envoy's ext_authz filter sends for a chat
// completion: pseudo-headers and the usual client and proxy headers besides
// the credential.
func envoyHeaders(credHeader, cred string) map[string]string {
	return map[string]string{
		":authority":        "llm.example.com",
		":method":           "POST",
		":path":             "/v1/chat/completions",
		":scheme":           "https",
		"content-type":      "application/json",
		"content-length":    "512",
		"user-agent":        "OpenAI/Python 1.40.0",
		"accept":            "application/json",
		"x-forwarded-proto": "https",
		"x-request-id":      "6f1c1f3e-7a55-4f0e-9d3b-2f8a3c1e0b9d",
		credHeader:          cred,
	}
}

// BenchmarkCheck measures the Envoy gRPC front end: in process (Check's own
// translation and response building on top of authz.Server.DecideOn), and over a
// real loopback TCP connection through grpc-go, client and server in this
// process, one call at a time and with parallel callers.
func BenchmarkCheck(b *testing.B) {
	e, tok := benchEngine(b)
	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	s := authz.NewServer(e, authz.ServerOptions{AllowSampleRate: 1}, logger, authz.NewMetrics(prometheus.NewRegistry()))
	g := envoyauthz.New(s)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Id: "123", Method: "POST", Host: "llm.example.com", Path: "/v1/chat/completions", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: envoyHeaders("authorization", "Bearer "+tok),
		},
	}}}
	check := func(b *testing.B, resp *authv3.CheckResponse, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetOkResponse() == nil {
			b.Fatalf("denied: %v", resp.GetStatus())
		}
	}

	b.Run("jwt_cached_in_process", func(b *testing.B) {
		resp, err := g.Check(ctx, req)
		check(b, resp, err)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = g.Check(ctx, req)
		}
	})

	// Over loopback TCP, with the standard codec and with g.Codec(), which
	// sends cached responses from bytes encoded once.
	for _, c := range []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"loopback", nil},
		{"loopback_codec", []grpc.ServerOption{grpc.ForceServerCodecV2(g.Codec())}},
	} {
		client := loopbackClient(b, g, c.opts...)
		b.Run("jwt_cached_"+c.name, func(b *testing.B) {
			resp, err := client.Check(ctx, req)
			check(b, resp, err)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// loopbackClient serves g on a loopback TCP port and returns a client of it.
func loopbackClient(b *testing.B, g *envoyauthz.Server, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxConcurrentStreams(1024)}, opts...)...)
	authv3.RegisterAuthorizationServer(gs, g)
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

package envoyauthz

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/authztest"
	"github.com/extauthz/extauthz/slotcache"
)

// TestGRPC_SharedResponses: allowed responses are shared per identity and
// route, and the codec sends every shared response (allowed and denied) as
// bytes that decode to exactly that response; a response built for one
// check is left to the standard codec.
func TestGRPC_SharedResponses(t *testing.T) {
	s := authz.NewServer(authztest.NewEngine(t, nil), authz.ServerOptions{}, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry()))
	g := New(s)
	c := g.Codec()
	ctx := context.Background()
	check := func(method, path string, headers ...string) *authv3.CheckResponse {
		h := map[string]string{}
		for i := 0; i+1 < len(headers); i += 2 {
			h[headers[i]] = headers[i+1]
		}
		resp, err := g.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "llm.example.com", Headers: h}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	roundTrip := func(t *testing.T, resp *authv3.CheckResponse) {
		t.Helper()
		data, err := c.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got authv3.CheckResponse
		if err := c.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(resp, &got, protocmp.Transform()); diff != "" {
			t.Errorf("encoded response decodes differently (-sent +decoded):\n%s", diff)
		}
	}

	alice := check("POST", "/v1/chat/completions", "authorization", "Bearer "+authztest.JWTAlice)
	if g.encoded(alice) != nil {
		t.Error("a response used once was encoded for keeps")
	}
	if again := check("POST", "/v1/chat/completions", "authorization", "Bearer "+authztest.JWTAlice); again != alice {
		t.Error("the same identity and route built a second response")
	}
	if g.encoded(alice) == nil {
		t.Error("the codec does not know the shared allowed response")
	}
	models := check("GET", "/v1/models", "authorization", "Bearer "+authztest.JWTAlice)
	if models == alice || models.GetDynamicMetadata().GetFields()["route"].GetStringValue() != "models" {
		t.Errorf("another route answered with the first route's response: %v", models.GetDynamicMetadata())
	}
	forged := check("POST", "/v1/chat/completions", "authorization", "Bearer "+authztest.JWTAlice, "x-auth-key-id", "forged")
	if g.encoded(forged) != nil || forged == alice {
		t.Error("a response with a per-request removal list was shared")
	}
	if diff := cmp.Diff([]string{"authorization", "x-auth-key-id"}, forged.GetOkResponse().GetHeadersToRemove()); diff != "" {
		t.Errorf("headers_to_remove (-want +got):\n%s", diff)
	}
	denied := check("POST", "/v1/chat/completions")
	if g.encoded(denied) == nil {
		t.Error("the codec does not know the prebuilt denial")
	}
	for name, resp := range map[string]*authv3.CheckResponse{"allowed": alice, "other route": models, "per request": forged, "denied": denied,
		"public": check("GET", "/healthz", "x-auth-subject", "x")} {
		t.Run(name, func(t *testing.T) { roundTrip(t, resp) })
	}
}

// TestGRPC_CodecForgetsReplacedResponses: with every response competing for
// one slot, the codec's index holds exactly the cached response, so it
// stays bounded by the cache, and a replaced response is encoded by the
// standard codec, still correctly.
func TestGRPC_CodecForgetsReplacedResponses(t *testing.T) {
	s := authz.NewServer(authztest.NewEngine(t, nil), authz.ServerOptions{}, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry()))
	g := New(s)
	g.ok = slotcache.New[okKey, *okEntry](1)
	ctx := context.Background()
	check := func(tok string) *authv3.CheckResponse {
		resp, err := g.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + tok}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	indexed := func() (n int) {
		g.wire.Range(func(any, any) bool { n++; return true })
		return n
	}
	for i := range 50 {
		tok := []string{authztest.JWTAlice, authztest.JWTBob, authztest.JWTOdd}[i%3]
		resp := check(tok)
		if n := indexed(); n != 1 {
			t.Fatalf("after check %d the codec indexes %d responses, want the 1 cached", i, n)
		}
		data, err := g.Codec().Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got authv3.CheckResponse
		if err := g.Codec().Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(resp, &got, protocmp.Transform()); diff != "" {
			t.Fatalf("check %d: encoded response decodes differently (-sent +decoded):\n%s", i, diff)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
)

// TestBuild_Introspection builds parts from a config with an introspection
// section: an opaque token is decided through the endpoint, a reload with
// the section unchanged keeps the client (and its cache), and a changed
// section builds a new one.
func TestBuild_Introspection(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "extauthz" || secret != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		active := r.PostFormValue("token") == "opaque-alice"
		fmt.Fprintf(w, `{"active":%t,"sub":"alice","groups":["eng"]}`, active)
	}))
	defer idp.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(cacheTTL string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: {grpc: 127.0.0.1:0}
roles: {developer: [chat:invoke]}
role_mapping: {rules: [{groups: [eng], roles: [developer]}]}
introspection: {endpoint: %s, client_id: extauthz, client_secret_file: %s, cache_ttl: %s}
routes:
  - {name: chat, match: {path_prefix: /v1/chat}, require: {permissions: [chat:invoke]}}
`, idp.URL, secret, cacheTTL)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newMetrics()
	p1, err := build(parse("60s"), nil, logger, m)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(p *parts, token string) authz.Decision {
		return p.engine.Decide(context.Background(), &authz.Request{Method: "POST", Host: "llm", Path: "/v1/chat",
			Headers: map[string]string{"authorization": "Bearer " + token}})
	}
	if d := decide(p1, "opaque-alice"); d.Code != authz.Allowed || d.Method != authz.MethodOpaque {
		t.Errorf("opaque-alice: %v/%v (%s), want allowed by opaque", d.Code, d.Method, d.Reason)
	}
	if d := decide(p1, "opaque-mallory"); d.Code != authz.InvalidToken || d.Reason != authz.ReasonInactiveToken {
		t.Errorf("opaque-mallory: %v (%s), want invalid_token (inactive_token)", d.Code, d.Reason)
	}

	p2, err := build(parse("60s"), p1, logger, m)
	if err != nil {
		t.Fatal(err)
	}
	if p2.intro != p1.intro {
		t.Error("an unchanged introspection section built a new client")
	}
	p1.close()
	p3, err := build(parse("30s"), p2, logger, m)
	if err != nil {
		t.Fatal(err)
	}
	if p3.intro == p2.intro {
		t.Error("a changed introspection section kept the old client")
	}
	p2.close()
	if d := decide(p3, "opaque-alice"); d.Code != authz.Allowed {
		t.Errorf("after reload: %v (%s), want allowed", d.Code, d.Reason)
	}
	p3.close()
}

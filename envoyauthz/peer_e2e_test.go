package envoyauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/rolemap"
)

// TestCheck_PeerIdentityGolden runs Checks carrying Envoy's
// attributes.source over a real gRPC connection: the mTLS peer becomes an
// identity (x-auth-method: mtls) only without a credential and only when a
// peer_identity rule matches.
func TestCheck_PeerIdentityGolden(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	store, err := apikeys.New(ctx, apikeys.Default(), apikeys.Deps{Logger: logger, Metrics: apikeys.NewMetrics(reg)})
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
		APIKeyPrefix: apikeys.Default().Prefix,
		PeerIdentity: authz.PeerIdentityConfig{Enabled: true, Rules: []authz.PeerRule{
			{Principal: "spiffe://cluster.local/ns/agents/*", Groups: []string{"eng"}},
		}},
	}, authz.Deps{Keys: store, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: time.Second, AllowSampleRate: 1}, logger, authz.NewMetrics(reg))
	client := serveBufconn(t, srv)

	secret, rec, err := store.Create(ctx, apikeys.CreateOptions{Owner: "carol", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	const summarizer = "spiffe://cluster.local/ns/agents/sa/summarizer"
	withPeer := func(r *authv3.CheckRequest, principal, cert string) *authv3.CheckRequest {
		r.Attributes.Source = &authv3.AttributeContext_Peer{Principal: principal, Certificate: cert}
		return r
	}
	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		replace map[string]string
	}{
		{"allowed_mtls_principal", withPeer(checkRequest("POST", "/v1/chat/completions", map[string]string{"x-auth-subject": "mallory", "x-request-id": "m1"}), summarizer, ""), nil},
		{"allowed_mtls_certificate", withPeer(checkRequest("POST", "/v1/chat/completions", nil), "", envoyEncodedCert(t, summarizer)), nil},
		{"missing_credentials_unknown_peer", withPeer(checkRequest("GET", "/v1/models", nil), "spiffe://cluster.local/ns/default/sa/web", ""), nil},
		{"allowed_api_key_over_peer", withPeer(checkRequest("GET", "/v1/models", map[string]string{"x-api-key": secret}), summarizer, ""), map[string]string{rec.ID: "KEY_ID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Check(ctx, tt.req)
			if err != nil {
				t.Fatalf("Check returned an RPC error: %v", err)
			}
			golden(t, tt.name, resp, tt.replace)
		})
	}

	if got := checkCount(t, reg, "grpc", "mtls", "allowed"); got != 2 {
		t.Errorf(`extauthz_check_requests_total{transport="grpc",method="mtls",outcome="allowed"} = %v, want 2`, got)
	}
	if n := strings.Count(logs.String(), `"method":"mtls"`); n != 2 {
		t.Errorf("decision log lines with method mtls = %d, want 2:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `"subject":"`+summarizer+`"`) {
		t.Errorf("the decision log lacks the peer's subject:\n%s", logs)
	}
}

// checkCount returns extauthz_check_requests_total for the labels; the
// series must exist (every method is pre-initialised).
func checkCount(t *testing.T, reg *prometheus.Registry, transport, method, outcome string) float64 {
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

// envoyEncodedCert returns a self-signed certificate with the given URI SANs,
// URL-encoded as Envoy sends it with include_peer_certificate.
func envoyEncodedCert(t *testing.T, uris ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}

package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testPeerIdentity = PeerIdentityConfig{
	Enabled: true,
	Rules: []PeerRule{
		{Principal: "spiffe://cluster.local/ns/agents/sa/admin-bot", Roles: []string{"admin"}},
		{Principal: "spiffe://cluster.local/ns/agents/*", Roles: []string{"developer"}, Groups: []string{"agents"}},
		{Principal: "spiffe://cluster.local/ns/batch/sa/indexer", Groups: []string{"eng"}},
	},
}

// envoyCert encodes a PEM certificate the way Envoy fills
// attributes.source.certificate (include_peer_certificate): URL-encoded.
func envoyCert(t testing.TB, uris ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
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

func peerReq(method, path, principal, cert string, headers ...string) *Request {
	r := req(method, path, headers...)
	r.PeerPrincipal, r.PeerCertificate = principal, cert
	return r
}

func TestEngine_DecidePeerIdentity(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.PeerIdentity = testPeerIdentity })
	off := newTestEngine(t, nil)
	summarizer := "spiffe://cluster.local/ns/agents/sa/summarizer"
	tests := []struct {
		name    string
		engine  *Engine
		req     *Request
		code    Code
		reason  Reason
		method  AuthMethod
		subject string
		roles   []string
	}{
		{"principal matching a wildcard rule", e, peerReq("POST", "/v1/chat/completions", summarizer, ""), Allowed, ReasonAuthorized, MethodMTLS, summarizer, []string{"developer", "viewer"}},
		{"first matching rule wins: the exact rule above the wildcard", e, &Request{Method: "GET", Host: "x.internal.test", Path: "/admin", Headers: map[string]string{}, PeerPrincipal: "spiffe://cluster.local/ns/agents/sa/admin-bot"}, Allowed, ReasonAuthorized, MethodMTLS, "spiffe://cluster.local/ns/agents/sa/admin-bot", []string{"admin", "viewer"}},
		{"groups of the rule go through role_mapping", e, peerReq("POST", "/v1/chat/completions", "spiffe://cluster.local/ns/batch/sa/indexer", ""), Allowed, ReasonAuthorized, MethodMTLS, "spiffe://cluster.local/ns/batch/sa/indexer", []string{"developer", "viewer"}},
		{"principal matching no rule is no credential", e, peerReq("GET", "/v1/models", "spiffe://cluster.local/ns/default/sa/web", ""), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"the wildcard prefix is not a string prefix of the namespace", e, peerReq("GET", "/v1/models", "spiffe://cluster.local/ns/agents-evil/sa/x", ""), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"other trust domain", e, peerReq("GET", "/v1/models", "spiffe://evil.example/ns/agents/sa/x", ""), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"principal with a control character is ignored", e, peerReq("GET", "/v1/models", summarizer+"\r\nx-auth-roles: admin", ""), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"valid JWT wins over the peer", e, peerReq("POST", "/v1/chat/completions", summarizer, "", "authorization", "Bearer "+jwtBob), Forbidden, ReasonInsufficientPerms, MethodJWT, "bob", []string{"viewer"}},
		{"invalid JWT is refused, never replaced by the peer", e, peerReq("GET", "/v1/models", summarizer, "", "authorization", "Bearer "+jwtExpired), InvalidToken, ReasonExpiredToken, MethodJWT, "", nil},
		{"API key wins over the peer", e, peerReq("POST", "/v1/chat/completions", "spiffe://cluster.local/ns/agents/sa/admin-bot", "", "x-api-key", keyCarol), Allowed, ReasonAuthorized, MethodAPIKey, "carol", []string{"developer", "viewer"}},
		{"unknown API key is refused, never replaced by the peer", e, peerReq("GET", "/v1/models", summarizer, "", "x-api-key", "ek_nobody"), InvalidAPIKey, ReasonUnknownKey, MethodAPIKey, "", nil},
		{"certificate only: its URI SAN is the principal", e, peerReq("POST", "/v1/chat/completions", "", envoyCert(t, summarizer)), Allowed, ReasonAuthorized, MethodMTLS, summarizer, []string{"developer", "viewer"}},
		{"certificate with a URI SAN matching no rule", e, peerReq("GET", "/v1/models", "", envoyCert(t, "spiffe://cluster.local/ns/default/sa/web")), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"certificate with two URI SANs is ambiguous", e, peerReq("GET", "/v1/models", "", envoyCert(t, summarizer, "spiffe://cluster.local/ns/agents/sa/other")), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"certificate without a URI SAN", e, peerReq("GET", "/v1/models", "", envoyCert(t)), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"garbage certificate", e, peerReq("GET", "/v1/models", "", "-----BEGIN%20CERTIFICATE-----%0Agarbage"), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"principal wins over the certificate", e, peerReq("GET", "/v1/models", "spiffe://cluster.local/ns/default/sa/web", envoyCert(t, summarizer)), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
		{"peer_identity off: a principal is no credential", off, peerReq("GET", "/v1/models", summarizer, ""), MissingCredentials, ReasonNoCredentials, MethodNone, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice: the second decision comes from the peer caches.
			for range 2 {
				d := tt.engine.Decide(context.Background(), tt.req)
				type result struct {
					Code, Method, Subject string
					Reason                Reason
					Roles                 []string
				}
				got := result{Code: d.Code.String(), Method: d.Method.String(), Reason: d.Reason}
				if d.Identity != nil {
					got.Subject, got.Roles = d.Identity.Subject, d.Identity.Roles
				}
				want := result{Code: tt.code.String(), Method: tt.method.String(), Reason: tt.reason, Subject: tt.subject, Roles: tt.roles}
				if tt.code != Allowed && tt.method != MethodJWT && tt.method != MethodAPIKey {
					want.Subject, want.Roles = "", nil
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("Decide mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestEngine_PeerIdentityHeaders(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.PeerIdentity = testPeerIdentity })
	d := e.Decide(context.Background(), peerReq("POST", "/v1/chat/completions", "spiffe://cluster.local/ns/agents/sa/summarizer", "",
		"x-auth-subject", "mallory", "x-auth-issuer", "https://evil", "x-auth-method", "jwt"))
	wantSet := []Header{
		{"x-auth-subject", "spiffe://cluster.local/ns/agents/sa/summarizer"},
		{"x-auth-method", "mtls"},
		{"x-auth-groups", "agents"},
		{"x-auth-roles", "developer,viewer"},
	}
	if diff := cmp.Diff(wantSet, d.Set); diff != "" {
		t.Errorf("Set mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"x-auth-issuer"}, d.Remove); diff != "" {
		t.Errorf("Remove mismatch (-want +got):\n%s", diff)
	}
}

func TestValidatePeerIdentity(t *testing.T) {
	known := func(r string) bool { return r == "agent" || r == "admin" }
	tests := []struct {
		name string
		cfg  PeerIdentityConfig
		want []string
	}{
		{"valid", PeerIdentityConfig{Enabled: true, Rules: []PeerRule{
			{Principal: "spiffe://cluster.local/ns/agents/sa/lead", Roles: []string{"admin"}},
			{Principal: "spiffe://cluster.local/ns/agents/*", Roles: []string{"agent"}, Groups: []string{"agents"}},
		}}, nil},
		{"off and empty", PeerIdentityConfig{}, nil},
		{"enabled without rules", PeerIdentityConfig{Enabled: true}, []string{
			`peer_identity.rules: peer_identity is enabled but has no rules, so no peer can ever be identified: add a rule such as {principal: "spiffe://cluster.local/ns/agents/*", roles: [agent]} or set enabled: false`,
		}},
		{"bad patterns, unknown role, bad group, shadowed rule", PeerIdentityConfig{Enabled: true, Rules: []PeerRule{
			{Principal: ""},
			{Principal: "*"},
			{Principal: "spiffe://*"},
			{Principal: "spiffe://cluster.local/*/sa/x"},
			{Principal: "spiffe://cluster.local/ns/a b"},
			{Principal: "spiffe://cluster.local/ns/agents/*", Roles: []string{"agnet"}, Groups: []string{"a,b"}},
			{Principal: "spiffe://cluster.local/ns/agents/sa/lead", Roles: []string{"admin"}},
		}}, []string{
			`peer_identity.rules[0].principal: must be set to a principal, e.g. spiffe://cluster.local/ns/agents/sa/summarizer, or a prefix ending in *`,
			`peer_identity.rules[1].principal: "*" matches peers of every trust domain: name at least the scheme and trust domain, e.g. spiffe://cluster.local/ns/agents/*`,
			`peer_identity.rules[2].principal: "spiffe://*" matches peers of every trust domain: name the trust domain, e.g. spiffe://cluster.local/*`,
			`peer_identity.rules[3].principal: "spiffe://cluster.local/*/sa/x": * is allowed only as the last character (it matches any suffix)`,
			`peer_identity.rules[4].principal: "spiffe://cluster.local/ns/a b" must not contain spaces or control characters`,
			`peer_identity.rules[5].roles[0]: role "agnet" is not defined under roles: define it or fix the spelling`,
			`peer_identity.rules[5].groups[0]: "a,b" must be non-empty and hold no comma or control character (groups travel comma-separated in x-auth-groups)`,
			`peer_identity.rules[6].principal: "spiffe://cluster.local/ns/agents/sa/lead" is already matched by peer_identity.rules[5] ("spiffe://cluster.local/ns/agents/*"), and the first matching rule wins, so this rule never applies: move it up or remove it`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate("peer_identity", known)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
		})
	}
	// NewEngine trusts its input: config.Load runs this validation on every
	// file (start and reload) before an engine is built from it.
}

func TestCertificatePrincipal(t *testing.T) {
	spiffe := "spiffe://cluster.local/ns/agents/sa/summarizer"
	cert := envoyCert(t, spiffe)
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{"Envoy URL-encoded PEM", cert, spiffe, true},
		{"plain PEM", mustUnescape(t, cert), spiffe, true},
		{"empty", "", "", false},
		{"bad escape", "%zz", "", false},
		{"not PEM", "hello", "", false},
		{"too large", strings.Repeat("A", maxPeerCertificateBytes+1), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := certificatePrincipal(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("certificatePrincipal = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func mustUnescape(t testing.TB, s string) string {
	t.Helper()
	u, err := url.PathUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

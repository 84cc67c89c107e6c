package jwks

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// TestVerifier_JWKSOverHTTPSWithPrivateCA: a jwks_url served over HTTPS by
// a certificate of a private CA loads only with that CA in ca_file; without
// it the server is not trusted and the provider has no keys (503, never an
// allow), and a redirect from the JWKS endpoint to a plain-http remote URL
// is refused.
func TestVerifier_JWKSOverHTTPSWithPrivateCA(t *testing.T) {
	key := jwkstest.MustKey(t, "EdDSA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks.json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(jwkstest.JWKS(key))
		case "/moved":
			http.Redirect(w, r, "http://jwks.invalid/jwks.json", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	const iss = "https://idp.test"
	tok, err := key.Sign(jwt.MapClaims{"iss": iss, "sub": "alice", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		url       string
		caFile    string
		wantReady bool
		wantErr   error
		wantLog   string
	}{
		{"private CA in ca_file", srv.URL + "/jwks.json", caFile, true, nil, ""},
		{"no ca_file: the server is not trusted", srv.URL + "/jwks.json", "", false, ErrNoKeys, "certificate signed by unknown authority"},
		{"redirect to plain http on a remote host is refused", srv.URL + "/moved", caFile, false, ErrNoKeys, "redirect to http://jwks.invalid/jwks.json refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ProviderConfig{Name: "corp", Issuer: iss, Audiences: []string{testAudience}, JWKSURL: tc.url,
				CAFile: tc.caFile, FetchTimeout: time.Second, Algorithms: []string{"EdDSA"}}
			env := newEnv()
			v := env.start(t, configWith(p), nil)
			if v.Ready() != tc.wantReady {
				t.Fatalf("Ready = %v, want %v", v.Ready(), tc.wantReady)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if _, err := v.Verify(ctx, tok); !errors.Is(err, tc.wantErr) {
				t.Errorf("Verify = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(env.logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, env.logs.String())
			}
		})
	}
}

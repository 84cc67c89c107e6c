package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServe_HMACProviderWithMintedToken: `extauthz token --hmac-secret-file`
// mints a token the server accepts for an HMAC provider, and one signed with
// another secret is refused.
func TestServe_HMACProviderWithMintedToken(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hmac.key")
	other := filepath.Join(dir, "other.key")
	writeFile(t, secret, []byte(strings.Repeat("s3cr3t-", 6)+"\n"))
	writeFile(t, other, []byte(strings.Repeat("wrong!-", 6)+"\n"))
	cfg := filepath.Join(dir, "config.yaml")
	// The check budget is generous: this test is about which token is
	// accepted, and on a busy machine the default 300ms budget can turn
	// the allow into a 503.
	y := `listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}
server: {check_timeout: 5s}
jwt:
  providers:
    - {name: shared, issuer: https://internal.test, audiences: [llm-gateway], hmac_secret_file: hmac.key}
` + defaultPolicy
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, cfg)
	p.waitReady(t)
	client, _ := p.client(t)

	mint := func(secretFile string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"token", "--hmac-secret-file", secretFile,
			"--iss", "https://internal.test", "--aud", "llm-gateway", "--sub", "svc", "--groups", "eng"}, &out, &errb)
		if code != 0 {
			t.Fatalf("token: exit %d: %s", code, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	for _, tt := range []struct {
		name   string
		token  string
		status int
	}{
		{"token minted with the provider's secret", mint(secret), 200},
		{"token minted with another secret", mint(other), 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, st := check(t, client, checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + tt.token}))
			if st != tt.status {
				t.Errorf("status %d, want %d", st, tt.status)
			}
		})
	}
	// The secret never reaches the log.
	for _, l := range p.log() {
		if strings.Contains(l, "s3cr3t-") {
			t.Fatalf("log line contains the HMAC secret: %s", l)
		}
	}
}

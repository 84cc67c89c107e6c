package jwkstest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestWriteKeyFiles(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			f, err := WriteKeyFiles(t.TempDir(), alg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(f.PrivateKeyPath)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(f.PrivateKeyPath)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("private key mode = %v, want 0600", fi.Mode().Perm())
			}
			block, _ := pem.Decode(b)
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("private key file is not a PKCS #8 PEM block")
			}
			priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			raw, err := os.ReadFile(f.JWKSPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 || set.Keys[0]["kid"] != f.KID || set.Keys[0]["alg"] != alg || set.Keys[0]["d"] != nil {
				t.Errorf("jwks.json = %s", raw)
			}
			// A token signed with the PEM key verifies with the file's key.
			tok, err := jwt.NewWithClaims(jwt.GetSigningMethod(alg), jwt.MapClaims{"sub": "a"}).SignedString(priv)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return f.Key.Public(), nil }); err != nil {
				t.Errorf("token signed with the PEM key does not verify with the published key: %v", err)
			}
		})
	}
}

func TestServer_Modes(t *testing.T) {
	s := NewServer(t)
	get := func(path string, timeout time.Duration) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	code, body, err := get(JWKSPath, time.Second)
	if err != nil || code != 200 {
		t.Fatalf("GET jwks = %d, %v", code, err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || len(set.Keys) != 3 {
		t.Fatalf("jwks = %s", body)
	}
	_, body, _ = get(DiscoveryPath, time.Second)
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["issuer"] != s.URL || doc["jwks_uri"] != s.JWKSURL() {
		t.Errorf("discovery document = %s", body)
	}

	s.SetMode(Fail500)
	if code, _, _ := get(JWKSPath, time.Second); code != 500 {
		t.Errorf("Fail500: status %d", code)
	}
	s.SetMode(Garbage)
	if _, body, _ := get(JWKSPath, time.Second); json.Valid([]byte(body)) {
		t.Errorf("Garbage: body %q is JSON", body)
	}
	s.SetMode(Empty)
	if _, body, _ := get(JWKSPath, time.Second); body != `{"keys":[]}` {
		t.Errorf("Empty: body %q", body)
	}
	s.SetMode(Hang)
	if _, _, err := get(JWKSPath, 100*time.Millisecond); err == nil {
		t.Error("Hang: the request completed")
	}
	s.SetMode(Serve)
	if got := s.Requests(); got != 5 {
		t.Errorf("Requests() = %d, want 5", got)
	}
	if got := s.DiscoveryRequests(); got != 1 {
		t.Errorf("DiscoveryRequests() = %d, want 1", got)
	}

	old := s.Keys()
	s.Rotate()
	for i, k := range s.Keys() {
		if k.KID == old[i].KID || k.Alg != old[i].Alg {
			t.Errorf("Rotate: key %d %s/%s replaced by %s/%s", i, old[i].KID, old[i].Alg, k.KID, k.Alg)
		}
	}
}

package jwks

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

const hmacIssuer = "https://hmac.issuer.test"

// writeSecret writes secret (plus a trailing newline, as echo would) to a
// new file under dir and returns its path.
func writeSecret(t testing.TB, path, secret string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hmacProvider(path string, algs ...string) ProviderConfig {
	return ProviderConfig{Name: "shared", Issuer: hmacIssuer, Audiences: []string{testAudience}, HMACSecretFile: path, Algorithms: algs}
}

func hmacClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": hmacIssuer, "sub": "svc-a", "aud": testAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"agents"}}
}

// signHMAC signs claims with m and key (any bytes: a secret, or a public key
// in an attacker's hands).
func signHMAC(t testing.TB, m jwt.SigningMethod, key []byte, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	secretA = "0123456789abcdef0123456789abcdef-secret-A"
	secretB = "fedcba9876543210fedcba9876543210-secret-B"
)

func TestVerifier_HMACProvider(t *testing.T) {
	idp := jwkstest.NewServer(t)
	dir := t.TempDir()
	path := writeSecret(t, filepath.Join(dir, "secret"), secretA)
	env := newEnv()
	v := env.start(t, configWith(urlProvider("corp", idp), hmacProvider(path, "HS256", "HS512")), nil)
	if !v.Ready() {
		t.Fatal("not ready with an hmac_secret_file")
	}

	rsa := idp.Key("RS256")
	pemPub, err := rsa.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	derPub, err := x509.MarshalPKIXPublicKey(rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	corpClaims := claims(idp)

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"HS256 token signed with the secret verifies", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), hmacClaims(), ""), nil},
		{"HS512 token signed with the secret verifies", signHMAC(t, jwt.SigningMethodHS512, []byte(secretA), hmacClaims(), ""), nil},
		{"a kid header is ignored", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), hmacClaims(), "whatever"), nil},
		{"HS384 is not in the provider's allow-list", signHMAC(t, jwt.SigningMethodHS384, []byte(secretA), hmacClaims(), ""), ErrAlgorithm},
		{"HS256 signed with a wrong secret fails", signHMAC(t, jwt.SigningMethodHS256, []byte(secretB), hmacClaims(), ""), ErrSignature},
		{"the secret with its trailing newline is not the secret", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA+"\n"), hmacClaims(), ""), ErrSignature},
		{"RS256 token claiming the HMAC issuer fails", idp.Sign(with(corpClaims, "iss", hmacIssuer)), ErrAlgorithm},
		{"EdDSA token claiming the HMAC issuer fails", idp.Sign(with(corpClaims, "iss", hmacIssuer), jwkstest.WithAlg("EdDSA")), ErrAlgorithm},
		{"HS256 for the JWKS provider signed with its RSA public key (PEM) fails", signHMAC(t, jwt.SigningMethodHS256, pemPub, corpClaims, rsa.KID), ErrAlgorithm},
		{"HS256 for the JWKS provider signed with its RSA public key (DER) fails", signHMAC(t, jwt.SigningMethodHS256, derPub, corpClaims, rsa.KID), ErrAlgorithm},
		{"HS256 for the JWKS provider signed with the HMAC secret fails", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), corpClaims, ""), ErrAlgorithm},
		{"wrong audience for the HMAC provider fails", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), with(hmacClaims(), "aud", "other"), ""), ErrAudience},
		{"expired HMAC token fails", signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), with(hmacClaims(), "exp", time.Now().Add(-time.Hour).Unix()), ""), ErrExpired},
		{"the JWKS provider still verifies RS256", idp.Sign(corpClaims), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && c == nil {
				t.Fatal("Verify: nil claims")
			}
			if tc.want != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v does not wrap ErrInvalid", err)
			}
			if err != nil && strings.Contains(err.Error(), "secret-A") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}

	c, err := v.Verify(context.Background(), signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), hmacClaims(), ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider != "shared" || c.Subject != "svc-a" || c.Issuer != hmacIssuer || len(c.Groups) != 1 || c.Groups[0] != "agents" {
		t.Errorf("claims = %+v", c)
	}
	if strings.Contains(env.logs.String(), "secret-A") {
		t.Error("the logs contain the secret")
	}
}

// Without any HMAC provider, HS* is refused by the global check before the
// issuer is even looked at, whatever key signed it.
func TestVerifier_HMACRefusedWithoutHMACProvider(t *testing.T) {
	idp := jwkstest.NewServer(t)
	v := startVerifier(t, configWith(urlProvider("corp", idp)))
	pemPub, err := idp.Key("RS256").PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		tok := signHMAC(t, m, pemPub, claims(idp), "")
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrAlgorithm) || !strings.Contains(err.Error(), "never accepted with JWKS") {
			t.Errorf("%s: err = %v, want ErrAlgorithm (never accepted with JWKS)", m.Alg(), err)
		}
	}
}

func TestVerifier_HMACSecretRotation(t *testing.T) {
	dir := t.TempDir()
	path := writeSecret(t, filepath.Join(dir, "secret"), secretA)
	env := newEnv()
	v := env.start(t, configWith(hmacProvider(path)), nil)

	oldTok := signHMAC(t, jwt.SigningMethodHS256, []byte(secretA), hmacClaims(), "")
	newTok := signHMAC(t, jwt.SigningMethodHS256, []byte(secretB), hmacClaims(), "")
	if _, err := v.Verify(context.Background(), oldTok); err != nil {
		t.Fatalf("old secret before rotation: %v", err)
	}
	if _, err := v.Verify(context.Background(), newTok); !errors.Is(err, ErrSignature) {
		t.Fatalf("new secret before rotation: err = %v, want ErrSignature", err)
	}

	// Rewrite the file (a longer secret, so the size changes even when the
	// file system's mtime resolution is coarse).
	writeSecret(t, path, secretB+"-rotated")
	newTok = signHMAC(t, jwt.SigningMethodHS256, []byte(secretB+"-rotated"), hmacClaims(), "")
	waitFor(t, "the new secret", 5*time.Second, func() bool {
		_, err := v.Verify(context.Background(), newTok)
		return err == nil
	})
	// The old token was cached; rotation drops it.
	if _, err := v.Verify(context.Background(), oldTok); !errors.Is(err, ErrSignature) {
		t.Errorf("old secret after rotation: err = %v, want ErrSignature", err)
	}

	// A secret that becomes too short is refused; the last good one stays.
	writeSecret(t, path, "short")
	waitFor(t, "the refresh failure log", 5*time.Second, func() bool {
		return strings.Contains(env.logs.String(), "bytes; at least 32 are required")
	})
	if _, err := v.Verify(context.Background(), newTok); err != nil {
		t.Errorf("last good secret after a bad rewrite: %v", err)
	}
	for _, s := range []string{"secret-A", "secret-B", "short\""} {
		if strings.Contains(env.logs.String(), s) {
			t.Errorf("the logs contain secret material %q:\n%s", s, env.logs.String())
		}
	}
}

func TestNew_FailsOnBadHMACSecretFile(t *testing.T) {
	dir := t.TempDir()
	short := writeSecret(t, filepath.Join(dir, "short"), "too-short-secret")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	groupWritable := writeSecret(t, filepath.Join(dir, "group-writable"), "too-short-secret"+strings.Repeat("s", 32))
	if err := os.Chmod(groupWritable, 0o620); err != nil {
		t.Fatal(err)
	}
	huge := writeSecret(t, filepath.Join(dir, "huge"), strings.Repeat("s", 10<<20-1))
	tests := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "missing"), "hmac_secret_file: stat "},
		{"short secret", short, "is 16 bytes; at least 32 are required"},
		{"directory", dir, "hmac_secret_file: " + dir + ": not a regular file (a directory)"},
		{"device", "/dev/zero", "/dev/zero: not a regular file (a device)"},
		{"FIFO", fifo, fifo + ": not a regular file (a FIFO)"},
		{"group-writable", groupWritable, groupWritable + ": writable by group or others (mode 0620)"},
		{"10 MiB", huge, huge + ": larger than 64 KiB (10485760 bytes)"},
	}
	// A provider's public key, as PEM or as a JWK Set, is refused as a
	// secret: it is public, so anyone could sign with it.
	pemPub, err := jwkstest.MustKey(t, "RS256").PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pemPath, pemPub, 0o600); err != nil {
		t.Fatal(err)
	}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwkstest.JWKS(jwkstest.MustKey(t, "ES256")), 0o600); err != nil {
		t.Fatal(err)
	}
	tests = append(tests,
		struct{ name, path, want string }{"RSA public key PEM", pemPath, "holds a PEM block or a JWK, not a shared secret"},
		struct{ name, path, want string }{"JWK Set", jwksPath, "holds a PEM block or a JWK, not a shared secret"},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(context.Background(), configWith(hmacProvider(tc.path)), newEnv().deps, testOptions())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "too-short-secret") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestConfig_ValidateHMACProvider(t *testing.T) {
	dir := t.TempDir()
	good := writeSecret(t, filepath.Join(dir, "good"), secretA)
	short := writeSecret(t, filepath.Join(dir, "short"), "only-31-bytes-of-secret-materia")
	tests := []struct {
		name   string
		change func(p *ProviderConfig)
		want   []string
	}{
		{"valid, algorithms default to HS256", func(p *ProviderConfig) {}, nil},
		{"HS384 and HS512", func(p *ProviderConfig) { p.Algorithms = []string{"HS384", "HS512"} }, nil},
		{"short secret", func(p *ProviderConfig) { p.HMACSecretFile = short }, []string{
			"jwt.providers[0].hmac_secret_file: the secret in " + short + " is 31 bytes; at least 32 are required (generate one with: head -c 48 /dev/urandom | base64)",
		}},
		{"missing file", func(p *ProviderConfig) { p.HMACSecretFile = filepath.Join(dir, "nope") }, []string{
			"jwt.providers[0].hmac_secret_file: stat " + filepath.Join(dir, "nope") + ": no such file or directory (create the file, or fix the path)",
		}},
		{"asymmetric algorithm on an HMAC provider", func(p *ProviderConfig) { p.Algorithms = []string{"HS256", "RS256"} }, []string{
			`jwt.providers[0].algorithms[1]: "RS256" is not allowed with hmac_secret_file: an HMAC provider accepts only HS256, HS384, HS512 (use a jwks_url, jwks_file or discovery provider for asymmetric keys)`,
		}},
		{"none on an HMAC provider", func(p *ProviderConfig) { p.Algorithms = []string{"none"} }, []string{
			`jwt.providers[0].algorithms[0]: "none" is not allowed with hmac_secret_file: an HMAC provider accepts only HS256, HS384, HS512 (use a jwks_url, jwks_file or discovery provider for asymmetric keys)`,
		}},
		{"hmac_secret_file with jwks_url", func(p *ProviderConfig) { p.JWKSURL = "https://issuer.test/jwks" }, []string{
			"jwt.providers[0]: set exactly one of jwks_url, jwks_file, discovery: true and hmac_secret_file (found 2)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := hmacProvider(good)
			tc.change(&p)
			p.ApplyDefaults()
			err := configWith(p).Validate("jwt")
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), "secret-A") {
				t.Errorf("Validate leaks the secret: %v", err)
			}
		})
	}
	p := hmacProvider(good)
	p.ApplyDefaults()
	if diff := cmp.Diff([]string{"HS256"}, p.Algorithms); diff != "" {
		t.Errorf("default algorithms (-want +got):\n%s", diff)
	}
}

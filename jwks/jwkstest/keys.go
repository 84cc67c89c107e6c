// Package jwkstest provides test helpers for code that verifies JWTs with
// package jwks: signing keys, JWK Set documents and files, and an httptest
// server that serves a rotating JWK Set and an OpenID discovery document,
// and that can be made to fail.
package jwkstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a private signing key and its JWK metadata.
type Key struct {
	// KID is the key id, unique per generated key.
	KID string
	// Alg is the JWS algorithm the key is published for (RS256, ES256, ...).
	Alg string
	// Signer is the private key: *rsa.PrivateKey, *ecdsa.PrivateKey or
	// ed25519.PrivateKey.
	Signer crypto.Signer
}

// NewKey generates a key for alg: RSA 2048 for RS* and PS*, the matching NIST
// curve for ES256/ES384/ES512, and Ed25519 for EdDSA.
func NewKey(alg string) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("jwkstest: unsupported alg %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("jwkstest: generate %s key: %w", alg, err)
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	return &Key{KID: strings.ToLower(alg) + "-" + hex.EncodeToString(id), Alg: alg, Signer: signer}, nil
}

// MustKey is NewKey for tests: it fails t on error.
func MustKey(t testing.TB, alg string) *Key {
	t.Helper()
	k, err := NewKey(alg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return k
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.Signer.Public() }

// JWK returns the public JWK of k (kty, kid, alg, use "sig" and the key
// parameters).
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.KID, "alg": k.Alg, "use": "sig"}
	enc := base64.RawURLEncoding.EncodeToString
	switch p := k.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = enc(p.N.Bytes())
		m["e"] = enc(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		ec, err := p.ECDH()
		if err != nil {
			panic(fmt.Sprintf("jwkstest: ecdsa key: %v", err))
		}
		b := ec.Bytes() // 0x04 || X || Y, fixed length
		n := (len(b) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = p.Curve.Params().Name
		m["x"] = enc(b[1 : 1+n])
		m["y"] = enc(b[1+n:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = enc(p)
	}
	return m
}

// JWKS returns the JWK Set document holding the public keys of keys.
func JWKS(keys ...*Key) []byte {
	set := struct {
		Keys []map[string]any `json:"keys"`
	}{Keys: []map[string]any{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(fmt.Sprintf("jwkstest: marshal jwks: %v", err))
	}
	return b
}

// Sign returns a compact JWS of claims signed with k, with header alg = k.Alg
// and kid = k.KID, plus the given header parameters (a nil value deletes a
// parameter, so {"kid": nil} signs without kid).
func (k *Key) Sign(claims jwt.MapClaims, header map[string]any) (string, error) {
	return k.sign(k.Alg, claims, header)
}

func (k *Key) sign(alg string, claims jwt.MapClaims, header map[string]any) (string, error) {
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		return "", fmt.Errorf("jwkstest: unknown alg %q", alg)
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = k.KID
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	s, err := tok.SignedString(k.Signer)
	if err != nil {
		return "", fmt.Errorf("jwkstest: sign: %w", err)
	}
	return s, nil
}

// PrivateKeyPEM returns the private key as a PKCS #8 "PRIVATE KEY" PEM block.
func (k *Key) PrivateKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("jwkstest: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicKeyPEM returns the public key as a PKIX "PUBLIC KEY" PEM block.
func (k *Key) PublicKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, fmt.Errorf("jwkstest: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WriteJWKSFile writes the JWK Set of keys to path atomically (a temporary
// file renamed over path), so a reader never sees a partial file.
func WriteJWKSFile(path string, keys ...*Key) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".jwks-*.tmp")
	if err != nil {
		return fmt.Errorf("jwkstest: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(JWKS(keys...)); err != nil {
		tmp.Close()
		return fmt.Errorf("jwkstest: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("jwkstest: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("jwkstest: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("jwkstest: %w", err)
	}
	return nil
}

// KeyFiles are the files written by WriteKeyFiles.
type KeyFiles struct {
	// JWKSPath is the JWK Set with the public key (for jwks_file).
	JWKSPath string
	// PrivateKeyPath is the PKCS #8 PEM private key (mode 0600), for
	// signing development tokens.
	PrivateKeyPath string
	// KID and Alg are the key's id and algorithm.
	KID string
	Alg string
	// Key is the generated key.
	Key *Key
}

// WriteKeyFiles generates a key for alg and writes dir/jwks.json and
// dir/private-key.pem.
func WriteKeyFiles(dir, alg string) (KeyFiles, error) {
	k, err := NewKey(alg)
	if err != nil {
		return KeyFiles{}, err
	}
	priv, err := k.PrivateKeyPEM()
	if err != nil {
		return KeyFiles{}, err
	}
	f := KeyFiles{
		JWKSPath:       filepath.Join(dir, "jwks.json"),
		PrivateKeyPath: filepath.Join(dir, "private-key.pem"),
		KID:            k.KID,
		Alg:            k.Alg,
		Key:            k,
	}
	if err := os.WriteFile(f.PrivateKeyPath, priv, 0o600); err != nil {
		return KeyFiles{}, fmt.Errorf("jwkstest: %w", err)
	}
	if err := WriteJWKSFile(f.JWKSPath, k); err != nil {
		return KeyFiles{}, err
	}
	return f, nil
}

package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/secretfile"
)

// runToken mints a development JWT signed with a PEM private key, so a
// newcomer can try the server without an identity provider.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "PEM private key (RSA, EC P-256/384/521 or Ed25519)")
	secretPath := fs.String("hmac-secret-file", "", "shared secret for an HMAC provider (instead of --key; HS256 unless --alg)")
	kid := fs.String("kid", "", "key id to put in the header (must match the JWKS)")
	alg := fs.String("alg", "", "signing algorithm (default: RS256, ES256/384/512 or EdDSA from the key)")
	iss := fs.String("iss", "", "issuer (required)")
	aud := fs.String("aud", "", "audience (required)")
	sub := fs.String("sub", "", "subject (required)")
	groups := fs.String("groups", "", "comma-separated groups")
	groupsClaim := fs.String("groups-claim", "groups", "claim that holds the groups")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	var extra claimFlags
	fs.Var(&extra, "claim", "extra string claim NAME=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*keyPath == "") == (*secretPath == "") || *iss == "" || *aud == "" || *sub == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: extauthz token (--key PRIVATE_KEY.pem | --hmac-secret-file FILE) [--kid KID] --iss URL --aud AUD --sub SUBJECT [--groups a,b] [--ttl 1h]")
		return 2
	}
	if *ttl <= 0 {
		fmt.Fprintln(stderr, "extauthz token: --ttl must be positive")
		return 2
	}
	var key any
	var method jwt.SigningMethod
	if *secretPath != "" {
		secret, err := secretfile.Read("--hmac-secret-file", *secretPath)
		if err != nil {
			fmt.Fprintf(stderr, "extauthz token: %s\n", err)
			return 1
		}
		// The verifier drops one trailing newline; so must the signer.
		key = []byte(strings.TrimSuffix(strings.TrimSuffix(string(secret), "\n"), "\r"))
		if *alg == "" {
			*alg = "HS256"
		}
		if !strings.HasPrefix(*alg, "HS") || jwt.GetSigningMethod(*alg) == nil {
			fmt.Fprintf(stderr, "extauthz token: --alg %s does not fit a shared secret (use HS256, HS384 or HS512)\n", *alg)
			return 2
		}
		method = jwt.GetSigningMethod(*alg)
	} else {
		signer, err := readPrivateKey(*keyPath)
		if err != nil {
			fmt.Fprintf(stderr, "extauthz token: %s\n", err)
			return 1
		}
		if method, err = signingMethod(signer, *alg); err != nil {
			fmt.Fprintf(stderr, "extauthz token: %s\n", err)
			return 2
		}
		key = signer
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": *iss,
		"aud": *aud,
		"sub": *sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(*ttl).Unix(),
	}
	if *groups != "" {
		claims[*groupsClaim] = strings.Split(*groups, ",")
	}
	for k, v := range extra {
		claims[k] = v
	}
	t := jwt.NewWithClaims(method, claims)
	if *kid != "" {
		t.Header["kid"] = *kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		fmt.Fprintf(stderr, "extauthz token: sign: %s\n", err)
		return 1
	}
	fmt.Fprintln(stdout, s)
	return 0
}

type claimFlags map[string]string

func (c *claimFlags) String() string { return "" }

func (c *claimFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want NAME=VALUE")
	}
	if *c == nil {
		*c = claimFlags{}
	}
	(*c)[k] = val
	return nil
}

func readPrivateKey(path string) (crypto.Signer, error) {
	b, err := secretfile.Read("--key", path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var k any
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return s, nil
}

func signingMethod(key crypto.Signer, alg string) (jwt.SigningMethod, error) {
	def := ""
	switch k := key.(type) {
	case *rsa.PrivateKey:
		def = "RS256"
		if alg != "" && !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") {
			return nil, fmt.Errorf("--alg %s does not fit an RSA key", alg)
		}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			def = "ES256"
		case elliptic.P384():
			def = "ES384"
		case elliptic.P521():
			def = "ES512"
		}
		if alg != "" && alg != def {
			return nil, fmt.Errorf("--alg %s does not fit this EC key (use %s)", alg, def)
		}
	case ed25519.PrivateKey:
		def = "EdDSA"
		if alg != "" && alg != def {
			return nil, fmt.Errorf("--alg %s does not fit an Ed25519 key", alg)
		}
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if alg == "" {
		alg = def
	}
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		return nil, fmt.Errorf("unknown algorithm %q", alg)
	}
	return m, nil
}

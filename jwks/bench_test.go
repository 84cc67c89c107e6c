package jwks

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// benchClaims are typical access-token claims (about 700 bytes signed).
func benchClaims(idp *jwkstest.Server) jwt.MapClaims {
	return with(claims(idp),
		"groups", []string{"eng", "ml-team", "platform"},
		"email", "alice@example.com",
		"name", "Alice Example",
		"scope", "openid profile email",
		"jti", "3f2b1c9e-8d7a-4b6c-9e0f-1a2b3c4d5e6f",
	)
}

func benchVerifier(b *testing.B, idp *jwkstest.Server, cache bool) *Verifier {
	p := urlProvider("corp", idp)
	p.ClaimsToHeaders = map[string]string{"email": "x-auth-email"}
	cfg := configWith(p)
	cfg.Cache.Disabled = !cache
	return startVerifier(b, cfg)
}

// BenchmarkVerify measures a cache hit and full (cold) verifications.
func BenchmarkVerify(b *testing.B) {
	idp := jwkstest.NewServer(b)
	ctx := context.Background()

	b.Run("cached", func(b *testing.B) {
		v := benchVerifier(b, idp, true)
		tok := idp.Sign(benchClaims(idp))
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		b.Run("cold_"+alg, func(b *testing.B) {
			v := benchVerifier(b, idp, false)
			tok := idp.Sign(benchClaims(idp), jwkstest.WithAlg(alg))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("invalid_garbage", func(b *testing.B) {
		v := benchVerifier(b, idp, true)
		tok := "eyJhbGciOiJSUzI1NiJ9.e30." + strings.Repeat("A", 342)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err == nil {
				b.Fatal("garbage verified")
			}
		}
	})
}

// BenchmarkBareRSAVerifyPKCS1v15 is the floor for cold RS256: the RSA
// verification of the same token with its SHA-256 digest precomputed.
func BenchmarkBareRSAVerifyPKCS1v15(b *testing.B) {
	idp := jwkstest.NewServer(b, jwkstest.WithAlgorithms("RS256"))
	tok := idp.Sign(benchClaims(idp))
	seg := segments(tok)
	sig, err := b64.DecodeString(seg[2])
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte(seg[0] + "." + seg[1]))
	pub := idp.Key("RS256").Public().(*rsa.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenSHA256 measures the cache key of a typical token.
func BenchmarkTokenSHA256(b *testing.B) {
	idp := jwkstest.NewServer(b, jwkstest.WithAlgorithms("RS256"))
	tok := idp.Sign(benchClaims(idp))
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		_ = sha256.Sum256(stringBytes(tok))
	}
}

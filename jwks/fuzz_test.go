package jwks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// FuzzVerify checks that no input other than the tokens signed here ever
// verifies, that Verify never panics, and that every rejection is
// classified (ErrInvalid or ErrNoKeys). The seed corpus in
// testdata/fuzz/FuzzVerify holds attack shapes (alg none, HS256 with a
// public key, jku/x5u/jwk headers, crit, odd JSON and base64); the seeds
// added here are real tokens of the test server, so mutations reach the
// signature and claims checks.
func FuzzVerify(f *testing.F) {
	idp := jwkstest.NewServer(f)
	p := urlProvider("corp", idp)
	p.Algorithms = supportedAlgorithms
	v := startVerifier(f, configWith(p))

	signed := map[string]bool{}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		for _, tok := range []string{
			idp.Sign(claims(idp), jwkstest.WithAlg(alg)),
			idp.Sign(with(claims(idp), "groups", []string{"eng", "admin"}, "nbf", time.Now().Unix()), jwkstest.WithAlg(alg), jwkstest.WithoutKID()),
		} {
			signed[tok] = true
			f.Add(tok)
		}
	}
	f.Add(idp.Sign(claims(idp), jwkstest.WithKID("unknown")))
	f.Add(idp.Sign(with(claims(idp), "exp", nil)))
	f.Add("")
	f.Add("..")
	f.Add(strings.Repeat("A", 9000))

	f.Fuzz(func(t *testing.T, token string) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c, err := v.Verify(ctx, token)
		if signed[token] {
			return
		}
		if err == nil {
			t.Fatalf("input that was never signed verified: %q -> %+v", token, c)
		}
		if c != nil {
			t.Fatalf("claims returned with error %v", err)
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoKeys) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

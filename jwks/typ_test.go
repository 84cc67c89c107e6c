package jwks

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// TestVerifier_TokenTypes: with token_types, only tokens explicitly typed as
// one of them verify (RFC 8725 section 3.11), so an ID token of the same
// issuer and audience is not taken for an access token; without it, typ is
// not checked.
func TestVerifier_TokenTypes(t *testing.T) {
	typed := jwkstest.NewServer(t)
	untyped := jwkstest.NewServer(t)
	p := urlProvider("typed", typed)
	p.TokenTypes = []string{"at+jwt"}
	p.ApplyDefaults()
	q := urlProvider("untyped", untyped)
	q.ApplyDefaults()
	v := startVerifier(t, configWith(p, q))
	ctx := context.Background()

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"at+jwt verifies", typed.Sign(claims(typed), jwkstest.WithHeader("typ", "at+jwt")), nil},
		{"application/at+jwt verifies", typed.Sign(claims(typed), jwkstest.WithHeader("typ", "application/AT+JWT")), nil},
		{"an ID token typed JWT is refused", typed.Sign(claims(typed), jwkstest.WithHeader("typ", "JWT")), ErrMalformed},
		{"a token without typ is refused", typed.Sign(claims(typed), jwkstest.WithHeader("typ", nil)), ErrMalformed},
		{"typ that is not a string is malformed", typed.Sign(claims(typed), jwkstest.WithHeader("typ", 7)), ErrMalformed},
		{"without token_types any typ verifies", untyped.Sign(claims(untyped), jwkstest.WithHeader("typ", "JWT")), nil},
		{"without token_types no typ verifies", untyped.Sign(claims(untyped), jwkstest.WithHeader("typ", nil)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(ctx, tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestConfig_ValidateTokenTypes(t *testing.T) {
	idp := jwkstest.NewServer(t)
	p := urlProvider("corp", idp)
	p.TokenTypes = []string{"at+jwt", "", "a b"}
	p.ApplyDefaults()
	err := configWith(p).Validate("jwt")
	for _, want := range []string{`jwt.providers[0].token_types[1]: "" must be a media type`, `jwt.providers[0].token_types[2]: "a b" must be a media type`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to contain %q", err, want)
		}
	}
}

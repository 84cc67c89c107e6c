package jwks

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

func TestErrors_Hierarchy(t *testing.T) {
	fine := []error{ErrMalformed, ErrTooLarge, ErrUnknownIssuer, ErrAlgorithm, ErrUnknownKID,
		ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuedInFuture, ErrAudience, ErrMissingClaim}
	for _, err := range fine {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%v does not wrap ErrInvalid", err)
		}
		if errors.Is(err, ErrNoKeys) {
			t.Errorf("%v wraps ErrNoKeys", err)
		}
	}
	if errors.Is(ErrNoKeys, ErrInvalid) {
		t.Error("ErrNoKeys wraps ErrInvalid; it must map to 503, not 401")
	}
}

// TestVerifier_Verify covers the token checks one by one against a real
// JWKS served over HTTP.
func TestVerifier_Verify(t *testing.T) {
	idp := jwkstest.NewServer(t)
	// rsOnly publishes RS256 and ES256 keys but its provider allows RS256 only.
	rsOnly := jwkstest.NewServer(t, jwkstest.WithAlgorithms("RS256", "ES256"))
	// attacker serves its own keys; nothing may ever fetch them.
	attacker := jwkstest.NewServer(t)

	main := urlProvider("corp", idp)
	main.Algorithms = supportedAlgorithms
	restricted := urlProvider("restricted", rsOnly)
	restricted.Algorithms = []string{"RS256"}
	v := startVerifier(t, configWith(main, restricted))
	if !v.Ready() {
		t.Fatal("verifier not ready after New")
	}

	rsaKey := idp.Key("RS256")
	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := rsaKey.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pkcs1DER := x509.MarshalPKCS1PublicKey(rsaKey.Public().(*rsa.PublicKey))
	hmacWith := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(idp))
		tok.Header["kid"] = rsaKey.KID
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := func(alg string) string {
		return unsigned(`{"alg":"`+alg+`","kid":"`+rsaKey.KID+`"}`, `{"iss":"`+idp.URL+`","sub":"alice","aud":"`+testAudience+`","exp":4102444800}`, nil)
	}
	attackerRSA := attacker.Key("RS256")
	valid := idp.Sign(claims(idp))
	seg := segments(valid)
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now()

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"RS256 token verifies", valid, nil},
		{"ES256 token verifies", idp.Sign(claims(idp), jwkstest.WithAlg("ES256")), nil},
		{"EdDSA token verifies", idp.Sign(claims(idp), jwkstest.WithAlg("EdDSA")), nil},
		{"token without kid verifies when exactly one key fits its alg", idp.Sign(claims(idp), jwkstest.WithAlg("EdDSA"), jwkstest.WithoutKID()), nil},

		{"wrong iss is an unknown issuer", idp.Sign(with(claims(idp), "iss", "https://evil.test")), ErrUnknownIssuer},
		{"iss differing only by a trailing slash is an unknown issuer", idp.Sign(with(claims(idp), "iss", idp.URL+"/")), ErrUnknownIssuer},
		{"missing iss", idp.Sign(with(claims(idp), "iss", nil)), ErrMissingClaim},
		{"iss that is not a string", idp.Sign(with(claims(idp), "iss", 42)), ErrMissingClaim},

		{"alg none is refused", none("none"), ErrAlgorithm},
		{"alg NONE is refused", none("NONE"), ErrAlgorithm},
		{"HS256 signed with the RSA public key PEM is refused", hmacWith(pubPEM), ErrAlgorithm},
		{"HS256 signed with the RSA public key PKIX DER is refused", hmacWith(pubDER), ErrAlgorithm},
		{"HS256 signed with the RSA public key PKCS1 DER is refused", hmacWith(pkcs1DER), ErrAlgorithm},
		{"alg outside the provider allow-list is refused", rsOnly.Sign(claims(rsOnly), jwkstest.WithAlg("ES256")), ErrAlgorithm},
		{"PS256 with a key published for RS256 is refused", idp.Sign(claims(idp), jwkstest.WithKey(rsaKey), jwkstest.WithAlg("PS256")), ErrAlgorithm},
		{"ES256 naming the kid of the RSA key is refused", idp.Sign(claims(idp), jwkstest.WithAlg("ES256"), jwkstest.WithKID(rsaKey.KID)), ErrAlgorithm},

		{"attacker key with the same kid fails the signature", idp.Sign(claims(idp), jwkstest.WithKey(attackerRSA), jwkstest.WithKID(rsaKey.KID)), ErrSignature},
		{"jku header naming the attacker JWKS is ignored", idp.Sign(claims(idp), jwkstest.WithKey(attackerRSA), jwkstest.WithHeader("jku", attacker.JWKSURL())), ErrUnknownKID},
		{"x5u header naming the attacker is ignored", idp.Sign(claims(idp), jwkstest.WithKey(attackerRSA), jwkstest.WithHeader("x5u", attacker.URL+"/cert.pem")), ErrUnknownKID},
		{"embedded jwk header with the attacker key is ignored", idp.Sign(claims(idp), jwkstest.WithKey(attackerRSA), jwkstest.WithKID(rsaKey.KID), jwkstest.WithHeader("jwk", attackerRSA.JWK())), ErrSignature},
		{"embedded jwk header without kid is ignored", idp.Sign(claims(idp), jwkstest.WithKey(attackerRSA), jwkstest.WithoutKID(), jwkstest.WithHeader("jwk", attackerRSA.JWK())), ErrSignature},

		{"tampered payload fails the signature", seg[0] + "." + enc([]byte(`{"iss":"`+idp.URL+`","sub":"admin","aud":"`+testAudience+`","exp":4102444800}`)) + "." + seg[2], ErrSignature},
		{"tampered header fails the signature", enc([]byte(`{"alg":"RS256","kid":"`+rsaKey.KID+`","typ":"JWT"} `)) + "." + seg[1] + "." + seg[2], ErrSignature},
		{"truncated signature fails the signature", seg[0] + "." + seg[1] + "." + enc(mustDecode(t, seg[2])[:200]), ErrSignature},
		{"empty signature fails the signature", seg[0] + "." + seg[1] + ".", ErrSignature},
		{"token truncated to two segments is malformed", seg[0] + "." + seg[1], ErrMalformed},
		{"token truncated inside the payload is malformed", valid[:len(seg[0])+10], ErrMalformed},
		{"signature with non-canonical base64 is malformed", seg[0] + "." + seg[1] + "." + flipUnusedBits(seg[2]), ErrMalformed},
		{"padded base64 is malformed", seg[0] + "." + seg[1] + "." + seg[2] + "==", ErrMalformed},
		{"four segments are malformed", valid + "." + seg[2], ErrMalformed},
		{"Bearer prefix is malformed", "Bearer " + valid, ErrMalformed},
		{"empty string is malformed", "", ErrMalformed},
		{"random text is malformed", "hello world", ErrMalformed},
		{"header that is not JSON is malformed", enc([]byte("nope")) + "." + seg[1] + "." + seg[2], ErrMalformed},
		{"header without alg is malformed", unsigned(`{"kid":"x"}`, `{}`, []byte{1}), ErrMalformed},
		{"kid that is not a string is malformed", signRaw(t, rsaKey, map[string]any{"alg": "RS256", "kid": 7}, []byte(`{}`)), ErrMalformed},
		{"crit header is refused", idp.Sign(claims(idp), jwkstest.WithHeader("crit", []string{"b64"}), jwkstest.WithHeader("b64", false)), ErrMalformed},
		{"payload that is not an object is malformed", signRaw(t, rsaKey, map[string]any{"alg": "RS256", "kid": rsaKey.KID}, []byte(`["a"]`)), ErrMalformed},
		{"payload with trailing data is malformed", signRaw(t, rsaKey, map[string]any{"alg": "RS256", "kid": rsaKey.KID}, []byte(`{"iss":"x"} {}`)), ErrMalformed},

		{"unknown kid", idp.Sign(claims(idp), jwkstest.WithKID("no-such-kid")), ErrUnknownKID},

		{"expired beyond the leeway", idp.Sign(with(claims(idp), "exp", now.Add(-40*time.Second).Unix())), ErrExpired},
		{"expired within the leeway is accepted", idp.Sign(with(claims(idp), "exp", now.Add(-20*time.Second).Unix())), nil},
		{"exp missing", idp.Sign(with(claims(idp), "exp", nil)), ErrMissingClaim},
		{"exp not a number", idp.Sign(with(claims(idp), "exp", "tomorrow")), ErrMissingClaim},
		{"exp out of range", idp.Sign(with(claims(idp), "exp", 1e300)), ErrMissingClaim},
		{"nbf in the future beyond the leeway", idp.Sign(with(claims(idp), "nbf", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"nbf in the future within the leeway is accepted", idp.Sign(with(claims(idp), "nbf", now.Add(20*time.Second).Unix())), nil},
		{"nbf not a number", idp.Sign(with(claims(idp), "nbf", "soon")), ErrMalformed},
		{"iat in the future beyond the leeway", idp.Sign(with(claims(idp), "iat", now.Add(time.Minute).Unix())), ErrIssuedInFuture},
		{"iat in the future within the leeway is accepted", idp.Sign(with(claims(idp), "iat", now.Add(20*time.Second).Unix())), nil},

		{"wrong aud", idp.Sign(with(claims(idp), "aud", "other-api")), ErrAudience},
		{"aud as a string is accepted", idp.Sign(with(claims(idp), "aud", testAudience)), nil},
		{"aud as an array containing the audience is accepted", idp.Sign(with(claims(idp), "aud", []string{"other-api", testAudience})), nil},
		{"aud as an array without the audience", idp.Sign(with(claims(idp), "aud", []string{"other-api", "third"})), ErrAudience},
		{"aud missing", idp.Sign(with(claims(idp), "aud", nil)), ErrAudience},
		{"aud of the wrong type", idp.Sign(with(claims(idp), "aud", 7)), ErrAudience},

		{"sub missing", idp.Sign(with(claims(idp), "sub", nil)), ErrMissingClaim},
		{"sub empty", idp.Sign(with(claims(idp), "sub", "")), ErrMissingClaim},
		{"sub not a string", idp.Sign(with(claims(idp), "sub", 12)), ErrMissingClaim},
		{"sub with a line break is malformed", idp.Sign(with(claims(idp), "sub", "alice\r\nx-auth-roles: admin")), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "alice" || c.Provider != "corp" || c.Issuer != idp.URL {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if c != nil {
				t.Errorf("claims = %+v on error", c)
			}
			assertNoTokenInError(t, err, tc.token)
		})
	}
	if n := attacker.Requests() + attacker.DiscoveryRequests(); n != 0 {
		t.Errorf("the attacker server got %d requests, want 0", n)
	}
}

// assertNoTokenInError checks that err mentions no segment of token.
func assertNoTokenInError(t *testing.T, err error, token string) {
	t.Helper()
	for _, s := range segments(token) {
		if len(s) >= 16 && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a token segment", err)
		}
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flipUnusedBits changes the unused low bits of the last base64url
// character, which lenient decoders ignore.
func flipUnusedBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestVerifier_TokenWithoutKIDIsRefusedWhenSeveralKeysFit(t *testing.T) {
	idp := jwkstest.NewServer(t, jwkstest.WithAlgorithms("EdDSA"))
	first := idp.Key("EdDSA")
	second := jwkstest.MustKey(t, "EdDSA")
	idp.SetKeys(first, second)
	v := startVerifier(t, configWith(urlProvider("corp", idp)))

	tok := idp.Sign(claims(idp), jwkstest.WithKey(second), jwkstest.WithoutKID())
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("Verify = %v, want ErrUnknownKID", err)
	}
	tok = idp.Sign(claims(idp), jwkstest.WithKey(second))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify with kid: %v", err)
	}
}

func TestVerifier_RefusesOversizedTokenBeforeParsing(t *testing.T) {
	idp := jwkstest.NewServer(t)
	cfg := configWith(urlProvider("corp", idp))
	cfg.MaxTokenBytes = 1024
	v := startVerifier(t, cfg)
	fetches := idp.Requests()

	// A correctly signed token of valid shape, with an unknown kid: had it
	// been parsed, the unknown kid would have triggered a JWKS fetch.
	big := idp.Sign(with(claims(idp), "pad", strings.Repeat("x", 1024)), jwkstest.WithKID("unknown"))
	// Garbage of valid shape: had it been parsed, it would be malformed.
	garbage := "!!." + strings.Repeat("a", 1020) + ".!!"
	atLimit := "!!." + strings.Repeat("a", 1018) + ".!!"

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"signed token over the limit", big, ErrTooLarge},
		{"garbage over the limit", garbage, ErrTooLarge},
		{"garbage at the limit is parsed", atLimit, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if got := idp.Requests(); got != fetches {
		t.Errorf("JWKS fetched %d times for oversized tokens, want 0", got-fetches)
	}
}

func TestVerifier_SelectsProviderByExactIssuer(t *testing.T) {
	a := jwkstest.NewServer(t)
	b := jwkstest.NewServer(t)
	v := startVerifier(t, configWith(urlProvider("a", a), urlProvider("b", b)))

	// B publishes a key with the same kid as A's RSA key.
	collide := jwkstest.MustKey(t, "RS256")
	collide.KID = a.Key("RS256").KID
	b.SetKeys(append(b.Keys(), collide)...)

	tests := []struct {
		name         string
		token        string
		wantProvider string
		wantErr      error
	}{
		{"token of A goes to provider a", a.Sign(claims(a)), "a", nil},
		{"token of B goes to provider b", b.Sign(claims(b), jwkstest.WithAlg("ES256")), "b", nil},
		{"iss A signed with B's key is refused", a.Sign(claims(a), jwkstest.WithKey(b.Key("ES256"))), "", ErrUnknownKID},
		{"iss A signed with B's key of the same kid is refused", a.Sign(claims(a), jwkstest.WithKey(collide)), "", ErrSignature},
		{"iss B signed with A's key is refused", b.Sign(claims(b), jwkstest.WithKey(a.Key("EdDSA"))), "", ErrUnknownKID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if err == nil && c.Provider != tc.wantProvider {
				t.Errorf("Provider = %q, want %q", c.Provider, tc.wantProvider)
			}
		})
	}
}

func TestVerifier_Claims(t *testing.T) {
	idp := jwkstest.NewServer(t)
	kc := urlProvider("keycloak", idp)
	kc.GroupsClaim = "realm_access.roles"
	kc.SubjectClaim = "preferred_username"
	kc.ClaimsToHeaders = map[string]string{
		"email":                  "X-Auth-Email",
		"tenant.id":              "x-auth-tenant",
		"verified":               "x-auth-verified",
		"amr":                    "x-auth-amr",
		"address":                "x-auth-address",
		"missing":                "x-auth-missing",
		"bad":                    "x-auth-bad",
		"https://example.com/ns": "x-auth-ns",
	}
	other := jwkstest.NewServer(t)
	auth0 := urlProvider("auth0", other)
	auth0.GroupsClaim = "https://example.com/groups"
	v := startVerifier(t, configWith(kc, auth0))

	base := with(claims(idp), "preferred_username", "bob")
	tests := []struct {
		name    string
		token   string
		want    *Claims
		wantErr error
	}{
		{
			name: "groups from a dotted path and headers from claims",
			token: idp.Sign(with(base,
				"realm_access", map[string]any{"roles": []string{"eng", "ml-team"}},
				"email", "bob@example.com",
				"tenant", map[string]any{"id": json.Number("12345678901234567890")},
				"verified", true,
				"amr", []any{"pwd", "otp", map[string]any{"x": 1}, 2},
				"address", map[string]any{"city": "Paris"},
				"bad", "a\nb",
				"https://example.com/ns", "literal",
			)),
			want: &Claims{
				Provider: "keycloak", Issuer: idp.URL, Subject: "bob",
				Groups: []string{"eng", "ml-team"},
				Headers: []Header{
					{"x-auth-amr", "pwd,otp,2"},
					{"x-auth-email", "bob@example.com"},
					{"x-auth-ns", "literal"},
					{"x-auth-tenant", "12345678901234567890"},
					{"x-auth-verified", "true"},
				},
			},
		},
		{
			name:  "groups as a single string",
			token: idp.Sign(with(base, "realm_access", map[string]any{"roles": "eng"})),
			want:  &Claims{Provider: "keycloak", Issuer: idp.URL, Subject: "bob", Groups: []string{"eng"}},
		},
		{
			name:  "groups missing",
			token: idp.Sign(base),
			want:  &Claims{Provider: "keycloak", Issuer: idp.URL, Subject: "bob"},
		},
		{
			name:  "groups in token order without empty strings",
			token: idp.Sign(with(base, "realm_access", map[string]any{"roles": []string{"z", "", "a"}})),
			want:  &Claims{Provider: "keycloak", Issuer: idp.URL, Subject: "bob", Groups: []string{"z", "a"}},
		},
		{
			name:    "groups holding a number is malformed",
			token:   idp.Sign(with(base, "realm_access", map[string]any{"roles": []any{"eng", 1}})),
			wantErr: ErrMalformed,
		},
		{
			name:    "groups as an object is malformed",
			token:   idp.Sign(with(base, "realm_access", map[string]any{"roles": map[string]any{"a": "b"}})),
			wantErr: ErrMalformed,
		},
		{
			name:    "custom subject claim missing",
			token:   idp.Sign(claims(idp)),
			wantErr: ErrMissingClaim,
		},
		{
			name:  "namespaced claim name containing dots",
			token: other.Sign(with(claims(other), "https://example.com/groups", []string{"admins"})),
			want:  &Claims{Provider: "auth0", Issuer: other.URL, Subject: "alice", Groups: []string{"admins"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			c2 := *c
			c2.ExpiresAt = time.Time{}
			if diff := cmp.Diff(tc.want, &c2); diff != "" {
				t.Errorf("claims mismatch (-want +got):\n%s", diff)
			}
			if c.ExpiresAt.IsZero() {
				t.Error("ExpiresAt is zero")
			}
		})
	}
}

func TestVerifier_ExpiresAtIsTheTokenExp(t *testing.T) {
	idp := jwkstest.NewServer(t)
	v := startVerifier(t, configWith(urlProvider("corp", idp)))
	exp := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	c, err := v.Verify(context.Background(), idp.Sign(with(claims(idp), "exp", exp.Unix())))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ExpiresAt.Equal(exp) {
		t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, exp)
	}
}

func TestNew_RequiresDeps(t *testing.T) {
	env := newEnv()
	if _, err := New(context.Background(), Default(), Deps{Metrics: env.deps.Metrics}); err == nil {
		t.Error("New without Logger succeeded")
	}
	if _, err := New(context.Background(), Default(), Deps{Logger: discardLogger}); err == nil {
		t.Error("New without Metrics succeeded")
	}
}

// An invalid jwt section is refused by Config.Validate, which config.Load
// runs on every file (start and reload) before any Verifier is built; New
// trusts its input and does not check again.
func TestValidate_RejectsInvalidConfig(t *testing.T) {
	cfg := configWith(ProviderConfig{Name: "x"})
	err := cfg.Validate("jwt")
	if err == nil || !strings.Contains(err.Error(), "jwt.providers[0].issuer") {
		t.Fatalf("Validate = %v, want a config error naming jwt.providers[0].issuer", err)
	}
}

func TestVerifier_WithoutProvidersIsReadyAndRefusesTokens(t *testing.T) {
	v := startVerifier(t, Default())
	if !v.Ready() {
		t.Error("Ready() = false with no providers")
	}
	idp := jwkstest.NewServer(t)
	if _, err := v.Verify(context.Background(), idp.Sign(claims(idp))); !errors.Is(err, ErrAlgorithm) && !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("Verify = %v, want a rejection", err)
	}
}

func TestVerifier_CloseIsIdempotent(t *testing.T) {
	idp := jwkstest.NewServer(t)
	v, err := New(context.Background(), configWith(urlProvider("corp", idp)), newEnv().deps)
	if err != nil {
		t.Fatal(err)
	}
	tok := idp.Sign(claims(idp))
	v.Close()
	v.Close()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("Verify after Close with loaded keys: %v", err)
	}
	// An unknown kid after Close does not wait for a refresh that can no
	// longer happen.
	start := time.Now()
	if _, err := v.Verify(context.Background(), idp.Sign(claims(idp), jwkstest.WithKID("new"))); !errors.Is(err, ErrUnknownKID) {
		t.Errorf("Verify = %v, want ErrUnknownKID", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Verify after Close took %s", d)
	}
}

func TestVerifier_EverySupportedAlgorithm(t *testing.T) {
	idp := jwkstest.NewServer(t, jwkstest.WithAlgorithms(supportedAlgorithms...))
	p := urlProvider("corp", idp)
	p.Algorithms = supportedAlgorithms
	cfg := configWith(p)
	cfg.Cache.Disabled = true
	v := startVerifier(t, cfg)
	for _, alg := range supportedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			tok := idp.Sign(claims(idp), jwkstest.WithAlg(alg))
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			seg := segments(tok)
			sig := mustDecode(t, seg[2])
			sig[len(sig)/2] ^= 1
			bad := seg[0] + "." + seg[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
			if _, err := v.Verify(context.Background(), bad); !errors.Is(err, ErrSignature) {
				t.Fatalf("Verify with a flipped signature bit = %v, want ErrSignature", err)
			}
		})
	}
}

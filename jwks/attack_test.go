package jwks

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// This file is the hostile-token suite of docs/SECURITY.md: tokens that are
// correctly signed by the provider's own key (so that only the protection
// under test stands between them and an allow) but are ambiguous, oddly
// typed or shaped, each refused or handled as RFC 8725 advises.

// member is one raw JSON object member: a name and a value written as JSON.
type member struct{ name, raw string }

// object writes members as a JSON object in order, duplicates included.
func object(ms ...member) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", m.name, m.raw)
	}
	b.WriteByte('}')
	return b.String()
}

// validMembers are the claims of a valid token of issuer iss, as raw JSON.
func validMembers(iss string) []member {
	now := time.Now()
	return []member{
		{"iss", fmt.Sprintf("%q", iss)},
		{"sub", `"alice"`},
		{"aud", fmt.Sprintf("%q", testAudience)},
		{"iat", fmt.Sprint(now.Unix())},
		{"exp", fmt.Sprint(now.Add(time.Hour).Unix())},
	}
}

// claimsWith returns the valid claims of iss with name's value replaced by
// raw ("" deletes it), or appended when the claim is not there.
func claimsWith(iss string, kv ...string) string {
	ms := validMembers(iss)
	for i := 0; i < len(kv); i += 2 {
		name, raw := kv[i], kv[i+1]
		found := false
		for j := range ms {
			if ms[j].name == name {
				ms[j].raw, found = raw, true
			}
		}
		if !found {
			ms = append(ms, member{name, raw})
		}
	}
	out := ms[:0]
	for _, m := range ms {
		if m.raw != "" {
			out = append(out, m)
		}
	}
	return object(out...)
}

// signBytes signs a raw header and payload with k using the JWS method of
// k.Alg, whatever alg the header names: the signature is always genuine.
func signBytes(t testing.TB, k *jwkstest.Key, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	sig, err := jwt.GetSigningMethod(k.Alg).Sign(input, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

// hdr is a JWS header for k with extra raw members.
func hdr(k *jwkstest.Key, extra ...member) string {
	return object(append([]member{{"alg", fmt.Sprintf("%q", k.Alg)}, {"kid", fmt.Sprintf("%q", k.KID)}}, extra...)...)
}

// TestVerifier_RefusesHostileTokens runs the attack table. Every token
// carries a genuine signature of a key the provider trusts, so a rejection
// can only come from the check the case names.
func TestVerifier_RefusesHostileTokens(t *testing.T) {
	idp := jwkstest.NewServer(t)
	main := urlProvider("corp", idp)
	main.ClaimsToHeaders = map[string]string{"email": "x-auth-email"}
	// A provider whose issuer has non-ASCII characters (NFC "é"), sharing
	// the same keys, for the unicode cases.
	const nfcIssuer = "https://idp.example/realms/caf\u00e9"
	uni := ProviderConfig{Name: "unicode", Issuer: nfcIssuer, Audiences: []string{testAudience}, JWKSURL: idp.JWKSURL()}
	cfg := configWith(main, uni)
	cfg.Cache.Disabled = true // every case runs every check
	v := startVerifier(t, cfg)

	rs := idp.Key("RS256")
	es := idp.Key("ES256")
	ed := idp.Key("EdDSA")
	iss := idp.URL
	valid := claimsWith(iss)
	now := time.Now()
	future := now.Add(time.Hour).Unix()
	// inner is a valid token, the payload of the nested-JWT cases.
	inner := signBytes(t, rs, hdr(rs), valid)
	enc := base64.RawURLEncoding.EncodeToString
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }
	deepArray := func(n int) string { return strings.Repeat(`[`, n) + strings.Repeat(`]`, n) }

	tests := []struct {
		name    string
		token   string
		wantErr error  // nil: accepted
		wantSub string // when accepted: the exact subject (default alice)
	}{
		{"control: the raw-signed valid token verifies", signBytes(t, rs, hdr(rs), valid), nil, ""},

		// Duplicate member names (RFC 8725 section 3.2 / RFC 7519 section 4):
		// parsers that keep the first or the last would disagree, so any
		// duplicate is refused, also when spelled with an escape.
		{"header: alg twice (RS256 then none)", signBytes(t, rs, object(member{"alg", `"RS256"`}, member{"alg", `"none"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrMalformed, ""},
		{"header: alg twice (none then RS256)", signBytes(t, rs, object(member{"alg", `"none"`}, member{"alg", `"RS256"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrMalformed, ""},
		{"header: alg twice, the second spelled \\u0061lg", signBytes(t, rs, `{"alg":"RS256","\u0061lg":"HS256","kid":"`+rs.KID+`"}`, valid), ErrMalformed, ""},
		{"header: kid twice", signBytes(t, rs, hdr(rs, member{"kid", `"other"`}), valid), ErrMalformed, ""},
		{"header: crit twice", signBytes(t, rs, hdr(rs, member{"crit", `["exp"]`}, member{"crit", `[]`}), valid), ErrMalformed, ""},
		{"payload: sub twice (alice then admin)", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"sub":"admin"}`), ErrMalformed, ""},
		{"payload: sub twice, the second spelled s\\u0075b", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"s\u0075b":"admin"}`), ErrMalformed, ""},
		{"payload: iss twice (trusted then evil)", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"iss":"https://evil.test"}`), ErrMalformed, ""},
		{"payload: exp twice (future then past)", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"exp":1}`), ErrMalformed, ""},
		{"payload: aud twice", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"aud":"other-api"}`), ErrMalformed, ""},
		{"payload: groups twice", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`,"groups":["eng"],"groups":["admin"]}`), ErrMalformed, ""},
		{"payload: duplicate inside a nested claim", signBytes(t, rs, hdr(rs), claimsWith(iss, "realm_access", `{"roles":["eng"],"roles":["admin"]}`)), ErrMalformed, ""},

		// iss must be one string, compared exactly.
		{"iss as an array holding the issuer", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", fmt.Sprintf("[%q]", iss))), ErrMissingClaim, ""},
		{"iss as an object", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", fmt.Sprintf(`{"iss":%q}`, iss))), ErrMissingClaim, ""},
		{"iss null", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", `null`)), ErrMissingClaim, ""},
		{"iss true", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", `true`)), ErrMissingClaim, ""},
		{"iss empty string", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", `""`)), ErrUnknownIssuer, ""},
		// sub must be one non-empty string.
		{"sub as an array", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `["alice"]`)), ErrMissingClaim, ""},
		{"sub as an object", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `{"id":"alice"}`)), ErrMissingClaim, ""},
		{"sub null", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `null`)), ErrMissingClaim, ""},
		{"sub false", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `false`)), ErrMissingClaim, ""},

		// aud: a string or an array of strings (RFC 7519 section 4.1.3).
		{"aud array holding only a number", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[7]`)), ErrAudience, ""},
		{"aud array holding null", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[null]`)), ErrAudience, ""},
		{"aud array holding the audience in a nested array", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[["llm-gateway"]]`)), ErrAudience, ""},
		{"aud array holding the audience in an object", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[{"aud":"llm-gateway"}]`)), ErrAudience, ""},
		{"aud array mixing a number and the audience", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[7,"llm-gateway"]`)), ErrAudience, ""},
		{"aud array mixing null and the audience", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `["llm-gateway",null]`)), ErrAudience, ""},
		{"aud empty array", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `[]`)), ErrAudience, ""},
		{"aud as an object", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `{"llm-gateway":true}`)), ErrAudience, ""},
		{"aud true", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `true`)), ErrAudience, ""},
		{"aud null", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `null`)), ErrAudience, ""},
		{"aud differing in case", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `"LLM-Gateway"`)), ErrAudience, ""},
		{"aud with a trailing space", signBytes(t, rs, hdr(rs), claimsWith(iss, "aud", `"llm-gateway "`)), ErrAudience, ""},

		// NumericDate edge values (RFC 7519 section 2: seconds, may be
		// fractional). Out-of-range values are refused, never wrapped.
		{"exp negative", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `-1`)), ErrMissingClaim, ""},
		{"exp zero is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `0`)), ErrExpired, ""},
		{"exp minus zero is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `-0`)), ErrExpired, ""},
		{"exp minus zero point zero is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `-0.0`)), ErrExpired, ""},
		{"exp 2^53+1", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `9007199254740993`)), ErrMissingClaim, ""},
		{"exp 1e19", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `1e19`)), ErrMissingClaim, ""},
		{"exp 2^63 (int64 overflow)", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `9223372036854775808`)), ErrMissingClaim, ""},
		{"exp 1e400 (float overflow)", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `1e400`)), ErrMissingClaim, ""},
		{"exp 1e-400 (underflow) is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `1e-400`)), ErrExpired, ""},
		{"exp with 400 digits", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", "4"+strings.Repeat("0", 399))), ErrMissingClaim, ""},
		{"exp one second after year 9999", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `253402300800`)), ErrMissingClaim, ""},
		{"exp at the end of year 9999 is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `253402300799`)), nil, ""},
		{"exp with a fraction is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", fmt.Sprintf("%d.75", future))), nil, ""},
		{"exp with a fraction beyond the leeway is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", fmt.Sprintf("%d.5", now.Add(-31*time.Second).Unix()))), ErrExpired, ""},
		{"exp in exponent notation is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `4.1E9`)), nil, ""},
		{"exp in exponent notation in the past is expired", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `1.5e9`)), ErrExpired, ""},
		{"exp as a numeric string", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", fmt.Sprintf(`"%d"`, future))), ErrMissingClaim, ""},
		{"exp true", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `true`)), ErrMissingClaim, ""},
		{"exp null", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", `null`)), ErrMissingClaim, ""},
		{"exp as an array", signBytes(t, rs, hdr(rs), claimsWith(iss, "exp", fmt.Sprintf(`[%d]`, future))), ErrMissingClaim, ""},
		{"nbf negative", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `-1`)), ErrMalformed, ""},
		{"nbf zero is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `0`)), nil, ""},
		{"nbf minus zero is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `-0`)), nil, ""},
		{"nbf 2^53+1", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `9007199254740993`)), ErrMalformed, ""},
		{"nbf 1e19", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `1e19`)), ErrMalformed, ""},
		{"nbf with a fraction in the past is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", fmt.Sprintf("%d.999", now.Add(-time.Minute).Unix()))), nil, ""},
		{"nbf with a fraction beyond the leeway", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", fmt.Sprintf("%d.5", now.Add(45*time.Second).Unix()))), ErrNotYetValid, ""},
		{"nbf in exponent notation in the future", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `4.0e9`)), ErrNotYetValid, ""},
		{"nbf null", signBytes(t, rs, hdr(rs), claimsWith(iss, "nbf", `null`)), ErrMalformed, ""},
		{"iat negative", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `-1`)), ErrMalformed, ""},
		{"iat zero is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `0`)), nil, ""},
		{"iat 2^53+1", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `9007199254740993`)), ErrMalformed, ""},
		{"iat 1e19", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `1e19`)), ErrMalformed, ""},
		{"iat with a fraction is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", fmt.Sprintf("%d.25", now.Unix()))), nil, ""},
		{"iat in exponent notation in the future", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `4.0e9`)), ErrIssuedInFuture, ""},
		{"iat as a string", signBytes(t, rs, hdr(rs), claimsWith(iss, "iat", `"now"`)), ErrMalformed, ""},

		// Nested JWTs (cty: JWT) are not supported: the payload must be the
		// claims object itself.
		{"nested JWT: cty JWT with a signed JWT as payload", signBytes(t, rs, hdr(rs, member{"cty", `"JWT"`}), inner), ErrMalformed, ""},
		{"nested JWT: payload is a JSON string holding a JWT", signBytes(t, rs, hdr(rs, member{"cty", `"JWT"`}), fmt.Sprintf("%q", inner)), ErrMalformed, ""},
		{"nested JWT without cty: payload is a JWT", signBytes(t, rs, hdr(rs), inner), ErrMalformed, ""},

		// JWE (RFC 7516) is never accepted: five segments are malformed, and
		// a key-management alg is not a signature alg.
		{"JWE compact (5 segments, RSA-OAEP/A256GCM)", enc([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"`+rs.KID+`"}`)) + "." + enc(make([]byte, 256)) + "." + enc(make([]byte, 12)) + "." + enc([]byte(valid)) + "." + enc(make([]byte, 16)), ErrMalformed, ""},
		{"JWE-shaped 5 segments whose header says RS256", inner + "." + enc([]byte("iv")) + "." + enc([]byte("tag")), ErrMalformed, ""},
		{"JWS header with alg RSA-OAEP and enc A256GCM", signBytes(t, rs, object(member{"alg", `"RSA-OAEP"`}, member{"enc", `"A256GCM"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"JWS header with alg dir", signBytes(t, rs, object(member{"alg", `"dir"`}, member{"enc", `"A256GCM"`}), valid), ErrAlgorithm, ""},

		// alg is compared exactly against the allow-list (RFC 7515 section
		// 4.1.1: case-sensitive); every token below is signed for real with
		// the algorithm its alg imitates.
		{"alg rs256", signBytes(t, rs, object(member{"alg", `"rs256"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg Rs256", signBytes(t, rs, object(member{"alg", `"Rs256"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg RS256 with a trailing space", signBytes(t, rs, object(member{"alg", `"RS256 "`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg RS256 with a trailing NUL", signBytes(t, rs, object(member{"alg", `"RS256\u0000"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg in full-width letters", signBytes(t, rs, object(member{"alg", `"ＲＳ256"`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg es256", signBytes(t, es, object(member{"alg", `"es256"`}, member{"kid", `"` + es.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg EDDSA", signBytes(t, ed, object(member{"alg", `"EDDSA"`}, member{"kid", `"` + ed.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg Ed25519 (not in the allow-list)", signBytes(t, ed, object(member{"alg", `"Ed25519"`}, member{"kid", `"` + ed.KID + `"`}), valid), ErrAlgorithm, ""},
		{"alg as an array", signBytes(t, rs, object(member{"alg", `["RS256"]`}, member{"kid", `"` + rs.KID + `"`}), valid), ErrMalformed, ""},

		// typ and cty do not select anything: keys, algorithm and claims are
		// checked the same whatever they say (RFC 8725 section 3.11 explicit
		// typing is not required of access tokens, whose issuers differ).
		{"typ absent is accepted", signBytes(t, rs, hdr(rs), valid), nil, ""},
		{"typ JWT is accepted", signBytes(t, rs, hdr(rs, member{"typ", `"JWT"`}), valid), nil, ""},
		{"typ jwt (lower case) is accepted", signBytes(t, rs, hdr(rs, member{"typ", `"jwt"`}), valid), nil, ""},
		{"typ at+jwt is accepted", signBytes(t, rs, hdr(rs, member{"typ", `"at+jwt"`}), valid), nil, ""},
		{"typ application/at+jwt is accepted", signBytes(t, rs, hdr(rs, member{"typ", `"application/at+jwt"`}), valid), nil, ""},
		{"typ JWE does not make a JWS a JWE", signBytes(t, rs, hdr(rs, member{"typ", `"JWE"`}), valid), nil, ""},
		{"typ JWT with an expired payload is still expired", signBytes(t, rs, hdr(rs, member{"typ", `"JWT"`}), claimsWith(iss, "exp", `1`)), ErrExpired, ""},
		{"cty JWT over a plain claims payload: the outer claims are checked", signBytes(t, rs, hdr(rs, member{"cty", `"JWT"`}), claimsWith(iss, "aud", `"other-api"`)), ErrAudience, ""},

		// Unicode: the issuer is compared byte for byte, after JSON
		// unescaping and without normalisation; the subject is kept verbatim.
		{"NFC issuer matches exactly", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer)), nil, ""},
		{"NFC issuer written with \\u escapes matches", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", `"https:\/\/idp.example\/realms\/caf\u00e9"`)), nil, ""},
		{"NFD issuer (e + combining acute) is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", fmt.Sprintf("%q", "https://idp.example/realms/cafe\u0301"))), ErrUnknownIssuer, ""},
		{"homoglyph issuer (Cyrillic e) is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", fmt.Sprintf("%q", "https://idp.\u0435xample/realms/caf\u00e9"))), ErrUnknownIssuer, ""},
		{"issuer with a zero-width space is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", fmt.Sprintf("%q", "https://idp.example\u200b/realms/caf\u00e9"))), ErrUnknownIssuer, ""},
		{"issuer with a trailing NUL is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", `"https://idp.example/realms/caf\u00e9\u0000"`)), ErrUnknownIssuer, ""},
		{"issuer in upper case is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", fmt.Sprintf("%q", strings.ToUpper(nfcIssuer)))), ErrUnknownIssuer, ""},
		{"issuer with a BOM is unknown", signBytes(t, rs, hdr(rs), claimsWith(nfcIssuer, "iss", fmt.Sprintf("%q", "\ufeff"+nfcIssuer))), ErrUnknownIssuer, ""},
		{"test issuer with a homoglyph dot is unknown", signBytes(t, rs, hdr(rs), claimsWith(iss, "iss", fmt.Sprintf("%q", strings.Replace(iss, ".", "\u2024", 1)))), ErrUnknownIssuer, ""},
		{"sub with a NUL is malformed", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice\u0000admin"`)), ErrMalformed, ""},
		{"sub with DEL is malformed", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice\u007f"`)), ErrMalformed, ""},
		{"sub with a leading space is malformed", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `" alice"`)), ErrMalformed, ""},
		{"sub with a trailing space is malformed", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice "`)), ErrMalformed, ""},
		{"sub with a trailing no-break space is malformed", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice\u00a0"`)), ErrMalformed, ""},
		{"sub with an inner space is kept verbatim", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice smith"`)), nil, "alice smith"},
		{"sub with an RTL override is kept verbatim", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice\u202enimda"`)), nil, "alice\u202enimda"},
		{"sub in NFD is kept verbatim (not normalised to NFC)", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"jose\u0301"`)), nil, "jose\u0301"},

		// Nesting depth is bounded before any recursion can hurt.
		{"payload nested 33 deep", signBytes(t, rs, hdr(rs), claimsWith(iss, "x", deep(32))), ErrMalformed, ""},
		{"payload nested 31 deep is accepted", signBytes(t, rs, hdr(rs), claimsWith(iss, "x", deep(30))), nil, ""},
		{"payload with 2000 nested arrays", signBytes(t, rs, hdr(rs), claimsWith(iss, "x", deepArray(2000))), ErrMalformed, ""},
		{"header nested 33 deep", signBytes(t, rs, hdr(rs, member{"x", deep(32)}), valid), ErrMalformed, ""},

		// Other JSON shapes.
		{"payload with a byte order mark", signBytes(t, rs, hdr(rs), "\ufeff"+valid), ErrMalformed, ""},
		{"payload with a comment", signBytes(t, rs, hdr(rs), strings.TrimSuffix(valid, "}")+`/* x */}`), ErrMalformed, ""},
		{"payload with invalid UTF-8 in sub", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", "\"alice\xc0\xaf\"")), ErrMalformed, ""},
		{"payload with an unpaired surrogate in sub", signBytes(t, rs, hdr(rs), claimsWith(iss, "sub", `"alice\ud800"`)), ErrMalformed, ""},
		{"kid empty string is treated as absent", signBytes(t, ed, object(member{"alg", `"EdDSA"`}, member{"kid", `""`}), valid), nil, ""},
		{"kid naming a path", signBytes(t, rs, object(member{"alg", `"RS256"`}, member{"kid", `"../../../../dev/null"`}), valid), ErrUnknownKID, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want accepted", err)
				}
				want := tc.wantSub
				if want == "" {
					want = "alice"
				}
				if c.Subject != want {
					t.Errorf("Subject = %q, want %q", c.Subject, want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if c != nil {
				t.Errorf("claims %+v returned with an error", c)
			}
			if len(err.Error()) > 512 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
			assertNoTokenInError(t, err, tc.token)
		})
	}
}

// TestVerifier_EnormousKID: a kid of tens of kilobytes is refused by size
// before parsing when the token is over max_token_bytes, and otherwise costs
// one map lookup: it is never echoed in full, and a flood of them triggers
// at most one (rate-limited) JWKS fetch.
func TestVerifier_EnormousKID(t *testing.T) {
	idp := jwkstest.NewServer(t)
	cfg := configWith(urlProvider("corp", idp))
	cfg.MaxTokenBytes = maxTokenBytes // the largest allowed: 64 KiB
	o := testOptions()
	o.unknownKIDPeriod = time.Hour
	v := newEnv().start(t, cfg, o)
	rs := idp.Key("RS256")
	valid := claimsWith(idp.URL)
	fetches := idp.Requests()

	below := strings.Repeat("k", 45<<10)  // base64: the token stays under 64 KiB
	above := strings.Repeat("k", 100<<10) // the token is over 64 KiB
	tests := []struct {
		name    string
		kid     string
		wantErr error
	}{
		{"45 KB kid below max_token_bytes is an unknown kid", below, ErrUnknownKID},
		{"a second 45 KB kid is an unknown kid", below[1:] + "x", ErrUnknownKID},
		{"100 KB kid above max_token_bytes is too large", above, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := signBytes(t, rs, object(member{"alg", `"RS256"`}, member{"kid", fmt.Sprintf("%q", tc.kid)}), valid)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			_, err := v.Verify(ctx, tok)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Verify took %v", took)
			}
			if n := len(err.Error()); n > 512 {
				t.Errorf("error message is %d bytes: the kid is echoed", n)
			}
		})
	}
	if got := idp.Requests() - fetches; got > 1 {
		t.Errorf("enormous kids caused %d JWKS fetches, want at most 1", got)
	}
}

// TestVerifier_IgnoresWeakAndUnusableKeys: a JWK Set may hold keys that must
// never verify a token: an RSA key under 2048 bits, a key published for
// encryption, a key whose key_ops exclude verify, and a symmetric (oct)
// key. They are skipped (and logged); tokens signed with them are refused,
// while the set's good key keeps working.
func TestVerifier_IgnoresWeakAndUnusableKeys(t *testing.T) {
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := &jwkstest.Key{KID: "weak", Alg: "RS256", Signer: weakRSA}
	enc := jwkstest.MustKey(t, "RS256")
	enc.KID = "enc"
	noVerify := jwkstest.MustKey(t, "ES256")
	noVerify.KID = "sign-only"
	good := jwkstest.MustKey(t, "EdDSA")
	secret := []byte("a shared secret that is also in the key set")

	jwkEnc := enc.JWK()
	jwkEnc["use"] = "enc"
	jwkNoVerify := noVerify.JWK()
	delete(jwkNoVerify, "use")
	jwkNoVerify["key_ops"] = []string{"sign"}
	oct := map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": base64.RawURLEncoding.EncodeToString(secret)}
	doc, err := json.Marshal(map[string]any{"keys": []any{weak.JWK(), jwkEnc, jwkNoVerify, oct, good.JWK()}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	const iss = "https://keys.test"
	p := ProviderConfig{Name: "corp", Issuer: iss, Audiences: []string{testAudience}, JWKSFile: path,
		Algorithms: []string{"RS256", "ES256", "EdDSA"}}
	env := newEnv()
	v := env.start(t, configWith(p), nil)

	payload := claimsWith(iss)
	hmac := func() string {
		in := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"hmac"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		sig, err := jwt.SigningMethodHS256.Sign(in, secret)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}()
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"the good key verifies", signBytes(t, good, hdr(good), payload), nil},
		{"RSA 1024 key is ignored", signBytes(t, weak, hdr(weak), payload), ErrUnknownKID},
		{"encryption key is ignored", signBytes(t, enc, hdr(enc), payload), ErrUnknownKID},
		{"key whose key_ops exclude verify is ignored", signBytes(t, noVerify, hdr(noVerify), payload), ErrUnknownKID},
		{"oct key with HS256 is refused", hmac, ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
		})
	}
	for _, kid := range []string{"weak", "enc", "sign-only", "hmac"} {
		if !strings.Contains(env.logs.String(), `"kid":"`+kid+`"`) {
			t.Errorf("no log line for the ignored key %s", kid)
		}
	}
}

package jwks

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Claims is the verified identity of a token. Treat it as immutable: the
// token cache hands the same *Claims (and the same Groups and Headers
// slices) to every caller presenting the same token, so callers that need
// to reorder Groups must copy it first.
type Claims struct {
	// Provider is the name of the provider that verified the token.
	Provider string
	// Issuer is the token's iss (the provider's issuer).
	Issuer string
	// Subject is the value of the provider's subject_claim.
	Subject string
	// Groups are the values of the provider's groups_claim, in token order,
	// without empty strings. Nil when the claim is absent.
	Groups []string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
	// Headers are the claims_to_headers values, sorted by Name. Strings are
	// used as is, numbers and booleans are formatted as in the token, arrays
	// of those are joined with ","; objects, nulls, and values that contain
	// control characters or exceed 2048 bytes produce no header.
	Headers []Header
}

// Header is one upstream header set from a claim.
type Header struct {
	Name  string
	Value string
}

// maxHeaderValue bounds a header value taken from a claim.
const maxHeaderValue = 2048

// claimPath names a claim: either a top-level claim with exactly that name,
// or, when there is none, a dotted path through nested objects.
type claimPath struct {
	full  string
	parts []string
}

func newClaimPath(s string) claimPath {
	return claimPath{full: s, parts: strings.Split(s, ".")}
}

func (c claimPath) lookup(claims *jsonValue) (*jsonValue, bool) {
	if v, ok := claims.get(c.full); ok || len(c.parts) < 2 {
		return v, ok
	}
	cur := claims
	for _, part := range c.parts {
		v, ok := cur.get(part)
		if !ok {
			return nil, false
		}
		cur = v
	}
	return cur, true
}

// headerMapping maps one claim to one header.
type headerMapping struct {
	claim  claimPath
	header string
}

// Bounds of a NumericDate: 1970 up to the end of year 9999.
const maxNumericDate = 253402300799

// NumericDate converts a NumericDate (RFC 7519 section 2: seconds since the
// epoch, possibly fractional) to a time. ok is false for NaN, a negative
// value or one past the end of year 9999. The introspect package reads exp
// and nbf with it too.
func NumericDate(f float64) (t time.Time, ok bool) {
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// numericDate reads a NumericDate claim. present is false when the claim is
// absent; err is set when it is not a number in range.
func numericDate(claims *jsonValue, name string) (t time.Time, present bool, err error) {
	v, ok := claims.get(name)
	if !ok {
		return time.Time{}, false, nil
	}
	if v.kind != jsonNumber {
		return time.Time{}, true, fmt.Errorf("%s is not a number", name)
	}
	f, perr := strconv.ParseFloat(v.str, 64)
	if t, ok = NumericDate(f); perr != nil || !ok {
		return time.Time{}, true, fmt.Errorf("%s is not a date in range", name)
	}
	return t, true, nil
}

// checkClaims applies the time, audience and subject rules of p to the
// claims of a token whose signature is valid, and extracts the identity.
func (p *provider) checkClaims(m *jsonValue, now time.Time, leeway time.Duration) (*Claims, error) {
	exp, ok, err := numericDate(m, "exp")
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrMissingClaim, err)
	case !ok:
		return nil, fmt.Errorf("%w: exp is required", ErrMissingClaim)
	case !now.Before(exp.Add(leeway)):
		return nil, fmt.Errorf("%w: %s ago", ErrExpired, now.Sub(exp).Truncate(time.Second))
	}
	nbf, ok, err := numericDate(m, "nbf")
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	case ok && now.Before(nbf.Add(-leeway)):
		return nil, fmt.Errorf("%w: nbf is %s ahead", ErrNotYetValid, nbf.Sub(now).Truncate(time.Second))
	}
	iat, ok, err := numericDate(m, "iat")
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	case ok && now.Before(iat.Add(-leeway)):
		return nil, fmt.Errorf("%w: iat is %s ahead", ErrIssuedInFuture, iat.Sub(now).Truncate(time.Second))
	}
	aud, _ := m.get("aud")
	if err := p.checkAudience(aud); err != nil {
		return nil, err
	}

	sv, ok := p.subject.lookup(m)
	var sub string
	if ok && sv.kind == jsonString {
		sub = sv.str
	}
	switch {
	case sub == "":
		return nil, fmt.Errorf("%w: subject claim %q must be a non-empty string", ErrMissingClaim, p.subject.full)
	case ValidSubject(sub) != nil:
		return nil, fmt.Errorf("%w: subject claim %q %w", ErrMalformed, p.subject.full, ValidSubject(sub))
	}
	groups, err := p.readGroups(m)
	if err != nil {
		return nil, err
	}
	c := &Claims{
		Provider:  p.name,
		Issuer:    p.issuer,
		Subject:   strings.Clone(sub),
		Groups:    groups,
		ExpiresAt: exp,
	}
	for _, h := range p.headers {
		v, ok := h.claim.lookup(m)
		if !ok {
			continue
		}
		if s, ok := headerValue(v); ok {
			if c.Headers == nil {
				c.Headers = make([]Header, 0, len(p.headers))
			}
			c.Headers = append(c.Headers, Header{Name: h.header, Value: s})
		}
	}
	return c, nil
}

func (p *provider) checkAudience(v *jsonValue) error {
	switch {
	case v == nil || v.kind == jsonNull:
		return fmt.Errorf("%w: aud is missing", ErrAudience)
	case v.kind == jsonString:
		if slices.Contains(p.audiences, v.str) {
			return nil
		}
	case v.kind == jsonArray:
		// RFC 7519 section 4.1.3: an array of strings. A member of another
		// type makes the claim malformed, even next to a matching audience.
		match := false
		for _, e := range v.items {
			if e.val.kind != jsonString {
				return fmt.Errorf("%w: aud array holds a non-string member", ErrAudience)
			}
			match = match || slices.Contains(p.audiences, e.val.str)
		}
		if match {
			return nil
		}
	default:
		return fmt.Errorf("%w: aud is not a string or an array", ErrAudience)
	}
	return fmt.Errorf("%w: aud names none of the provider's audiences", ErrAudience)
}

func (p *provider) readGroups(m *jsonValue) ([]string, error) {
	v, ok := p.groups.lookup(m)
	if !ok {
		return nil, nil
	}
	switch v.kind {
	case jsonNull:
		return nil, nil
	case jsonString:
		if v.str == "" {
			return nil, nil
		}
		if hasControl(v.str) {
			return nil, fmt.Errorf("%w: groups claim %q contains control characters", ErrMalformed, p.groups.full)
		}
		return []string{strings.Clone(v.str)}, nil
	case jsonArray:
		n := 0
		for _, e := range v.items {
			if e.val.kind != jsonString {
				return nil, fmt.Errorf("%w: groups claim %q must hold only strings", ErrMalformed, p.groups.full)
			}
			if hasControl(e.val.str) {
				return nil, fmt.Errorf("%w: groups claim %q contains control characters", ErrMalformed, p.groups.full)
			}
			n += len(e.val.str)
		}
		if n == 0 {
			return nil, nil
		}
		// One allocation holds every group; the strings do not share
		// memory with the token, so cached Claims do not pin it.
		var all strings.Builder
		all.Grow(n)
		for _, e := range v.items {
			all.WriteString(e.val.str)
		}
		buf := all.String()
		out := make([]string, 0, len(v.items))
		for _, e := range v.items {
			if l := len(e.val.str); l > 0 {
				out = append(out, buf[:l])
				buf = buf[l:]
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: groups claim %q must be a string or an array of strings", ErrMalformed, p.groups.full)
	}
}

// headerValue formats a claim value for a header; ok is false when the
// value produces no header. The result does not share memory with the token.
func headerValue(v *jsonValue) (string, bool) {
	var s string
	if v.kind == jsonArray {
		parts := make([]string, 0, len(v.items))
		for i := range v.items {
			if p, ok := scalar(&v.items[i].val); ok {
				parts = append(parts, p)
			}
		}
		if len(parts) == 0 {
			return "", false
		}
		s = strings.Join(parts, ",")
	} else {
		var ok bool
		if s, ok = scalar(v); !ok {
			return "", false
		}
		s = strings.Clone(s)
	}
	if len(s) > maxHeaderValue || hasControl(s) {
		return "", false
	}
	return s, true
}

func scalar(v *jsonValue) (string, bool) {
	switch v.kind {
	case jsonString, jsonNumber:
		return v.str, true
	case jsonBool:
		return strconv.FormatBool(v.b), true
	}
	return "", false
}

// hasControl reports whether s holds a byte that must not appear in a
// header value: ASCII controls other than tab, and DEL.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// claimsSize estimates the bytes a cached Claims holds beyond the strings
// it shares with the configuration.
func claimsSize(c *Claims) int {
	n := 160 + len(c.Subject)
	for _, g := range c.Groups {
		n += 16 + len(g)
	}
	for _, h := range c.Headers {
		n += 32 + len(h.Value)
	}
	return n
}

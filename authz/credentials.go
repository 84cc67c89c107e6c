package authz

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
)

// credential sources, for choosing the error code of a malformed credential.
const (
	fromAuthorization = iota + 1
	fromAPIKeyHeader
)

// authResult is what authenticating a request found: one value from each
// authenticator (API key, JWT, introspection, mTLS peer).
type authResult struct {
	id     *Identity  // nil when refused; shared, read-only
	set    []Header   // id's headers to set upstream; shared, read-only
	method AuthMethod // the credential's method, refused or not
	reason Reason     // why the credential was refused; "" when id is set
	expiry time.Time  // a JWT's exp
	// keyID, keyOwner and keyIssuer name an API key that exists but was
	// refused as revoked or expired, for the audit log.
	keyID, keyOwner, keyIssuer string
}

// identified is the result of a credential that proved id.
func identified(id *Identity, set []Header) authResult {
	return authResult{id: id, set: set, method: id.Method}
}

// refused is the result of a credential of method m refused for reason r.
// A check timeout or an internal error is not the credential's doing: it is
// counted under method none.
func refused(m AuthMethod, r Reason) authResult {
	if r == ReasonCheckTimeout || r == ReasonInternalError {
		m = MethodNone
	}
	return authResult{method: m, reason: r}
}

// authenticate extracts and checks the credential: an API key by its
// prefix, else a JWT by its shape, else an opaque token when introspection
// is on.
//
// An explicit credential always decides, valid or not; only a request
// without one may be identified by its mTLS peer (peer_identity).
func (e *Engine) authenticate(ctx context.Context, r *Request) authResult {
	cred, from := credential(r.Headers)
	if from == 0 {
		if e.peerRules != nil {
			if id, set := e.authenticatePeer(r); id != nil {
				return identified(id, set)
			}
		}
		return refused(MethodNone, ReasonNoCredentials)
	}
	switch {
	case e.keyPrefix != "" && strings.HasPrefix(cred, e.keyPrefix):
		return e.authenticateKey(ctx, cred)
	case looksLikeJWT(cred):
		return e.authenticateJWT(ctx, cred)
	case from == fromAPIKeyHeader:
		return refused(MethodAPIKey, ReasonMalformedKey)
	case e.introspector != nil && cred != "":
		return e.authenticateOpaque(ctx, cred)
	default:
		return refused(MethodNone, ReasonMalformedCredential)
	}
}

// credential returns the presented credential and where it came from:
// authorization: Bearer first, then x-api-key. from is 0 when neither holds
// one.
func credential(h map[string]string) (cred string, from int) {
	if a, ok := h["authorization"]; ok {
		if v, ok := bearer(a); ok {
			return v, fromAuthorization
		}
	}
	if k := strings.TrimSpace(h["x-api-key"]); k != "" {
		return k, fromAPIKeyHeader
	}
	return "", 0
}

// bearer parses an RFC 6750 "Bearer <token>" value; the scheme is
// case-insensitive. An empty token is returned as ("", true) so that it is
// refused as malformed rather than as missing.
func bearer(v string) (string, bool) {
	const scheme = "bearer"
	v = strings.TrimLeft(v, " \t")
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	return strings.Trim(rest, " \t"), true
}

// looksLikeJWT reports whether s is three base64url segments separated by
// dots (the signature may be empty, so that unsigned tokens reach the
// verifier and are refused there with a precise reason).
func looksLikeJWT(s string) bool {
	// Split at the first two dots (IndexByte is vectorised), then check
	// every segment against the alphabet with a table: the token is read
	// on every check, cached or not.
	i := strings.IndexByte(s, '.')
	if i <= 0 {
		return false
	}
	j := strings.IndexByte(s[i+1:], '.')
	if j <= 0 {
		return false
	}
	j += i + 1
	return isBase64URL(s[:i]) && isBase64URL(s[i+1:j]) && isBase64URL(s[j+1:])
}

// base64URLAlphabet marks the bytes of the base64url alphabet.
var base64URLAlphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// isBase64URL reports whether every byte of s is in the base64url alphabet.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if !base64URLAlphabet[s[i]] {
			return false
		}
	}
	return true
}

// authenticateKey resolves an API key. A revoked or expired key's id and
// owner go to d (when not nil), never to an Identity.
func (e *Engine) authenticateKey(ctx context.Context, key string) authResult {
	if e.keys == nil {
		return refused(MethodAPIKey, ReasonUnknownKey)
	}
	rec, err := e.keys.Lookup(ctx, key)
	if err != nil {
		res := refused(MethodAPIKey, keyReason(ctx, err))
		if res.reason == ReasonExpiredKey || res.reason == ReasonRevokedKey {
			if ke, ok := errors.AsType[*apikeys.KeyError](err); ok {
				res.keyID, res.keyOwner, res.keyIssuer = ke.ID, ke.Owner, ke.Issuer
			}
		}
		return res
	}
	id, set := derive(e, e.keyIDs, rec, func() *Identity {
		id := &Identity{
			Method:  MethodAPIKey,
			Subject: rec.Owner,
			Issuer:  rec.Issuer, // "" for the CLI namespace
			KeyID:   rec.ID,
			Groups:  sortedGroups(rec.Groups),
			Roles:   e.mapper.Roles(rec.Groups, rec.Roles),
		}
		if rec.RateLimit != nil {
			l := ratelimit.Limit(*rec.RateLimit)
			id.KeyLimit = &l
		}
		return id
	})
	return identified(id, set)
}

// keyReason maps an apikeys error to a reason. Unknown errors fail closed.
func keyReason(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(err, apikeys.ErrMalformed):
		return ReasonMalformedKey
	case errors.Is(err, apikeys.ErrNotFound):
		return ReasonUnknownKey
	case errors.Is(err, apikeys.ErrRevoked):
		return ReasonRevokedKey
	case errors.Is(err, apikeys.ErrExpired):
		return ReasonExpiredKey
	case errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return ReasonCheckTimeout
		}
		return ReasonRedisTimeout
	case errors.Is(err, apikeys.ErrUnavailable):
		return ReasonRedisUnavailable
	case ctx.Err() != nil:
		return ReasonCheckTimeout
	default:
		return ReasonInternalError
	}
}

// authenticateJWT verifies a JWT of a configured provider; the result
// carries the token's expiry.
func (e *Engine) authenticateJWT(ctx context.Context, token string) authResult {
	if e.verifier == nil {
		return refused(MethodJWT, ReasonUnknownIssuer)
	}
	c, err := e.verifier.Verify(ctx, token)
	if err != nil {
		return refused(MethodJWT, jwtReason(ctx, err))
	}
	id, set := derive(e, e.jwtIDs, c, func() *Identity {
		return &Identity{
			Method:  MethodJWT,
			Subject: c.Subject,
			Issuer:  c.Issuer,
			Groups:  sortedGroups(c.Groups),
			Roles:   e.mapper.Roles(c.Groups, nil),
			Extra:   convertHeaders(c.Headers),
		}
	})
	res := identified(id, set)
	res.expiry = c.ExpiresAt
	return res
}

// jwtReason maps a jwks error to a reason. Unknown errors fail closed as
// unavailable, never as an allow.
func jwtReason(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(err, jwks.ErrNoKeys):
		return ReasonJWKSUnavailable
	case errors.Is(err, jwks.ErrTooLarge):
		return ReasonTokenTooLarge
	case errors.Is(err, jwks.ErrMalformed):
		return ReasonMalformedToken
	case errors.Is(err, jwks.ErrUnknownIssuer):
		return ReasonUnknownIssuer
	case errors.Is(err, jwks.ErrAlgorithm):
		return ReasonAlgorithm
	case errors.Is(err, jwks.ErrUnknownKID):
		return ReasonUnknownKID
	case errors.Is(err, jwks.ErrSignature):
		return ReasonBadSignature
	case errors.Is(err, jwks.ErrExpired):
		return ReasonExpiredToken
	case errors.Is(err, jwks.ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, jwks.ErrIssuedInFuture):
		return ReasonIssuedInFuture
	case errors.Is(err, jwks.ErrAudience):
		return ReasonWrongAudience
	case errors.Is(err, jwks.ErrMissingClaim):
		return ReasonMissingClaim
	case errors.Is(err, jwks.ErrInvalid):
		return ReasonInvalidToken
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return ReasonCheckTimeout
	default:
		return ReasonInternalError
	}
}

// authenticateOpaque validates a bearer token that is neither an API key
// nor a JWT with the introspection endpoint.
func (e *Engine) authenticateOpaque(ctx context.Context, token string) authResult {
	res, err := e.introspector.Introspect(ctx, token)
	if err != nil {
		return refused(MethodOpaque, opaqueReason(ctx, err))
	}
	id, set := derive(e, e.opaqueIDs, res, func() *Identity {
		return &Identity{
			Method:  MethodOpaque,
			Subject: res.Subject,
			Groups:  sortedGroups(res.Groups),
			Roles:   e.mapper.Roles(res.Groups, nil),
		}
	})
	return identified(id, set)
}

// opaqueReason maps an introspect error to a reason. Unknown errors fail
// closed.
func opaqueReason(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(err, introspect.ErrInactive):
		return ReasonInactiveToken
	case errors.Is(err, introspect.ErrRateLimited):
		return ReasonIntrospectionRateLimited
	case errors.Is(err, introspect.ErrBusy):
		return ReasonIntrospectionBusy
	case ctx.Err() != nil:
		return ReasonCheckTimeout
	case errors.Is(err, introspect.ErrUnavailable):
		return ReasonIntrospectionUnavailable
	default:
		return ReasonInternalError
	}
}

// peerCacheSlots is the size of the peer identity cache (principals are
// at most 2 KiB). certCacheSlots is the size of the certificate cache, which
// holds only certificates of at most maxCachedCertificateBytes (a SPIFFE
// SVID is 1-3 KB URL-encoded): at most 2 MiB of keys.
const (
	peerCacheSlots            = 1024
	certCacheSlots            = 256
	maxCachedCertificateBytes = 8 << 10
)

// authenticatePeer returns the identity of the request's mTLS peer: its
// principal, else the URI SAN of its certificate, mapped by the first
// matching peer_identity rule. It returns nil when there is no usable
// principal or no rule matches.
func (e *Engine) authenticatePeer(r *Request) (*Identity, []Header) {
	p := r.PeerPrincipal
	if p == "" {
		if r.PeerCertificate == "" {
			return nil, nil
		}
		var ok bool
		if p, ok = e.certPrincipals.Get(r.PeerCertificate); !ok {
			p, _ = certificatePrincipal(r.PeerCertificate)
			if len(r.PeerCertificate) <= maxCachedCertificateBytes {
				e.certPrincipals.Put(r.PeerCertificate, p)
			}
		}
	}
	if !validPrincipal(p) {
		return nil, nil
	}
	// A principal no rule matches is cached too, as no identity.
	return derive(e, e.peerIDs, p, func() *Identity {
		rule := matchPeer(e.peerRules, p)
		if rule == nil {
			return nil
		}
		return &Identity{
			Method:  MethodMTLS,
			Subject: p,
			Groups:  sortedGroups(rule.groups),
			Roles:   e.mapper.Roles(rule.groups, rule.roles),
		}
	})
}

package authz

import (
	"context"
	"time"
)

// Authenticate checks the credential in headers (lower-case names, as in
// Request.Headers) exactly as a check does: authorization: Bearer first,
// then x-api-key, a JWT or an API key by its shape, groups mapped to roles.
// No route is matched and nothing is logged or counted. It returns the
// identity, or nil and the reason for refusing it (see ReasonCode and
// Denial). mTLS peers are never considered: headers carry no peer.
// The identity may be shared: treat it as read-only.
func (e *Engine) Authenticate(ctx context.Context, headers map[string]string) (*Identity, Reason) {
	auth := e.authenticate(ctx, &Request{Headers: headers})
	if auth.id == nil {
		return nil, auth.reason
	}
	return auth.id, ""
}

// AuthenticateJWT verifies token as a JWT of a configured provider, exactly
// as a check verifies a bearer JWT, and returns the identity with the
// token's expiry. API keys are refused with ReasonInvalidToken and any
// other shape with ReasonMalformedToken: only a JWT can be exchanged.
func (e *Engine) AuthenticateJWT(ctx context.Context, token string) (*Identity, time.Time, Reason) {
	if e.keyPrefix != "" && len(token) >= len(e.keyPrefix) && token[:len(e.keyPrefix)] == e.keyPrefix {
		return nil, time.Time{}, ReasonInvalidToken
	}
	if !looksLikeJWT(token) {
		return nil, time.Time{}, ReasonMalformedToken
	}
	auth := e.authenticateJWT(ctx, token)
	if auth.id == nil {
		return nil, time.Time{}, auth.reason
	}
	return auth.id, auth.expiry, ""
}

// Permits reports whether roles grant the permission perm (globs in role
// definitions apply, as for routes).
func (e *Engine) Permits(roles []string, perm string) bool {
	return e.mapper.Permits(roles, []string{perm})
}

// Denial returns what a check sends the client when it refuses for reason
// r: the HTTP status, the headers (content-type, www-authenticate,
// retry-after) and the JSON body of the response table.
func Denial(r Reason) (status int, headers []Header, body []byte) {
	d := newDenial(ReasonCode(r))
	return d.code.HTTPStatus(), d.headers, d.body
}

// MapRoles returns the roles role_mapping gives groups plus roles (and the
// default roles), sorted: the roles an API key with these groups and roles
// would have.
func (e *Engine) MapRoles(groups, roles []string) []string { return e.mapper.Roles(groups, roles) }

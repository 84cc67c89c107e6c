package keysapi

import (
	"net/http"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// The permissions the API checks.
const (
	PermAdmin = "apikeys:admin"
	PermSelf  = "apikeys:self"
)

// caller is an authenticated caller of the key endpoints.
type caller struct {
	id    *authz.Identity
	admin bool
}

// identify authenticates the request's credentials (authorization, then
// x-api-key) exactly as a check does. When they fail it answers the denial
// itself, with the status, headers and body of the response table, and
// returns nil.
func identify(w http.ResponseWriter, r *http.Request, auth Authenticator) *authz.Identity {
	headers := map[string]string{}
	for _, name := range []string{"authorization", "x-api-key"} {
		if v := r.Header.Get(name); v != "" {
			headers[name] = v
		}
	}
	id, reason := auth.Authenticate(r.Context(), headers)
	if id == nil {
		status, hdrs, body := authz.Denial(reason)
		for _, hd := range hdrs {
			w.Header().Set(hd.Name, hd.Value)
		}
		w.WriteHeader(status)
		w.Write(body)
	}
	return id
}

// authenticate answers the request itself (401, 403 or 503) and returns
// nil unless the caller may use the key endpoints.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, auth Authenticator) *caller {
	id := identify(w, r, auth)
	if id == nil {
		return nil
	}
	c := &caller{id: id, admin: auth.Permits(id.Roles, PermAdmin)}
	if !c.admin && !auth.Permits(id.Roles, PermSelf) {
		writeError(w, http.StatusForbidden, "forbidden", "managing API keys needs the permission apikeys:self or apikeys:admin")
		return nil
	}
	if !c.admin && !selfServes(id) {
		writeError(w, http.StatusForbidden, "forbidden", "apikeys:self is for JWT and API key callers only")
		return nil
	}
	return c
}

// selfServes reports whether id has an owner namespace of its own: a JWT
// (its issuer) or an API key (its record's issuer, "" for the CLI
// namespace). Other identities (introspected tokens) would otherwise land
// in the CLI namespace and reach its owners' keys.
func selfServes(id *authz.Identity) bool {
	return id.Method == authz.MethodJWT || id.Method == authz.MethodAPIKey
}

// ownedBy reports whether rec belongs to id: same owner in the same
// issuer's namespace. Alice of one identity provider is not alice of
// another, nor the alice of the CLI namespace.
func ownedBy(rec *apikeys.Record, id *authz.Identity) bool {
	return selfServes(id) && rec.Owner == id.Subject && rec.Issuer == id.Issuer
}

// owns reports whether c may see and revoke rec.
func (c *caller) owns(rec *apikeys.Record) bool {
	return c.admin || ownedBy(rec, c.id)
}

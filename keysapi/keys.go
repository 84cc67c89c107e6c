package keysapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// missing returns the first of want that have does not hold, or "".
func missing(want, have []string) string {
	for _, v := range want {
		if !slices.Contains(have, v) {
			return v
		}
	}
	return ""
}

type createRequest struct {
	Owner       string   `json:"owner"`
	Issuer      string   `json:"issuer"`
	Groups      []string `json:"groups"`
	Roles       []string `json:"roles"`
	TTL         string   `json:"ttl"`
	Description string   `json:"description"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) {
	auth := h.deps.Auth()
	c := h.authenticate(w, r, auth)
	if c == nil {
		return
	}
	cfg := h.config()
	if !h.limitMint(w, c.id, cfg, false) {
		return
	}
	var req createRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", "ttl: must be a positive Go duration, e.g. 8h")
			return
		}
		ttl = d
	}
	if req.Owner == "" {
		// The caller's own key, in its issuer's namespace.
		if req.Issuer != "" && req.Issuer != c.id.Issuer {
			writeError(w, http.StatusBadRequest, "invalid_request", "issuer: set owner too, or leave both out for a key of the caller")
			return
		}
		req.Owner, req.Issuer = c.id.Subject, c.id.Issuer
	}
	maxLive := 0
	if !c.admin {
		// A key cannot mint keys: otherwise a 2-minute key from token
		// exchange (or a leaked key about to be revoked) could create a
		// permanent one. Self-service creation needs a JWT.
		if c.id.Method != authz.MethodJWT {
			writeError(w, http.StatusForbidden, "forbidden", "apikeys:self creates keys for a JWT caller only: an API key cannot create keys that outlive it")
			return
		}
		if req.Owner != c.id.Subject || req.Issuer != c.id.Issuer {
			writeError(w, http.StatusForbidden, "forbidden", "apikeys:self allows keys owned by the caller only")
			return
		}
		// Groups and roles are subsets of the caller's: an invented group
		// would reach the upstream (which may trust it) and a later
		// role_mapping rule could upgrade it.
		if g := missing(req.Groups, c.id.Groups); g != "" {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the key would have group %q, which the caller does not have", g))
			return
		}
		if role := missing(req.Roles, c.id.Roles); role != "" {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the key would have role %q, which the caller does not have", role))
			return
		}
		// The key's effective roles (groups mapped, direct roles, default
		// roles) must be a subset of the caller's: no escalation.
		if role := missing(auth.MapRoles(req.Groups, req.Roles), c.id.Roles); role != "" {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the key would have role %q, which the caller does not have", role))
			return
		}
		// A short-lived token cannot become permanent access.
		if ttl == 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("ttl: required for a self-service key, at most %s (api.max_ttl)", cfg.MaxTTL))
			return
		}
		if ttl > cfg.MaxTTL {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("ttl: at most %s (api.max_ttl)", cfg.MaxTTL))
			return
		}
		maxLive = cfg.MaxKeysPerOwner
	}
	secret, rec, err := h.deps.Store.Create(r.Context(), apikeys.CreateOptions{
		Owner: req.Owner, Issuer: req.Issuer, Groups: req.Groups, Roles: req.Roles, Description: req.Description, TTL: ttl,
		MaxLive: maxLive,
	})
	if err != nil {
		h.storeError(w, r, "create", err)
		return
	}
	h.audit(r.Context(), EventCreated, rec, c.id)
	writeJSON(w, http.StatusCreated, apikeys.CreatedKey{Key: secret, KeyView: rec.View(h.deps.Now())})
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	c := h.authenticate(w, r, h.deps.Auth())
	if c == nil {
		return
	}
	q := r.URL.Query()
	owner, issuer := q.Get("owner"), q.Get("issuer")
	if !c.admin {
		if (owner != "" && owner != c.id.Subject) || (q.Has("issuer") && issuer != c.id.Issuer) {
			writeError(w, http.StatusForbidden, "forbidden", "apikeys:self lists the caller's own keys only")
			return
		}
		owner, issuer = c.id.Subject, c.id.Issuer
	} else if owner == "" && issuer != "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "issuer: needs owner")
		return
	}
	recs, err := h.deps.Store.ListOwned(r.Context(), issuer, owner)
	if err != nil {
		h.storeError(w, r, "list", err)
		return
	}
	now := h.deps.Now()
	out := struct {
		Keys []apikeys.KeyView `json:"keys"`
	}{Keys: make([]apikeys.KeyView, 0, len(recs))}
	for _, rec := range recs {
		if !c.owns(rec) {
			continue // defence in depth: the store lists by namespace already
		}
		out.Keys = append(out.Keys, rec.View(now))
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeOwner revokes every key of ?owner= in the namespace of ?issuer=
// (absent: the CLI namespace). apikeys:admin only.
func (h *Handler) revokeOwner(w http.ResponseWriter, r *http.Request) {
	c := h.authenticate(w, r, h.deps.Auth())
	if c == nil {
		return
	}
	if !c.admin {
		writeError(w, http.StatusForbidden, "forbidden", "revoking every key of an owner needs apikeys:admin")
		return
	}
	q := r.URL.Query()
	owner, issuer := q.Get("owner"), q.Get("issuer")
	if owner == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "owner: required, e.g. DELETE /v1/keys?owner=alice&issuer=https://issuer.example")
		return
	}
	n, err := h.deps.Store.RevokeOwner(r.Context(), issuer, owner)
	h.deps.Logger.LogAttrs(r.Context(), slog.LevelInfo, "apikey owner revoked",
		slog.String("event", EventRevoked), slog.String("owner", owner), slog.String("owner_issuer", issuer),
		slog.Int("revoked", n), slog.String("actor", c.id.Subject), slog.String("actor_issuer", c.id.Issuer),
		slog.String("actor_method", c.id.Method.String()))
	h.deps.Metrics.add(EventRevoked, n)
	if err != nil {
		h.storeError(w, r, "revoke", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Owner   string `json:"owner"`
		Issuer  string `json:"issuer,omitempty"`
		Revoked int    `json:"revoked"`
	}{owner, issuer, n})
}

// ownedKey returns the record with the path's id if c may see it, else
// answers 404 itself.
func (h *Handler) ownedKey(w http.ResponseWriter, r *http.Request, c *caller) *apikeys.Record {
	rec, err := h.deps.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.storeError(w, r, "get", err)
		return nil
	}
	if !c.owns(rec) {
		writeError(w, http.StatusNotFound, "not_found", "no such key")
		return nil
	}
	return rec
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) {
	c := h.authenticate(w, r, h.deps.Auth())
	if c == nil {
		return
	}
	if rec := h.ownedKey(w, r, c); rec != nil {
		writeJSON(w, http.StatusOK, rec.View(h.deps.Now()))
	}
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	c := h.authenticate(w, r, h.deps.Auth())
	if c == nil {
		return
	}
	if rec := h.ownedKey(w, r, c); rec != nil {
		h.revoke(w, r, rec, c.id)
	}
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, rec *apikeys.Record, actor *authz.Identity) {
	if err := h.deps.Store.Revoke(r.Context(), rec.ID); err != nil {
		h.storeError(w, r, "revoke", err)
		return
	}
	h.audit(r.Context(), EventRevoked, rec, actor)
	w.WriteHeader(http.StatusNoContent)
}

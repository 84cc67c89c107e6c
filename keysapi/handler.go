package keysapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// The permissions the API checks.
const (
	PermAdmin = "apikeys:admin"
	PermSelf  = "apikeys:self"
)

// The RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 64 << 10

// ExchangeDescription is the description of every exchanged key.
const ExchangeDescription = "token exchange"

// Authenticator authenticates callers and grants permissions;
// *authz.Engine implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, headers map[string]string) (*authz.Identity, authz.Reason)
	AuthenticateJWT(ctx context.Context, token string) (*authz.Identity, time.Time, authz.Reason)
	Permits(roles []string, perm string) bool
	MapRoles(groups, roles []string) []string
}

// Store is the key store; *apikeys.Store implements it.
type Store interface {
	Create(ctx context.Context, o apikeys.CreateOptions) (string, *apikeys.Record, error)
	// ListOwned lists owner's keys in issuer's namespace ("" is the CLI
	// namespace), or every key when owner is "".
	ListOwned(ctx context.Context, issuer, owner string) ([]*apikeys.Record, error)
	Get(ctx context.Context, id string) (*apikeys.Record, error)
	Revoke(ctx context.Context, id string) error
	// RevokeOwner revokes every key of owner in issuer's namespace.
	RevokeOwner(ctx context.Context, issuer, owner string) (int, error)
}

// Deps are the Handler's collaborators. Auth returns the current engine (a
// reload swaps it); Metrics may be nil.
type Deps struct {
	Auth    func() Authenticator
	Store   Store
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Config, when set, returns the configuration to use for each request
	// (a reload changes it); else the Config given to New applies.
	Config func() Config
}

// Handler serves the key API.
type Handler struct {
	cfg  Config
	deps Deps
	mux  *http.ServeMux
	mint *mintLimiter
}

// New returns the API handler. cfg must be valid (Config.Validate).
func New(cfg Config, deps Deps) (*Handler, error) {
	if deps.Auth == nil || deps.Store == nil || deps.Logger == nil {
		return nil, errors.New("keysapi: auth, store and logger are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	h := &Handler{cfg: cfg, deps: deps, mux: http.NewServeMux(), mint: newMintLimiter()}
	h.mux.HandleFunc("POST /v1/keys", h.createKey)
	h.mux.HandleFunc("GET /v1/keys", h.listKeys)
	h.mux.HandleFunc("GET /v1/keys/{id}", h.getKey)
	h.mux.HandleFunc("DELETE /v1/keys/{id}", h.revokeKey)
	h.mux.HandleFunc("DELETE /v1/keys", h.revokeOwner)
	h.mux.HandleFunc("POST /v1/token", h.exchange)
	h.mux.HandleFunc("DELETE /v1/token/{id}", h.revokeToken)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	w.Header().Set("cache-control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// keyJSON is a key as the API shows it; Key is set only by create.
type keyJSON struct {
	ID          string     `json:"id"`
	Key         string     `json:"key,omitempty"`
	Owner       string     `json:"owner"`
	Issuer      string     `json:"issuer,omitempty"` // the owner's namespace; absent: the CLI's
	Groups      []string   `json:"groups"`
	Roles       []string   `json:"roles"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Status      string     `json:"status"`
}

func (h *Handler) show(rec *apikeys.Record) keyJSON {
	k := keyJSON{
		ID: rec.ID, Owner: rec.Owner, Issuer: rec.Issuer, Groups: nonNil(rec.Groups), Roles: nonNil(rec.Roles),
		Description: rec.Description, CreatedAt: rec.CreatedAt.UTC(), Status: rec.Status(h.deps.Now()),
	}
	if !rec.ExpiresAt.IsZero() {
		t := rec.ExpiresAt.UTC()
		k.ExpiresAt = &t
	}
	if !rec.RevokedAt.IsZero() {
		t := rec.RevokedAt.UTC()
		k.RevokedAt = &t
	}
	return k
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// caller is an authenticated caller of the key endpoints.
type caller struct {
	id    *authz.Identity
	admin bool
}

// authenticate answers the request itself (401, 403 or 503) and returns
// nil unless the caller may use the key endpoints.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, auth Authenticator) *caller {
	headers := map[string]string{}
	if v := r.Header.Get("authorization"); v != "" {
		headers["authorization"] = v
	}
	if v := r.Header.Get("x-api-key"); v != "" {
		headers["x-api-key"] = v
	}
	id, reason := auth.Authenticate(r.Context(), headers)
	if id == nil {
		status, hdrs, body := authz.Denial(reason)
		for _, hd := range hdrs {
			w.Header().Set(hd.Name, hd.Value)
		}
		w.WriteHeader(status)
		w.Write(body)
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

// limitMint spends one mint of the caller's budget (api.mint_rate_limit),
// answering 429 with retry-after itself when it is spent.
func (h *Handler) limitMint(w http.ResponseWriter, id *authz.Identity, cfg Config, oauth bool) bool {
	ok, retry := h.mint.allow(callerKey(id), cfg.MintRateLimit, h.deps.Now())
	if ok {
		return true
	}
	h.deps.Metrics.count(EventMintLimited)
	w.Header().Set("retry-after", retry)
	if oauth {
		// RFC 6749 has no rate error; slow_down is RFC 8628's.
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many keys minted by this subject; retry later")
	} else {
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many keys created by this caller; retry later")
	}
	return false
}

func (h *Handler) config() Config {
	if h.deps.Config != nil {
		return h.deps.Config().withDefaults()
	}
	return h.cfg.withDefaults()
}

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
	k := h.show(rec)
	k.Key = secret
	writeJSON(w, http.StatusCreated, k)
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
	out := struct {
		Keys []keyJSON `json:"keys"`
	}{Keys: make([]keyJSON, 0, len(recs))}
	for _, rec := range recs {
		if !c.owns(rec) {
			continue // defence in depth: the store lists by namespace already
		}
		out.Keys = append(out.Keys, h.show(rec))
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
		writeJSON(w, http.StatusOK, h.show(rec))
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

// revokeToken revokes an exchanged key: by its owner (any authenticated
// credential of that subject) or an apikeys:admin holder. Other keys are
// not found here.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	auth := h.deps.Auth()
	headers := map[string]string{}
	if v := r.Header.Get("authorization"); v != "" {
		headers["authorization"] = v
	}
	if v := r.Header.Get("x-api-key"); v != "" {
		headers["x-api-key"] = v
	}
	id, reason := auth.Authenticate(r.Context(), headers)
	if id == nil {
		status, hdrs, body := authz.Denial(reason)
		for _, hd := range hdrs {
			w.Header().Set(hd.Name, hd.Value)
		}
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	rec, err := h.deps.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.storeError(w, r, "get", err)
		return
	}
	if rec.Description != ExchangeDescription || (!ownedBy(rec, id) && !auth.Permits(id.Roles, PermAdmin)) {
		writeError(w, http.StatusNotFound, "not_found", "no such exchanged token")
		return
	}
	h.revoke(w, r, rec, id)
}

// tokenResponse is RFC 8693 section 2.2.1.
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	KeyID           string `json:"key_id"`
}

// exchange implements RFC 8693 token exchange: a JWT in, a short-lived API
// key out. Errors follow RFC 6749 section 5.2.
func (h *Handler) exchange(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("content-type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		oauthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is too large")
		return
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not valid form encoding")
		return
	}
	for name, vals := range form {
		if len(vals) > 1 {
			// RFC 6749 section 3.2: parameters must not repeat.
			oauthError(w, http.StatusBadRequest, "invalid_request", "parameter "+name+" is repeated")
			return
		}
	}
	if form.Get("grant_type") != GrantTypeTokenExchange {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be "+GrantTypeTokenExchange)
		return
	}
	token := form.Get("subject_token")
	if token == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token is required")
		return
	}
	if tt := form.Get("subject_token_type"); tt != TokenTypeJWT && tt != TokenTypeAccessToken {
		oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+TokenTypeJWT+" or "+TokenTypeAccessToken)
		return
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken {
		oauthError(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+TokenTypeAccessToken)
		return
	}
	auth := h.deps.Auth()
	cfg := h.config()
	id, exp, reason := auth.AuthenticateJWT(r.Context(), token)
	if id == nil {
		if authz.ReasonCode(reason) == authz.Unavailable {
			h.deps.Logger.LogAttrs(r.Context(), slog.LevelWarn, "token exchange: cannot verify the subject token", slog.String("reason", string(reason)))
			w.Header().Set("retry-after", authz.RetryAfterSeconds)
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the subject token cannot be verified now")
			return
		}
		h.deps.Logger.LogAttrs(r.Context(), slog.LevelInfo, "token exchange refused", slog.String("reason", string(reason)))
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the subject token is not a valid JWT of a configured provider")
		return
	}
	if !h.limitMint(w, id, cfg, true) {
		return
	}
	granted := id.Roles
	if scope := form.Get("scope"); scope != "" {
		granted = nil
		for _, role := range strings.Fields(scope) {
			if !slices.Contains(id.Roles, role) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("role %q is not granted to the subject", role))
				return
			}
			granted = append(granted, role)
		}
		slices.Sort(granted)
		granted = slices.Compact(granted)
	}
	if len(granted) == 0 {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "the subject token grants no role")
		return
	}
	now := h.deps.Now()
	ttl := cfg.Exchange.ttl(granted)
	if !exp.IsZero() {
		// A one-second margin: the store stamps the expiry a moment later.
		if left := exp.Sub(now).Truncate(time.Second) - time.Second; left < ttl {
			ttl = left
		}
	}
	if ttl < time.Second {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the subject token expires too soon")
		return
	}
	ttl = ttl.Truncate(time.Second)
	secret, rec, err := h.deps.Store.Create(r.Context(), apikeys.CreateOptions{
		Owner: id.Subject, Issuer: id.Issuer, Roles: granted, Description: ExchangeDescription, TTL: ttl,
		MaxLive: cfg.MaxKeysPerOwner,
	})
	if err != nil {
		if errors.Is(err, apikeys.ErrTooManyKeys) {
			oauthError(w, http.StatusBadRequest, "invalid_request",
				fmt.Sprintf("the subject has %d live keys, the most allowed (api.max_keys_per_owner): revoke one or wait for one to expire", cfg.MaxKeysPerOwner))
			return
		}
		if errors.Is(err, apikeys.ErrInvalid) {
			// A subject or role the store cannot hold (not printable ASCII).
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the subject token's subject or roles cannot be held by an API key")
			return
		}
		h.deps.Logger.LogAttrs(r.Context(), slog.LevelWarn, "token exchange: key store failed", slog.String("err", err.Error()))
		w.Header().Set("retry-after", authz.RetryAfterSeconds)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the key store is unavailable")
		return
	}
	h.audit(r.Context(), EventExchanged, rec, id)
	w.Header().Set("pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: secret, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: int64(ttl / time.Second), Scope: strings.Join(granted, " "), KeyID: rec.ID,
	})
}

// audit logs and counts one key lifecycle event. It never logs the key.
func (h *Handler) audit(ctx context.Context, event string, rec *apikeys.Record, actor *authz.Identity) {
	h.deps.Metrics.count(event)
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("key_id", rec.ID),
		slog.String("owner", rec.Owner),
		slog.String("owner_issuer", rec.Issuer),
		slog.String("actor", actor.Subject),
		slog.String("actor_issuer", actor.Issuer),
		slog.String("actor_method", actor.Method.String()),
		slog.Any("roles", nonNil(rec.Roles)),
	}
	if actor.KeyID != "" {
		attrs = append(attrs, slog.String("actor_key_id", actor.KeyID))
	}
	if !rec.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time("expires_at", rec.ExpiresAt.UTC()))
	}
	h.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "apikey "+event, attrs...)
}

// storeError answers a store failure: 404 for an unknown id, 400 for
// refused options, else 503 (logged at Warn).
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, apikeys.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, apikeys.ErrTooManyKeys):
		writeError(w, http.StatusConflict, "too_many_keys", "the owner has the most live keys allowed (api.max_keys_per_owner): revoke one or wait for one to expire")
	case errors.Is(err, apikeys.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "apikeys: create: "))
	default:
		h.deps.Logger.LogAttrs(r.Context(), slog.LevelWarn, "key api: store failed", slog.String("op", op), slog.String("err", err.Error()))
		w.Header().Set("retry-after", authz.RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the key store is temporarily unavailable")
	}
}

// decodeJSON strictly decodes one JSON object from the body, answering 400,
// 413 or 415 itself when it cannot.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("content-type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "the body must be application/json")
			return false
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("trailing data after the object")
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is larger than 64 KiB")
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
}

// oauthError writes an RFC 6749 section 5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("pragma", "no-cache")
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
}

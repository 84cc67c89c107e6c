package keysapi

import (
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

// The RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// ExchangeDescription is the description of every exchanged key.
const ExchangeDescription = "token exchange"

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

// revokeToken revokes an exchanged key: by its owner (any authenticated
// credential of that subject) or an apikeys:admin holder. Other keys are
// not found here.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	auth := h.deps.Auth()
	id := identify(w, r, auth)
	if id == nil {
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

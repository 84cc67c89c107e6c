package keysapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 64 << 10

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

func (h *Handler) config() Config {
	if h.deps.Config != nil {
		return h.deps.Config().withDefaults()
	}
	return h.cfg.withDefaults()
}

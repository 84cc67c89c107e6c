package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
	"github.com/extauthz/extauthz/slotcache"
)

// tokenVerifier verifies a compact JWT; *jwks.Verifier implements it.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (*jwks.Claims, error)
}

// keyLookup resolves an API key to its record; *apikeys.Store implements it.
type keyLookup interface {
	Lookup(ctx context.Context, key string) (*apikeys.Record, error)
}

// tokenIntrospector validates an opaque bearer token; *introspect.Client
// implements it.
type tokenIntrospector interface {
	Introspect(ctx context.Context, token string) (*introspect.Result, error)
}

// rateLimiter spends rate-limit budget; *ratelimit.Limiter implements it.
type rateLimiter interface {
	Allow(ctx context.Context, rule ratelimit.Rule) (ratelimit.Result, error)
}

// Deps are the Engine's collaborators. Verifier and Keys may be nil, which
// turns the JWT or API-key path off: such credentials are then refused as
// invalid. Limiter is required when the Config turns rate limits on.
// LLMMetrics may be nil (nothing counted). Introspector may be nil, which
// turns introspection off: a bearer token that is neither an API key nor a
// JWT is then refused as malformed.
type Deps struct {
	Verifier     tokenVerifier
	Keys         keyLookup
	Introspector tokenIntrospector
	Mapper       *rolemap.Mapper
	Limiter      rateLimiter
	LLMMetrics   *LLMMetrics
}

// Request is one authorization question, independent of the transport.
type Request struct {
	Method string // upper-case HTTP method of the original request
	Host   string // :authority / Host of the original request
	Path   string // original path, with query string
	// Headers holds the original request headers with lower-case names, as
	// Envoy sends them. The Engine only reads it.
	Headers map[string]string
	// ContextExtensions are Envoy's per-route context_extensions (gRPC only).
	ContextExtensions map[string]string
	// Body is the request body as the proxy forwarded it (Envoy
	// with_request_body); nil when it sent none. The Engine only reads it,
	// and only on routes with an LLM policy.
	Body []byte
	// BodySize is the size of the original request body as the proxy
	// reports it (Envoy attributes.request.http.size; -1 or 0 when
	// unknown). A positive size without a Body means the proxy did not
	// forward it (see BodyExpected).
	BodySize int64
	// PeerPrincipal is the mTLS peer's principal as Envoy reports it
	// (attributes.source.principal, a SPIFFE ID under Istio); gRPC only.
	PeerPrincipal string
	// PeerCertificate is the peer's URL-encoded PEM certificate
	// (attributes.source.certificate, with Envoy's
	// include_peer_certificate); read only when PeerPrincipal is empty.
	PeerCertificate string
}

// Header is one header name (lower-case) and value.
type Header struct{ Name, Value string }

// Identity is who the caller proved to be.
type Identity struct {
	Method  AuthMethod
	Subject string
	Issuer  string // JWT; for an API key minted by a JWT caller (self-service, exchange), its issuer
	KeyID   string // API key only
	// Groups and Roles come from the JWT's groups claim, the API key's
	// record, or the matching peer_identity rule (mtls), mapped by
	// role_mapping.
	Groups []string
	Roles  []string
	// Extra are the claims_to_headers values (JWT only).
	Extra []Header
	// KeyLimit is the API key's own rate limit (API key only); nil when it
	// has none.
	KeyLimit *ratelimit.Limit
}

// Decision is the Engine's answer.
type Decision struct {
	Code   Code
	Reason Reason
	Route  string // "" when no route matched
	Method AuthMethod
	// Identity is nil unless authenticated. Decisions for the same cached
	// credential share one Identity: treat it as read-only.
	Identity *Identity
	// Set are the headers to set upstream with overwrite semantics (allowed
	// decisions only). Like Identity it may be shared: read-only.
	Set []Header
	// Remove are request headers to remove before the request goes upstream:
	// client-sent identity headers this decision did not set, and with
	// strip_credentials the credential headers. Read-only: the common lists
	// are shared.
	Remove []string
	// Model and Tools are what the request asked for, on routes with an LLM
	// policy (for the log and Envoy metadata; never metric labels).
	Model string
	Tools []string
	// Message, when set, replaces the code's standard message in the denial
	// body (it names the refused model or tool, or why the body cannot be
	// checked). It never holds a credential.
	Message string
	// ResponseHeaders go to the client: on allow the ratelimit-* headers,
	// on a 429 also retry-after.
	ResponseHeaders []Header
	// RateLimit is what the rate limiter said, for the log: "" (no limit
	// applied), allowed, limited, error_allowed or error_denied.
	RateLimit string
	// KeyID and KeyOwner name an API key that exists but was refused
	// because it is revoked or expired (reason revoked_key or
	// expired_key), so the denial can be audited; they are empty
	// otherwise. They do not make the request authenticated: Identity
	// stays nil and nothing is set upstream.
	KeyID, KeyOwner string
	// KeyIssuer is the refused key's owner namespace (its minting JWT's
	// issuer; "" for the CLI namespace).
	KeyIssuer string
}

// Engine makes decisions. It is immutable once built; a config reload builds
// a new Engine.
type Engine struct {
	routes       []route
	defaultAuth  bool
	prefix       string
	keyPrefix    string // "ek_"
	strip        bool
	claimHeaders []string
	names        identityNames
	verifier     tokenVerifier
	keys         keyLookup
	mapper       *rolemap.Mapper
	// jwtIDs and keyIDs remember the identity (and its headers) derived
	// from a verified token's Claims and a key's Record. The jwks token
	// cache and the apikeys positive cache hand out the same immutable
	// pointer for the same credential, so a cached credential skips role
	// mapping, sorting and joining.
	jwtIDs *identityCache[*jwks.Claims]
	keyIDs *identityCache[*apikeys.Record]
	// introspector validates opaque tokens (nil: off); opaqueIDs caches
	// the identity derived from an introspection Result, which the
	// introspect cache hands out as the same pointer while it lives.
	introspector tokenIntrospector
	opaqueIDs    *identityCache[*introspect.Result]
	// peerRules are the compiled peer_identity rules (nil when off);
	// peerIDs caches the identity derived for a principal (a nil id when
	// no rule matches) and certPrincipals the principal read from a
	// certificate ("" when it has none).
	peerRules      []peerRule
	peerIDs        *slotcache.Cache[string, derivedIdentity]
	certPrincipals *slotcache.Cache[string, string]
	// policy and limiter are nil without rate limits.
	policy     *ratelimit.Policy
	limiter    rateLimiter
	llmLimits  LLMLimits
	llmMetrics *LLMMetrics
	needsBody  bool // some route has an LLM policy
	// looseRisk: some route has an exact path, or a prefix with upper-case
	// letters, so a lenient reading of any request path may differ.
	looseRisk bool
}

// identityNames are the identity header names under the configured prefix.
type identityNames struct {
	subject, method, issuer, groups, roles, keyID string
}

// NewEngine builds an Engine. The configuration must already be valid
// (config.Load validates every file, at start and on reload); NewEngine
// checks only what it cannot work without.
func NewEngine(cfg Config, deps Deps) (*Engine, error) {
	if deps.Mapper == nil {
		return nil, errors.New("authz: a role mapper is required")
	}
	h := cfg.Headers
	if h.Prefix == "" {
		h.Prefix = DefaultHeaders().Prefix
	}
	if cfg.DefaultRoute == "" {
		cfg.DefaultRoute = DefaultRouteDeny
	}
	e := &Engine{
		defaultAuth:  cfg.DefaultRoute == DefaultRouteAuthenticated,
		prefix:       h.Prefix,
		strip:        h.StripCredentials,
		claimHeaders: slices.Clone(cfg.ClaimHeaders),
		verifier:     deps.Verifier,
		keys:         deps.Keys,
		mapper:       deps.Mapper,
		llmLimits:    LLMLimits{MaxBytes: cfg.LLMMaxBodyBytes},
		llmMetrics:   deps.LLMMetrics,
		jwtIDs:       newIdentityCache[*jwks.Claims](identityCacheSlots),
		keyIDs:       newIdentityCache[*apikeys.Record](identityCacheSlots),
		names: identityNames{
			subject: h.Prefix + "subject",
			method:  h.Prefix + "method",
			issuer:  h.Prefix + "issuer",
			groups:  h.Prefix + "groups",
			roles:   h.Prefix + "roles",
			keyID:   h.Prefix + "key-id",
		},
	}
	if cfg.APIKeyPrefix != "" {
		e.keyPrefix = cfg.APIKeyPrefix + "_"
	}
	if deps.Introspector != nil {
		e.introspector = deps.Introspector
		e.opaqueIDs = newIdentityCache[*introspect.Result](identityCacheSlots)
	}
	if cfg.PeerIdentity.Enabled {
		e.peerRules = compilePeerRules(cfg.PeerIdentity)
		e.peerIDs = slotcache.New[string, derivedIdentity](peerCacheSlots)
		e.certPrincipals = slotcache.New[string, string](certCacheSlots)
	}
	for _, r := range cfg.Routes {
		c := compileRoute(r)
		e.needsBody = e.needsBody || c.llm.Enabled()
		e.looseRisk = e.looseRisk || c.path != "" || hasUpperASCII(c.pathPrefix)
		e.routes = append(e.routes, c)
	}
	if cfg.RateLimitsOn() {
		if deps.Limiter == nil {
			return nil, errors.New("authz: rate limits are configured but no limiter was given")
		}
		var rc ratelimit.Config
		if cfg.RateLimits != nil {
			rc = *cfg.RateLimits
		}
		p, err := ratelimit.NewPolicy(rc, RateLimitRoutes(cfg.Routes))
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		e.policy, e.limiter = p, deps.Limiter
	}
	return e, nil
}

// NeedsBody reports whether some route reads the request body (an LLM
// policy), so that a front end knows whether to read it at all.
func (e *Engine) NeedsBody() bool { return e.needsBody }

// LLMMaxBodyBytes is the largest body the LLM policy parses; a front end
// reads at most one byte more.
func (e *Engine) LLMMaxBodyBytes() int { return e.llmLimits.withDefaults().MaxBytes }

// RateLimitRoutes returns the route names that can be rate limited (for
// ratelimit.Metrics.AddRoutes), or nil without rate limits.
func (e *Engine) RateLimitRoutes() []string {
	if e.policy == nil {
		return nil
	}
	return e.policy.Routes()
}

// Decide answers one request. It never panics on hostile input and fails
// closed: every error is a denial.
func (e *Engine) Decide(ctx context.Context, r *Request) Decision {
	rt, unreadable := e.match(r)
	var d Decision
	if unreadable != "" {
		// A method or path that cannot be read one way only is refused
		// before any route or default_route can decide it.
		d.Code, d.Reason = ReasonCode(unreadable), unreadable
		return d
	}
	if rt != nil {
		d.Route = rt.name
		if rt.public {
			d.Code, d.Reason = Allowed, ReasonPublicRoute
			d.Remove = e.removals(r.Headers, nil)
			return d
		}
	} else if !e.defaultAuth {
		d.Code, d.Reason = Forbidden, ReasonNoRoute
		return d
	}

	auth := e.authenticate(ctx, r)
	d.Method = auth.method
	if auth.id == nil {
		d.Code, d.Reason = ReasonCode(auth.reason), auth.reason
		d.KeyID, d.KeyOwner, d.KeyIssuer = auth.keyID, auth.keyOwner, auth.keyIssuer
		return d
	}
	id := auth.id
	d.Identity = id
	d.Reason = e.authorize(rt, id.Roles)
	d.Code = ReasonCode(d.Reason)
	if d.Code == Allowed && rt != nil && rt.llm.Enabled() {
		e.checkLLM(rt, r, id, &d)
	}
	if d.Code == Allowed && e.policy != nil {
		e.rateLimit(ctx, id, &d)
	}
	if d.Code == Allowed && ctx.Err() != nil {
		// The check outlived its deadline: the proxy has given up on it or
		// is about to, and a late allow must not count.
		d.Code, d.Reason = Unavailable, ReasonCheckTimeout
		d.ResponseHeaders = nil
	}
	if d.Code == Allowed {
		d.Set = auth.set
		d.Remove = e.removals(r.Headers, d.Set)
	}
	return d
}

// match returns the first route that fits r (nil: none), or the reason r is
// refused before matching: a method that is not an upper-case token, or a
// path canonicalPath refuses.
func (e *Engine) match(r *Request) (*route, Reason) {
	if !validMethod(r.Method) {
		return nil, ReasonInvalidMethod
	}
	p, refused := canonicalPath(r.Path)
	if refused != "" {
		return nil, refused
	}
	host := canonicalHost(r.Host)
	rt := e.first(r.Method, host, p, r.ContextExtensions, false)
	// Upstreams that compare paths without case (Express, ASP.NET) or
	// ignore a trailing slash read /ADMIN/x or /admin/ as /admin/x or
	// /admin: when that lenient reading selects another route (or a route
	// where the exact one found none, leaving default_route to decide),
	// the path is ambiguous. When both agree, every reading in between
	// agrees too.
	if e.looseRisk || hasUpperASCII(p) {
		if e.first(r.Method, host, p, r.ContextExtensions, true) != rt {
			return nil, ReasonAmbiguousPath
		}
	}
	return rt, ""
}

// first returns the first route that fits, or nil.
func (e *Engine) first(method, host, p string, ctxExt map[string]string, loose bool) *route {
	for i := range e.routes {
		if e.routes[i].matches(method, host, p, ctxExt, loose) {
			return &e.routes[i]
		}
	}
	return nil
}

// authorize decides an authenticated identity against the route's require
// clause (or the default route when rt is nil).
func (e *Engine) authorize(rt *route, roles []string) Reason {
	switch {
	case rt == nil || rt.authOnly:
		return ReasonAuthorized
	case len(rt.anyRole) > 0:
		if len(roles) == 0 {
			return ReasonNoRole
		}
		if rolemap.HasAnyRole(roles, rt.anyRole) {
			return ReasonAuthorized
		}
		return ReasonInsufficientRole
	case len(rt.perms) > 0:
		if len(roles) == 0 {
			return ReasonNoRole
		}
		if e.mapper.Permits(roles, rt.perms) {
			return ReasonAuthorized
		}
		return ReasonInsufficientPerms
	}
	// A route without a require clause is refused by validation; fail closed
	// should one slip through.
	return ReasonInsufficientPerms
}

// checkLLM applies the route's LLM policy to an authorized request: the
// model and tools it asks for must be permitted, and the body must be one
// that can be checked.
func (e *Engine) checkLLM(rt *route, r *Request, id *Identity, d *Decision) {
	in := LLMInput{Body: r.Body, ContentType: r.Headers["content-type"],
		BodyExpected: BodyExpected(r.Method, r.BodySize, r.Headers)}
	// Envoy sets the partial-body header to "true" or "false"; anything
	// but "false" fails closed.
	if v, ok := r.Headers[PartialBodyHeader]; ok && v != "false" {
		in.Partial = true
	}
	if rt.llm.ModelHeader != "" {
		in.ModelHeader, in.HasModelHeader = r.Headers[rt.llm.ModelHeader]
	}
	c := CheckLLM(rt.llm, in, e.llmLimits, func(perm string) bool {
		return e.mapper.Permits(id.Roles, []string{perm})
	})
	d.Model, d.Tools = c.Request.Model, c.Request.Tools
	if c.Reason == "" {
		return
	}
	d.Reason, d.Code, d.Message = c.Reason, ReasonCode(c.Reason), c.Message
	e.llmMetrics.Count(c.Reason)
}

// rateLimit spends one request of the caller's budget on the route, when a
// limit applies. Only requests that are otherwise allowed spend budget.
func (e *Engine) rateLimit(ctx context.Context, id *Identity, d *Decision) {
	rule, ok := e.policy.Resolve(d.Route, ratelimit.Caller{
		Subject: id.Subject, Issuer: id.Issuer, KeyID: id.KeyID, Roles: id.Roles, KeyLimit: id.KeyLimit,
	})
	if !ok {
		return
	}
	res, err := e.limiter.Allow(ctx, rule)
	d.ResponseHeaders = convertRateHeaders(res.Headers())
	switch {
	case err != nil && res.Allowed:
		d.RateLimit = "error_allowed" // on_error: allow
	case err != nil:
		d.RateLimit = "error_denied"
		d.Code, d.Reason = Unavailable, ReasonRateLimitUnavailable
	case !res.Allowed:
		d.RateLimit = "limited"
		d.Code, d.Reason = RateLimited, ReasonRateLimited
	default:
		d.RateLimit = "allowed"
	}
}

func convertRateHeaders(in []ratelimit.Header) []Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]Header, len(in))
	for i, h := range in {
		out[i] = Header{h.Name, h.Value}
	}
	return out
}

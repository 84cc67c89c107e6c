package authz

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
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
	peerIDs        *slotCache[string, derivedIdentity]
	certPrincipals *slotCache[string, string]
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

// NewEngine builds an Engine. The configuration must already be valid (see
// ValidateRoutes); NewEngine checks only what it cannot work without.
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
	if err := ValidateRoutes(cfg.Routes, cfg.DefaultRoute, h, deps.Mapper.Known); err != nil {
		return nil, err
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
		if err := ValidatePeerIdentity(cfg.PeerIdentity, deps.Mapper.Known); err != nil {
			return nil, err
		}
		e.peerRules = compilePeerRules(cfg.PeerIdentity)
		e.peerIDs = newSlotCache[string, derivedIdentity](peerCacheSlots)
		e.certPrincipals = newSlotCache[string, string](certCacheSlots)
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
	rt, refused := e.match(r)
	var d Decision
	if refused != "" {
		// A method or path that cannot be read one way only is refused
		// before any route or default_route can decide it.
		d.Code, d.Reason = ReasonCode(refused), refused
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

	id, set, reason := e.authenticate(ctx, r, &d)
	if id == nil {
		d.Reason = reason
		d.Code = ReasonCode(reason)
		d.Method = methodOfReason(reason)
		return d
	}
	d.Method = id.Method
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
		d.Set = set
		d.Remove = e.removals(r.Headers, d.Set)
	}
	return d
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

// credential sources, for choosing the error code of a malformed credential.
const (
	fromAuthorization = iota + 1
	fromAPIKeyHeader
)

// authenticate extracts and checks the credential. It returns the identity
// and the headers it sets upstream, or nil and the reason for refusing.
//
// An explicit credential always decides, valid or not; only a request
// without one may be identified by its mTLS peer (peer_identity). When d is
// not nil and the credential is a revoked or expired API key, the key's id
// and owner are recorded in d for the audit log.
func (e *Engine) authenticate(ctx context.Context, r *Request, d *Decision) (*Identity, []Header, Reason) {
	cred, from := credential(r.Headers)
	if from == 0 {
		if e.peerRules != nil {
			if id, set := e.authenticatePeer(r); id != nil {
				return id, set, ""
			}
		}
		return nil, nil, ReasonNoCredentials
	}
	switch {
	case e.keyPrefix != "" && strings.HasPrefix(cred, e.keyPrefix):
		return e.authenticateKey(ctx, cred, d)
	case looksLikeJWT(cred):
		return e.authenticateJWT(ctx, cred)
	case from == fromAPIKeyHeader:
		return nil, nil, ReasonMalformedKey
	case e.introspector != nil && cred != "":
		return e.authenticateOpaque(ctx, cred)
	default:
		return nil, nil, ReasonMalformedCredential
	}
}

// authenticateOpaque validates a bearer token that is neither an API key
// nor a JWT with the introspection endpoint.
func (e *Engine) authenticateOpaque(ctx context.Context, token string) (*Identity, []Header, Reason) {
	res, err := e.introspector.Introspect(ctx, token)
	if err != nil {
		return nil, nil, opaqueReason(ctx, err)
	}
	if d, ok := e.opaqueIDs.get(res); ok {
		return d.id, d.set, ""
	}
	id := &Identity{
		Method:  MethodOpaque,
		Subject: res.Subject,
		Groups:  sortedGroups(res.Groups),
		Roles:   e.mapper.Roles(res.Groups, nil),
	}
	set := e.identityHeaders(id)
	e.opaqueIDs.put(res, derivedIdentity{id, set})
	return id, set, ""
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

func (e *Engine) authenticateJWT(ctx context.Context, token string) (*Identity, []Header, Reason) {
	if e.verifier == nil {
		return nil, nil, ReasonUnknownIssuer
	}
	c, err := e.verifier.Verify(ctx, token)
	if err != nil {
		return nil, nil, jwtReason(ctx, err)
	}
	if d, ok := e.jwtIDs.get(c); ok {
		return d.id, d.set, ""
	}
	id := &Identity{
		Method:  MethodJWT,
		Subject: c.Subject,
		Issuer:  c.Issuer,
		Groups:  sortedGroups(c.Groups),
		Roles:   e.mapper.Roles(c.Groups, nil),
		Extra:   convertHeaders(c.Headers),
	}
	set := e.identityHeaders(id)
	e.jwtIDs.put(c, derivedIdentity{id, set})
	return id, set, ""
}

// authenticateKey resolves an API key. A revoked or expired key's id and
// owner go to d (when not nil), never to an Identity.
func (e *Engine) authenticateKey(ctx context.Context, key string, d *Decision) (*Identity, []Header, Reason) {
	if e.keys == nil {
		return nil, nil, ReasonUnknownKey
	}
	rec, err := e.keys.Lookup(ctx, key)
	if err != nil {
		reason := keyReason(ctx, err)
		if d != nil && (reason == ReasonExpiredKey || reason == ReasonRevokedKey) {
			if ke, ok := errors.AsType[*apikeys.KeyError](err); ok {
				d.KeyID, d.KeyOwner, d.KeyIssuer = ke.ID, ke.Owner, ke.Issuer
			}
		}
		return nil, nil, reason
	}
	if c, ok := e.keyIDs.get(rec); ok {
		return c.id, c.set, ""
	}
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
	set := e.identityHeaders(id)
	e.keyIDs.put(rec, derivedIdentity{id, set})
	return id, set, ""
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
		if p, ok = e.certPrincipals.get(r.PeerCertificate); !ok {
			p, _ = certificatePrincipal(r.PeerCertificate)
			if len(r.PeerCertificate) <= maxCachedCertificateBytes {
				e.certPrincipals.put(r.PeerCertificate, p)
			}
		}
	}
	if !validPrincipal(p) {
		return nil, nil
	}
	if d, ok := e.peerIDs.get(p); ok {
		return d.id, d.set
	}
	var d derivedIdentity
	if rule := matchPeer(e.peerRules, p); rule != nil {
		d.id = &Identity{
			Method:  MethodMTLS,
			Subject: p,
			Groups:  sortedGroups(rule.groups),
			Roles:   e.mapper.Roles(rule.groups, rule.roles),
		}
		d.set = e.identityHeaders(d.id)
	}
	e.peerIDs.put(p, d)
	return d.id, d.set
}

// identityCacheSlots is the size of each identity cache. At most this many
// derived identities (about 600 bytes each, plus the Claims or Record they
// keep alive) are held per Engine and credential kind.
const identityCacheSlots = 8192

// identityCache maps a verified credential's Claims or Record, by pointer,
// to the Identity and headers derived from it. Holding the pointer keeps its
// target alive, so an address in the cache can never be reused by another
// credential; the targets are immutable (see jwks.Claims and
// apikeys.Store.Lookup), so a hit always yields what deriving again would.
type identityCache[K comparable] = slotCache[K, derivedIdentity]

// derivedIdentity is what a verified credential yields.
type derivedIdentity struct {
	id  *Identity
	set []Header
}

func newIdentityCache[K comparable](slots int) *identityCache[K] {
	return newSlotCache[K, derivedIdentity](slots)
}

// slotCache is a bounded, lock-free, direct-mapped cache: each key hashes to
// one slot, and a newer entry simply replaces the older one. A lookup costs
// one hash and one atomic load; a miss costs one small allocation. It suits
// values that are cheap to rebuild and keys that repeat.
type slotCache[K comparable, V any] struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[slotEntry[K, V]]
}

type slotEntry[K comparable, V any] struct {
	key K
	val V
}

// newSlotCache returns a cache of slots entries; slots must be a power of
// two.
func newSlotCache[K comparable, V any](slots int) *slotCache[K, V] {
	return &slotCache[K, V]{
		seed:  maphash.MakeSeed(),
		mask:  uint64(slots - 1),
		slots: make([]atomic.Pointer[slotEntry[K, V]], slots),
	}
}

func (c *slotCache[K, V]) slot(k K) *atomic.Pointer[slotEntry[K, V]] {
	return &c.slots[maphash.Comparable(c.seed, k)&c.mask]
}

// get returns the value cached for k.
func (c *slotCache[K, V]) get(k K) (v V, ok bool) {
	if e := c.slot(k).Load(); e != nil && e.key == k {
		return e.val, true
	}
	return v, false
}

// put caches v for k, replacing whatever shared its slot.
func (c *slotCache[K, V]) put(k K, v V) {
	c.slot(k).Store(&slotEntry[K, V]{key: k, val: v})
}

// swap caches v for k and returns the value it replaced, if any.
func (c *slotCache[K, V]) swap(k K, v V) (old V, replaced bool) {
	if e := c.slot(k).Swap(&slotEntry[K, V]{key: k, val: v}); e != nil {
		return e.val, true
	}
	return old, false
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

func methodOfReason(r Reason) AuthMethod {
	switch r {
	case ReasonJWKSUnavailable, ReasonTokenTooLarge, ReasonMalformedToken, ReasonUnknownIssuer,
		ReasonAlgorithm, ReasonUnknownKID, ReasonBadSignature, ReasonExpiredToken, ReasonNotYetValid,
		ReasonIssuedInFuture, ReasonWrongAudience, ReasonMissingClaim, ReasonInvalidToken:
		return MethodJWT
	case ReasonMalformedKey, ReasonUnknownKey, ReasonRevokedKey, ReasonExpiredKey,
		ReasonRedisTimeout, ReasonRedisUnavailable:
		return MethodAPIKey
	case ReasonInactiveToken, ReasonIntrospectionUnavailable, ReasonIntrospectionRateLimited, ReasonIntrospectionBusy:
		return MethodOpaque
	}
	return MethodNone
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

// identityHeaders returns the headers to set upstream for id.
func (e *Engine) identityHeaders(id *Identity) []Header {
	set := make([]Header, 0, 6+len(id.Extra))
	set = append(set, Header{e.names.subject, headerValue(id.Subject)})
	set = append(set, Header{e.names.method, id.Method.String()})
	if id.Issuer != "" {
		set = append(set, Header{e.names.issuer, headerValue(id.Issuer)})
	}
	if len(id.Groups) > 0 {
		set = append(set, Header{e.names.groups, joinSafe(id.Groups)})
	}
	if len(id.Roles) > 0 {
		set = append(set, Header{e.names.roles, joinSafe(id.Roles)})
	}
	if id.KeyID != "" {
		set = append(set, Header{e.names.keyID, headerValue(id.KeyID)})
	}
	for _, x := range id.Extra {
		set = append(set, Header{x.Name, headerValue(x.Value)})
	}
	return set
}

// removals lists the request headers that must not reach the upstream:
// every header under the identity prefix (and every claims_to_headers name)
// that set does not overwrite, and the credential headers when
// strip_credentials is on. Names are compared as an upstream may read them:
// case-insensitively and with '_' read as '-' (CGI, WSGI and Rack turn
// x_auth_subject and x-auth-subject into the same variable), so every such
// spelling is removed. It returns nil, without allocating, when there is
// nothing to remove.
func (e *Engine) removals(h map[string]string, set []Header) []string {
	var out []string
	for name := range h {
		if !e.identityHeader(name) {
			if e.strip && name != "authorization" && name != "x-api-key" &&
				(foldedEqual(name, "authorization") || foldedEqual(name, "x-api-key")) {
				out = append(out, name) // x_api_key, X-Api-Key
			}
			continue
		}
		// A header this decision sets is overwritten (Envoy matches
		// names case-insensitively); x_auth_subject is another header to
		// Envoy and is removed.
		if setsHeaderFold(set, name) {
			continue
		}
		out = append(out, name)
	}
	if e.strip {
		_, auth := h["authorization"]
		_, key := h["x-api-key"]
		if out == nil {
			// The common case: no client-sent identity header. Answer with
			// a shared list rather than allocate one per check.
			switch {
			case auth && key:
				return removeBoth
			case auth:
				return removeAuthorization
			case key:
				return removeAPIKey
			}
			return nil
		}
		if auth {
			out = append(out, "authorization")
		}
		if key {
			out = append(out, "x-api-key")
		}
	}
	if len(out) > 1 {
		slices.Sort(out)
	}
	return out
}

// identityHeader reports whether a request header name is, as an upstream
// may read it, under the identity prefix or a claims_to_headers name.
func (e *Engine) identityHeader(name string) bool {
	if hasFoldedPrefix(name, e.prefix) {
		return true
	}
	for _, c := range e.claimHeaders {
		if foldedEqual(name, c) {
			return true
		}
	}
	return false
}

// foldHeaderByte reads a header-name byte as the most lenient upstream does:
// lower case, and '_' as '-'.
func foldHeaderByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// hasFoldedPrefix reports whether name starts with prefix, both read with
// foldHeaderByte. It does not allocate.
func hasFoldedPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldHeaderByte(name[i]) != foldHeaderByte(prefix[i]) {
			return false
		}
	}
	return true
}

// foldedEqual reports whether a and b are the same header name read with
// foldHeaderByte.
func foldedEqual(a, b string) bool { return len(a) == len(b) && hasFoldedPrefix(a, b) }

// setsHeaderFold reports whether set holds name, compared
// case-insensitively (but '_' and '-' differ).
func setsHeaderFold(set []Header, name string) bool {
	for i := range set {
		if strings.EqualFold(set[i].Name, name) {
			return true
		}
	}
	return false
}

// The removal lists of the common case, when no client-sent identity header
// is to be removed, only the credential headers to strip. Every decision
// shares them: read-only.
var (
	removeAuthorization = []string{"authorization"}
	removeAPIKey        = []string{"x-api-key"}
	removeBoth          = []string{"authorization", "x-api-key"}
)

// RemovalKind says which shared removal list a Decision's Remove is, so a
// front end can share what it builds from it (the gRPC front end caches
// allowed responses by it).
type RemovalKind uint8

// The removal kinds: nothing to remove, one of the three shared lists of
// credential headers, or RemovalOther, a list built for one request that
// must not be shared.
const (
	RemovalNone RemovalKind = iota
	RemovalAuthorization
	RemovalAPIKey
	RemovalBoth
	RemovalOther
)

// RemovalOf returns which shared removal list rm (a Decision's Remove) is,
// or RemovalOther.
func RemovalOf(rm []string) RemovalKind {
	switch {
	case len(rm) == 0:
		return RemovalNone
	case &rm[0] == &removeAuthorization[0]:
		return RemovalAuthorization
	case &rm[0] == &removeAPIKey[0]:
		return RemovalAPIKey
	case &rm[0] == &removeBoth[0]:
		return RemovalBoth
	}
	return RemovalOther
}

func setsHeader(set []Header, name string) bool {
	for i := range set {
		if set[i].Name == name {
			return true
		}
	}
	return false
}

func convertHeaders(in []jwks.Header) []Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]Header, len(in))
	for i, h := range in {
		out[i] = Header{h.Name, h.Value}
	}
	return out
}

// sortedGroups returns the groups sorted and de-duplicated, without any group
// that could not travel safely in a comma-separated header (a comma or a
// control character would let one group pose as two).
func sortedGroups(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, g := range in {
		if g != "" && safeListItem(g) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func safeListItem(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

func joinSafe(items []string) string {
	if len(items) == 1 {
		return headerValue(items[0])
	}
	return headerValue(strings.Join(items, ","))
}

// headerValue removes control characters, which no header value may carry.
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if (r < 0x20 && r != '\t') || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

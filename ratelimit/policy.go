package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// KeyPrefix starts the name of every counter. redis_rate adds its own
// "rate:" in front, so the Redis keys are rate:extauthz:rl:{...}:<route>.
const KeyPrefix = "extauthz:rl:"

// DefaultRouteLabel is the metric label of checks that matched no route and
// passed through default_route: authenticated (Rule.Route ""). Unknown route
// names are counted as "other".
const DefaultRouteLabel = "default_route"

// maxIDLen bounds the identity part of a counter name; a longer one (a huge
// JWT subject) is replaced by its SHA-256.
const maxIDLen = 128

// Caller is who is counted: what the authz engine knows about an
// authenticated request.
type Caller struct {
	Subject string // JWT subject or API key owner
	// Issuer qualifies Subject: the JWT's issuer, or for an API key minted
	// by a JWT caller (self-service, token exchange) that caller's issuer.
	Issuer string
	KeyID  string // API key only
	// Roles are the caller's roles after mapping (sorted, as rolemap
	// returns them).
	Roles []string
	// KeyLimit is the API key's own limit (its record's rate_limit); nil
	// when it has none.
	KeyLimit *Limit
}

// Source says where the limit of a Rule came from, most specific first.
type Source uint8

// The sources, in the order Resolve tries them.
const (
	SourceKey       Source = iota + 1 // the API key's own limit
	SourceRouteRole                   // routes[].rate_limit.roles
	SourceRole                        // rate_limits.roles
	SourceRoute                       // routes[].rate_limit
	SourceDefault                     // rate_limits.default
)

var sourceNames = [...]string{"", "key", "route_role", "role", "route", "default"}

// String returns the source's name for logs ("key", "route_role", "role",
// "route", "default").
func (s Source) String() string {
	if int(s) < len(sourceNames) && s != 0 {
		return sourceNames[s]
	}
	return "other"
}

// Rule is the limit that applies to one caller on one route, and the counter
// it spends.
type Rule struct {
	// Route is the route's name ("" for the default route); it picks the
	// metric label.
	Route string
	// Key names the counter: extauthz:rl:{<kind>:<id>}:<route>.
	Key string
	// Limit has Burst filled in.
	Limit  Limit
	Source Source
}

// Policy decides which limit applies to a caller on a route. It is pure and
// immutable: build one per configuration with NewPolicy.
type Policy struct {
	routes map[string]*routePolicy
	global routePolicy // the default route, and any route not configured
	names  []string
}

type routePolicy struct {
	disabled   bool
	key        KeyBy
	routeRoles map[string]Limit // normalized
	roles      map[string]Limit // normalized, shared
	limit      Limit            // normalized; zero when none
	source     Source           // of limit
}

// NewPolicy compiles the rate_limits section and the routes' rate_limit
// entries (routes in config order). Public routes are never limited. c and
// routes must have passed Config.Validate and ValidatePolicy (config.Load
// does that); NewPolicy does not check them again and returns no error
// today (the result keeps its error for compilation steps that may fail).
func NewPolicy(c Config, routes []Route) (*Policy, error) {
	roles := normalizeAll(c.Roles)
	p := &Policy{
		routes: make(map[string]*routePolicy, len(routes)),
		global: routePolicy{key: c.keyBy(), roles: roles},
	}
	if c.Default != nil {
		p.global.limit, p.global.source = c.Default.normalized(), SourceDefault
	}
	for _, r := range routes {
		rp := p.global // copy
		switch {
		case r.Public, r.Limit != nil && r.Limit.Disabled:
			rp = routePolicy{disabled: true}
		case r.Limit != nil:
			if r.Limit.Key != "" {
				rp.key = r.Limit.Key
			}
			if !r.Limit.Limit.IsZero() {
				rp.limit, rp.source = r.Limit.Limit.normalized(), SourceRoute
			}
			rp.routeRoles = normalizeAll(r.Limit.Roles)
		}
		p.routes[r.Name] = &rp
		if !rp.disabled {
			p.names = append(p.names, r.Name)
		}
	}
	return p, nil
}

// Routes returns the names of the routes that can be limited, for
// Metrics.AddRoutes.
func (p *Policy) Routes() []string { return p.names }

// Resolve returns the rule for caller on route (its name; "" for the default
// route), or false when no limit applies. The most specific limit wins: the
// API key's own, then the route's per-role limits, then rate_limits.roles
// (when several of the caller's roles have one, the most generous), then the
// route's limit, then rate_limits.default.
func (p *Policy) Resolve(route string, c Caller) (Rule, bool) {
	rp, ok := p.routes[route]
	if !ok {
		rp = &p.global
	}
	if rp.disabled {
		return Rule{}, false
	}
	var (
		lim  Limit
		src  Source
		role string
	)
	switch {
	case c.KeyLimit != nil && !c.KeyLimit.IsZero():
		lim, src = c.KeyLimit.normalized(), SourceKey
	default:
		if role, lim, ok = bestRole(rp.routeRoles, c.Roles); ok {
			src = SourceRouteRole
		} else if role, lim, ok = bestRole(rp.roles, c.Roles); ok {
			src = SourceRole
		} else if rp.source != 0 {
			lim, src = rp.limit, rp.source
		} else {
			return Rule{}, false
		}
	}
	return Rule{Route: route, Key: counterKey(rp.key, src, role, c, route), Limit: lim, Source: src}, true
}

// bestRole returns the most generous limit among the caller's roles; ties go
// to the first role in order.
func bestRole(limits map[string]Limit, roles []string) (string, Limit, bool) {
	if len(limits) == 0 {
		return "", Limit{}, false
	}
	var (
		best  string
		bestL Limit
		found bool
	)
	for _, r := range roles {
		l, ok := limits[r]
		if !ok {
			continue
		}
		if !found || moreGenerous(l, bestL) {
			best, bestL, found = r, l, true
		}
	}
	return best, bestL, found
}

// counterKey names the counter. A key's own limit always counts per key;
// key_id falls back to the subject for JWT callers, and role to the subject
// when the limit did not come from a role. A key minted by a JWT caller
// (its Issuer is set) always counts as its minting identity, issuer and
// subject, whatever key says: minting more keys never adds budget.
func counterKey(by KeyBy, src Source, role string, c Caller, route string) string {
	kind, id := "s", subjectID(c)
	minted := c.KeyID != "" && c.Issuer != ""
	switch {
	case minted && !(by == KeyRole && role != ""):
		// the minting identity's budget
	case src == SourceKey && c.KeyID != "":
		kind, id = "k", escapeID(c.KeyID)
	case by == KeyKeyID && c.KeyID != "":
		kind, id = "k", escapeID(c.KeyID)
	case by == KeyRole && role != "":
		kind, id = "r", escapeID(role)
	}
	sep := ":"
	if len(id) > maxIDLen {
		sum := sha256.Sum256([]byte(id))
		sep, id = "#", hex.EncodeToString(sum[:])
	}
	return KeyPrefix + "{" + kind + sep + id + "}:" + route
}

// subjectID is the escaped subject, qualified by the JWT issuer: the same
// sub from two issuers is two people.
func subjectID(c Caller) string {
	if c.Issuer == "" {
		return escapeID(c.Subject)
	}
	return escapeID(c.Issuer) + "|" + escapeID(c.Subject)
}

// escapeID percent-encodes the bytes that would make a counter name
// ambiguous or hard to read: '%', '{', '}' (the hash tag), '|' (the issuer
// separator), space, control and non-ASCII bytes. It returns s itself when
// nothing needs escaping.
func escapeID(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '%' || c == '{' || c == '}' || c == '|'
}

func normalizeAll(in map[string]Limit) map[string]Limit {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]Limit, len(in))
	for k, v := range in {
		out[k] = v.normalized()
	}
	return out
}

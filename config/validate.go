package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
)

// Validate reports every problem in the configuration, each as the key's path
// and the rule it breaks, joined with errors.Join. Questionable but valid
// settings are recorded as Warnings.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.warnings = nil

	add(c.Listen.Validate("listen"))
	add(c.Server.Validate("server"))
	add(c.Log.Validate("log"))

	add(c.JWT.Validate("jwt"))
	add(c.APIKeys.Validate("api_keys"))
	add(c.Roles.Validate("roles"))
	add(c.RoleMapping.Validate("role_mapping", c.Roles))
	known := c.Roles.Known
	// routes, default_route, headers and peer_identity: the engine's part.
	add(authz.Config{Routes: c.Routes, DefaultRoute: c.DefaultRoute, Headers: c.Headers, PeerIdentity: c.PeerIdentity}.Validate(known))
	add(c.API.Validate("api", known))
	add(c.validatePolicy())
	add(c.validateRateLimits(known))
	add(c.validateClaimHeaders())
	if in := c.Introspection; in != nil {
		add(in.Validate("introspection"))
		if in.Timeout >= c.Server.CheckTimeout && c.Server.CheckTimeout > 0 {
			add(fmt.Errorf("introspection.timeout: %s must be below server.check_timeout (%s), or a slow endpoint turns every uncached check into a timeout: e.g. 200ms with check_timeout 300ms", in.Timeout, c.Server.CheckTimeout))
		}
	}
	if len(c.JWT.Providers) == 0 && c.APIKeys.Redis == nil && c.APIKeys.File == "" && c.Introspection == nil {
		c.warnings = append(c.warnings, "neither jwt.providers nor an API-key store (api_keys.redis or api_keys.file) is configured: only public routes can ever be allowed")
	}
	if c.APIKeys.Redis == nil {
		c.warnings = append(c.warnings, "api_keys.redis is not set: API keys live in the embedded store, which is for development only (one replica, no shared revocation)")
	}
	return errors.Join(errs...)
}

// validatePolicy checks that what routes require can be granted: a required
// role must be reachable through role mapping (or, if API keys are on,
// carried by a key), and a required permission must be held by some role.
func (c *Config) validatePolicy() error {
	mapper, err := rolemap.New(c.RoleMapping, c.Roles)
	if err != nil {
		return nil // reported by Roles.Validate and Mapping.Validate
	}
	keysOn := c.APIKeys.Redis != nil || c.APIKeys.File != ""
	// Roles that peer_identity rules give (directly or through their
	// groups) are reachable too.
	peerRoles := map[string]bool{}
	if c.PeerIdentity.Enabled {
		for _, r := range c.PeerIdentity.Rules {
			for _, role := range mapper.Roles(r.Groups, r.Roles) {
				peerRoles[role] = true
			}
		}
	}
	var errs []error
	for i, r := range c.Routes {
		for j, role := range r.Require.AnyRole {
			if _, ok := c.Roles[role]; !ok || mapper.Reachable(role) || peerRoles[role] {
				continue
			}
			msg := fmt.Sprintf("routes[%d].require.any_role[%d]: no role_mapping rule or default_roles produces role %q, so no JWT caller can ever reach route %q: add a rule that grants it", i, j, role, r.Name)
			if keysOn {
				c.warnings = append(c.warnings, msg+" (API keys created with --roles "+role+" can)")
				continue
			}
			errs = append(errs, errors.New(msg))
		}
		for j, perm := range r.Require.Permissions {
			granted := false
			for role := range c.Roles {
				if mapper.Permits([]string{role}, []string{perm}) {
					granted = true
					break
				}
			}
			if !granted {
				errs = append(errs, fmt.Errorf("routes[%d].require.permissions[%d]: no role under roles grants %q: add it to a role (or fix the spelling)", i, j, perm))
			}
		}
		warns, err := validateLLMPermissions(fmt.Sprintf("routes[%d]", i), r.LLM(), c.Roles)
		c.warnings = append(c.warnings, warns...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validateRateLimits checks the rate_limits section and the routes'
// rate_limit entries, and that the counters have a Redis and a timeout that
// fits in a check.
func (c *Config) validateRateLimits(knownRole func(string) bool) error {
	var rc ratelimit.Config
	if c.RateLimits != nil {
		rc = *c.RateLimits
	}
	var errs []error
	if c.RateLimits != nil {
		if err := rc.Validate("rate_limits"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ratelimit.ValidatePolicy(rc, authz.RateLimitRoutes(c.Routes), knownRole); err != nil {
		errs = append(errs, err)
	}
	if !c.rateLimitsOn() {
		return errors.Join(errs...)
	}
	if rc.Redis == nil && c.APIKeys.Redis == nil {
		errs = append(errs, errors.New("rate_limits.redis: rate limits need Redis to share their counters: set rate_limits.redis or api_keys.redis"))
	}
	timeout := rc.Timeout
	if timeout <= 0 {
		timeout = ratelimit.DefaultTimeout
	}
	if timeout >= c.Server.CheckTimeout && c.Server.CheckTimeout > 0 {
		errs = append(errs, fmt.Errorf("rate_limits.timeout: %s must be below server.check_timeout (%s), or a slow Redis turns every check into a timeout: e.g. 100ms with check_timeout 300ms", timeout, c.Server.CheckTimeout))
	}
	return errors.Join(errs...)
}
func (c *Config) validateClaimHeaders() error {
	reserved := map[string]bool{}
	for _, n := range []string{"subject", "method", "issuer", "groups", "roles", "key-id"} {
		reserved[c.Headers.Prefix+n] = true
	}
	var errs []error
	for i, p := range c.JWT.Providers {
		keys := make([]string, 0, len(p.ClaimsToHeaders))
		for k := range p.ClaimsToHeaders {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, claim := range keys {
			h := p.ClaimsToHeaders[claim]
			path := fmt.Sprintf("jwt.providers[%d].claims_to_headers.%s", i, claim)
			switch {
			case !authz.ValidHeaderName(h):
				// Reported, with the reason and the fix, by the jwt
				// section's own validation (jwks.ReservedHeader).
			case reserved[h]:
				errs = append(errs, fmt.Errorf("%s: %q is an identity header extauthz sets itself: choose another name", path, h))
			case !strings.HasPrefix(h, c.Headers.Prefix):
				c.warnings = append(c.warnings, fmt.Sprintf("%s: %q does not start with headers.prefix %q; it is still removed from requests when the claim is absent, but keeping identity headers under one prefix is simpler to audit", path, h, c.Headers.Prefix))
			}
		}
	}
	return errors.Join(errs...)
}

package config

import (
	"slices"
	"strings"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/ratelimit"
)

// RateLimitConfig returns the effective rate_limits section: nil when rate
// limiting is off, otherwise the section (or an empty one when only routes
// have a rate_limit) with Redis filled in from api_keys.redis when it has
// none of its own.
func (c *Config) RateLimitConfig() *ratelimit.Config {
	if !c.rateLimitsOn() {
		return nil
	}
	var rc ratelimit.Config
	if c.RateLimits != nil {
		rc = *c.RateLimits
	}
	if rc.Redis == nil && c.APIKeys.Redis != nil {
		r := *c.APIKeys.Redis
		rc.Redis = &r
	}
	return &rc
}

func (c *Config) rateLimitsOn() bool {
	return authz.Config{Routes: c.Routes, RateLimits: c.RateLimits}.RateLimitsOn()
}

// ClaimHeaders returns every header name that some provider's
// claims_to_headers may set, sorted.
func (c *Config) ClaimHeaders() []string {
	var out []string
	for _, p := range c.JWT.Providers {
		for _, h := range p.ClaimsToHeaders {
			out = append(out, strings.ToLower(h))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Authz returns the Engine's part of the configuration.
func (c *Config) Authz() authz.Config {
	return authz.Config{
		Routes:          c.Routes,
		DefaultRoute:    c.DefaultRoute,
		Headers:         c.Headers,
		APIKeyPrefix:    c.APIKeys.Prefix,
		ClaimHeaders:    c.ClaimHeaders(),
		RateLimits:      c.RateLimitConfig(),
		LLMMaxBodyBytes: c.Server.GRPCMaxRecvBytes,
		PeerIdentity:    c.PeerIdentity,
	}
}

// ServerOptions returns the authz.Server's part of the configuration.
func (c *Config) ServerOptions() authz.ServerOptions {
	return authz.ServerOptions{
		CheckTimeout:         c.Server.CheckTimeout,
		AllowSampleRate:      c.Log.AllowSampleRate,
		DenialLogRate:        denialLogRate(c.Log.DenialsPerSecond),
		HTTPPathPrefix:       c.Server.HTTPPathPrefix,
		HTTPForwardedHeaders: c.Server.HTTPForwardedHeaders,
	}
}

// denialLogRate maps log.denials_per_second (0: every denial) to
// authz.ServerOptions.DenialLogRate (0: the default, negative: every denial).
func denialLogRate(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

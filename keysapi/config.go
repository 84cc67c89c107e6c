package keysapi

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config is the api section of the configuration.
type Config struct {
	Exchange ExchangeConfig `yaml:"exchange"`
}

// ExchangeConfig sets the lifetime of keys issued by token exchange.
type ExchangeConfig struct {
	// DefaultTTL applies when no granted role has an entry in TTLByRole
	// (default 15m).
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// TTLByRole is the lifetime per role; when several granted roles have
	// one, the shortest wins.
	TTLByRole map[string]time.Duration `yaml:"ttl_by_role"`
	// MaxTTL caps every exchanged key (default 1h).
	MaxTTL time.Duration `yaml:"max_ttl"`
}

// DefaultConfig returns the defaults: default_ttl 15m, max_ttl 1h.
func DefaultConfig() Config {
	return Config{Exchange: ExchangeConfig{DefaultTTL: 15 * time.Minute, MaxTTL: time.Hour}}
}

// Validate checks c; known reports whether a role is defined. Each problem
// names its path, the rule and a fix.
func (c Config) Validate(known func(string) bool) error {
	var errs []error
	x := c.Exchange
	if x.DefaultTTL <= 0 {
		errs = append(errs, errors.New("api.exchange.default_ttl: must be positive, e.g. 15m"))
	}
	if x.MaxTTL <= 0 {
		errs = append(errs, errors.New("api.exchange.max_ttl: must be positive, e.g. 1h"))
	}
	if x.DefaultTTL > x.MaxTTL && x.MaxTTL > 0 {
		errs = append(errs, fmt.Errorf("api.exchange.default_ttl: must not exceed max_ttl (%s); lower it or raise max_ttl", x.MaxTTL))
	}
	roles := make([]string, 0, len(x.TTLByRole))
	for r := range x.TTLByRole {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		ttl := x.TTLByRole[r]
		if known != nil && !known(r) {
			errs = append(errs, fmt.Errorf("api.exchange.ttl_by_role.%s: unknown role; define it under roles or remove the entry", r))
		}
		if ttl <= 0 {
			errs = append(errs, fmt.Errorf("api.exchange.ttl_by_role.%s: must be positive, e.g. 2m", r))
		}
	}
	return errors.Join(errs...)
}

// ttl returns the lifetime of a key exchanged for roles: the shortest
// ttl_by_role of the roles that have one, else default_ttl, capped by
// max_ttl.
func (x ExchangeConfig) ttl(roles []string) time.Duration {
	var best time.Duration
	for _, r := range roles {
		if t, ok := x.TTLByRole[r]; ok && (best == 0 || t < best) {
			best = t
		}
	}
	if best == 0 {
		best = x.DefaultTTL
	}
	if x.MaxTTL > 0 && best > x.MaxTTL {
		best = x.MaxTTL
	}
	return best
}

package keysapi

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

// Config is the api section of the configuration.
type Config struct {
	Exchange ExchangeConfig `yaml:"exchange"`
	// MaxTTL caps the lifetime of a key created through self-service
	// (apikeys:self), which must have one (default 24h; 0 means the
	// default). Keys created by
	// apikeys:admin holders and by the CLI are not capped.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// MaxKeysPerOwner caps the live (neither revoked nor expired) keys of
	// one owner, issuer-qualified, that self-service and token exchange may
	// mint (default 20; 0 means the default).
	MaxKeysPerOwner int `yaml:"max_keys_per_owner"`
	// MintRateLimit limits POST /v1/keys and POST /v1/token per caller
	// (issuer and subject), in this process (default 10/1m, burst 10;
	// absent means the default).
	MintRateLimit ratelimit.Limit `yaml:"mint_rate_limit"`
}

// Defaults of the api section.
const (
	DefaultMaxTTL          = 24 * time.Hour
	DefaultMaxKeysPerOwner = 20
)

// DefaultMintRateLimit is the default api.mint_rate_limit: 10 a minute.
var DefaultMintRateLimit = ratelimit.Limit{Requests: 10, Per: time.Minute}

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

// Default returns the defaults: exchange default_ttl 15m and max_ttl
// 1h, max_ttl 24h, max_keys_per_owner 20, mint_rate_limit 10/1m.
func Default() Config {
	return Config{
		Exchange:        ExchangeConfig{DefaultTTL: 15 * time.Minute, MaxTTL: time.Hour},
		MaxTTL:          DefaultMaxTTL,
		MaxKeysPerOwner: DefaultMaxKeysPerOwner,
		MintRateLimit:   DefaultMintRateLimit,
	}
}

// Validate checks the section at path (api); known reports whether a role
// is defined. Each problem names its path, the rule and a fix.
func (c Config) Validate(path string, known func(string) bool) error {
	var errs []error
	if c.MaxTTL < 0 {
		errs = append(errs, fmt.Errorf("%s.max_ttl: must be positive (or absent for 24h), e.g. 24h", path))
	}
	if c.MaxKeysPerOwner < 0 {
		errs = append(errs, fmt.Errorf("%s.max_keys_per_owner: must be at least 1 (or absent for 20), e.g. 20", path))
	}
	if !c.MintRateLimit.IsZero() {
		if err := c.MintRateLimit.Check(path + ".mint_rate_limit"); err != nil {
			errs = append(errs, err)
		}
	}
	x := c.Exchange
	if x.DefaultTTL <= 0 {
		errs = append(errs, fmt.Errorf("%s.exchange.default_ttl: must be positive, e.g. 15m", path))
	}
	if x.MaxTTL <= 0 {
		errs = append(errs, fmt.Errorf("%s.exchange.max_ttl: must be positive, e.g. 1h", path))
	}
	if x.DefaultTTL > x.MaxTTL && x.MaxTTL > 0 {
		errs = append(errs, fmt.Errorf("%s.exchange.default_ttl: must not exceed max_ttl (%s); lower it or raise max_ttl", path, x.MaxTTL))
	}
	roles := make([]string, 0, len(x.TTLByRole))
	for r := range x.TTLByRole {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		ttl := x.TTLByRole[r]
		if known != nil && !known(r) {
			errs = append(errs, fmt.Errorf("%s.exchange.ttl_by_role.%s: unknown role; define it under roles or remove the entry", path, r))
		}
		if ttl <= 0 {
			errs = append(errs, fmt.Errorf("%s.exchange.ttl_by_role.%s: must be positive, e.g. 2m", path, r))
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero values of max_ttl, max_keys_per_owner and
// mint_rate_limit with their defaults.
func (c Config) withDefaults() Config {
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.MaxKeysPerOwner == 0 {
		c.MaxKeysPerOwner = DefaultMaxKeysPerOwner
	}
	if c.MintRateLimit.IsZero() {
		c.MintRateLimit = DefaultMintRateLimit
	}
	return c
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

package ratelimit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/redisconn"
)

// Defaults and bounds of the configuration.
const (
	// DefaultTimeout bounds one counter update when Config.Timeout is 0.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultRedisTimeout is the connection's timeout when
	// RedisConfig.Timeout is 0 (as for api_keys.redis).
	DefaultRedisTimeout = redisconn.DefaultTimeout

	// MaxRequests bounds Limit.Requests and Limit.Burst.
	MaxRequests = 1_000_000
	// MinPer and MaxPer bound Limit.Per.
	MinPer = time.Second
	MaxPer = 24 * time.Hour

	maxTimeout = 10 * time.Second
)

// The on_error values.
const (
	OnErrorAllow = "allow"
	OnErrorDeny  = "deny"
)

// KeyBy says whose budget a request spends: the `key:` setting.
type KeyBy string

// The key values. The empty KeyBy means KeySubject.
const (
	// KeySubject counts per authenticated subject: a JWT's issuer and
	// subject, or an API key's owner qualified by its issuer (all of the
	// owner's keys share it, and a JWT caller shares it with the keys it
	// minted).
	KeySubject KeyBy = "subject"
	// KeyKeyID counts per API key; callers with a JWT, and the keys they
	// minted (self-service, token exchange), are counted per issuer and
	// subject, so minting keys never adds budget.
	KeyKeyID KeyBy = "key_id"
	// KeyRole counts per role: every caller holding the role whose limit
	// applies shares one budget. When the limit does not come from a role
	// (route or default limit), the caller is counted per subject.
	KeyRole KeyBy = "role"
)

func (k KeyBy) valid() bool {
	switch k {
	case "", KeySubject, KeyKeyID, KeyRole:
		return true
	}
	return false
}

// Limit is a rate: Requests per Per, with up to Burst at once.
type Limit struct {
	// Requests is the sustained number of requests per Per (1 to 1000000).
	Requests int `yaml:"requests"`
	// Per is the period, 1s to 24h (e.g. "1m").
	Per time.Duration `yaml:"per"`
	// Burst is how many requests may arrive at once (0: Requests). It is
	// the ratelimit-limit header value.
	Burst int `yaml:"burst"`
}

// IsZero reports whether l is unset.
func (l Limit) IsZero() bool { return l == Limit{} }

// normalized returns l with Burst filled in.
func (l Limit) normalized() Limit {
	if l.Burst == 0 {
		l.Burst = l.Requests
	}
	return l
}

// rate returns the sustained rate in requests per second.
func (l Limit) rate() float64 { return float64(l.Requests) / l.Per.Seconds() }

// moreGenerous reports whether a lets more requests through than b: a higher
// sustained rate, or the same rate with a larger burst.
func moreGenerous(a, b Limit) bool {
	ra, rb := a.rate(), b.rate()
	if ra != rb {
		return ra > rb
	}
	return a.normalized().Burst > b.normalized().Burst
}

// validate reports the problems of l at path.
func (l Limit) validate(path string) []error {
	var errs []error
	if l.Requests < 1 || l.Requests > MaxRequests {
		errs = append(errs, fmt.Errorf("%s.requests: %d must be between 1 and %d, e.g. 60", path, l.Requests, MaxRequests))
	}
	if l.Per < MinPer || l.Per > MaxPer {
		errs = append(errs, fmt.Errorf("%s.per: %s must be between 1s and 24h, e.g. 1m", path, l.Per))
	}
	if l.Burst < 0 || l.Burst > MaxRequests {
		errs = append(errs, fmt.Errorf("%s.burst: %d must be between 0 (same as requests) and %d, e.g. 10", path, l.Burst, MaxRequests))
	}
	return errs
}

// String formats l as ParseLimit reads it: "10/1m", or "10/1m,burst=5" when
// Burst is set and differs from Requests.
func (l Limit) String() string {
	s := strconv.Itoa(l.Requests) + "/" + formatPer(l.Per)
	if l.Burst != 0 && l.Burst != l.Requests {
		s += ",burst=" + strconv.Itoa(l.Burst)
	}
	return s
}

func formatPer(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d > 0 && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// ParseLimit reads a limit written as "<requests>/<per>" with an optional
// ",burst=<n>": "10/1m", "600/1h,burst=20". It is the form of a command-line
// flag such as `keys create --rate-limit`. The result is validated.
func ParseLimit(s string) (Limit, error) {
	spec, burst, hasBurst := strings.Cut(s, ",")
	reqs, per, ok := strings.Cut(spec, "/")
	if !ok {
		return Limit{}, fmt.Errorf("ratelimit: limit %q must look like 10/1m or 10/1m,burst=5", s)
	}
	var l Limit
	var err error
	if l.Requests, err = strconv.Atoi(strings.TrimSpace(reqs)); err != nil {
		return Limit{}, fmt.Errorf("ratelimit: limit %q: requests must be a whole number", s)
	}
	if l.Per, err = time.ParseDuration(strings.TrimSpace(per)); err != nil {
		return Limit{}, fmt.Errorf("ratelimit: limit %q: per must be a duration such as 1m", s)
	}
	if hasBurst {
		v, ok := strings.CutPrefix(strings.TrimSpace(burst), "burst=")
		if l.Burst, err = strconv.Atoi(v); !ok || err != nil {
			return Limit{}, fmt.Errorf("ratelimit: limit %q: the option must be burst=<n>", s)
		}
	}
	if errs := l.validate("limit"); len(errs) > 0 {
		return Limit{}, fmt.Errorf("ratelimit: %w", errors.Join(errs...))
	}
	return l, nil
}

// RouteLimit is a route's `rate_limit:` entry. Its own Requests/Per/Burst
// (optional) replace rate_limits.default on the route; Roles replace
// rate_limits.roles for the roles they name; Key replaces rate_limits.key;
// Disabled turns rate limiting off for the route.
type RouteLimit struct {
	Limit    `yaml:",inline"`
	Key      KeyBy            `yaml:"key"`
	Roles    map[string]Limit `yaml:"roles"`
	Disabled bool             `yaml:"disabled"`
}

// Config is the `rate_limits:` section. Zero values mean the default, so an
// empty section turns rate limiting on with per-key limits only.
type Config struct {
	// Redis is where the counters live. Nil means the connection settings
	// of api_keys.redis (the config package fills it in).
	Redis *RedisConfig `yaml:"redis"`
	// OnError is what happens when Redis fails or is too slow: "allow"
	// (default) lets the request through uncounted, "deny" refuses it as
	// unavailable (503).
	OnError string `yaml:"on_error"`
	// Timeout bounds one counter update (default 100ms), below the
	// connection's own timeout and server.check_timeout.
	Timeout time.Duration `yaml:"timeout"`
	// Key says whose budget a request spends (default subject).
	Key KeyBy `yaml:"key"`
	// Default applies to every authenticated route without a limit of its
	// own; nil means no default.
	Default *Limit `yaml:"default"`
	// Roles are per-role limits: a caller holding one of these roles gets
	// its limit instead of the route's or the default (the most generous
	// when several apply).
	Roles map[string]Limit `yaml:"roles"`
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Config) keyBy() KeyBy {
	if c.Key == "" {
		return KeySubject
	}
	return c.Key
}

// Validate reports every problem of the section at once (errors.Join), each
// as "<path>.<key>: <rule>, <example>" (path is rate_limits). Role names
// are checked by ValidatePolicy, which knows the roles table.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, msg)) }
	switch c.OnError {
	case "", OnErrorAllow, OnErrorDeny:
	default:
		bad("on_error", fmt.Sprintf("%q must be allow (let requests through uncounted while Redis is down) or deny", c.OnError))
	}
	if c.Timeout < 0 || c.Timeout > maxTimeout {
		bad("timeout", fmt.Sprintf("%s must be between 0s (default 100ms) and 10s, and below server.check_timeout, e.g. 100ms", c.Timeout))
	}
	if !c.Key.valid() {
		bad("key", fmt.Sprintf("%q must be subject, key_id or role", c.Key))
	}
	if c.Default != nil {
		errs = append(errs, c.Default.validate(path+".default")...)
	}
	for _, role := range sortedKeys(c.Roles) {
		errs = append(errs, c.Roles[role].validate(path+".roles."+role)...)
	}
	if c.Redis != nil {
		for _, err := range c.Redis.Validate(path + ".redis") {
			if errors.Is(err, redisconn.ErrNoAddrs) {
				err = fmt.Errorf("%w (or remove the section to use api_keys.redis)", err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Route describes one configured route to NewPolicy and ValidatePolicy.
type Route struct {
	Name   string
	Public bool
	// Limit is the route's rate_limit entry; nil when it has none.
	Limit *RouteLimit
}

// ValidatePolicy checks the routes' rate_limit entries and every role named
// in a limit against the roles table (knownRole), each problem as a path and
// a rule: "routes[2].rate_limit.roles.agent: role "agent" is not defined
// under roles". routes are in config order.
func ValidatePolicy(c Config, routes []Route, knownRole func(string) bool) error {
	var errs []error
	for _, role := range sortedKeys(c.Roles) {
		if knownRole != nil && !knownRole(role) {
			errs = append(errs, fmt.Errorf("rate_limits.roles.%s: role %q is not defined under roles: add it there or fix the name", role, role))
		}
	}
	for i, r := range routes {
		rl := r.Limit
		if rl == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].rate_limit", i)
		if r.Public {
			errs = append(errs, fmt.Errorf("%s: a public route has no identity to count: remove rate_limit or the public flag", p))
			continue
		}
		if rl.Disabled {
			if !rl.Limit.IsZero() || rl.Key != "" || len(rl.Roles) > 0 {
				errs = append(errs, fmt.Errorf("%s: disabled: true turns rate limiting off for the route: remove the other fields", p))
			}
			continue
		}
		if !rl.Limit.IsZero() {
			errs = append(errs, rl.Limit.validate(p)...)
		}
		if !rl.Key.valid() {
			errs = append(errs, fmt.Errorf("%s.key: %q must be subject, key_id or role", p, rl.Key))
		}
		for _, role := range sortedKeys(rl.Roles) {
			errs = append(errs, rl.Roles[role].validate(p+".roles."+role)...)
			if knownRole != nil && !knownRole(role) {
				errs = append(errs, fmt.Errorf("%s.roles.%s: role %q is not defined under roles: add it there or fix the name", p, role, role))
			}
		}
		if rl.Limit.IsZero() && rl.Key == "" && len(rl.Roles) == 0 {
			errs = append(errs, fmt.Errorf("%s: set requests and per, key, roles, or disabled: true, e.g. {requests: 60, per: 1m}", p))
		}
	}
	return errors.Join(errs...)
}

// RedisConfig is the `rate_limits.redis:` section: the connection settings
// that redisconn owns, the same type as api_keys.redis. Its Timeout bounds
// every Redis call; Config.Timeout bounds a counter update further.
type RedisConfig = redisconn.Config

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Check returns the problems of l (requests 1 to 1000000, per 1s to 24h,
// burst 0 to 1000000), each naming path, or nil.
func (l Limit) Check(path string) error { return errors.Join(l.validate(path)...) }

// Normalized returns l with Burst filled in (0 means Requests).
func (l Limit) Normalized() Limit { return l.normalized() }

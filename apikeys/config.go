package apikeys

import (
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/redisconn"
)

// Defaults of Config and RedisConfig. A zero RedisConfig.Timeout means
// DefaultTimeout.
const (
	DefaultPrefix           = "ek"
	DefaultCacheTTL         = 30 * time.Second
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultCacheSize        = 100000
	DefaultTimeout          = redisconn.DefaultTimeout

	// TombstoneTTL is how long a revoked key's record is kept after
	// revocation (bounded by its own expiry), so listings show it and
	// lookups report it as revoked rather than unknown.
	TombstoneTTL = 30 * 24 * time.Hour

	maxCacheTTL = time.Hour
)

// Config is the `api_keys:` section of the configuration file. It is decoded
// strictly by the config package; start from Default.
type Config struct {
	// Prefix starts every key: keys look like <prefix>_<random><checksum>.
	// 1 to 16 ASCII letters or digits; default "ek". Changing it invalidates
	// every existing key.
	Prefix string `yaml:"prefix"`
	// CacheTTL is how long a found key is answered from the in-process cache
	// without asking Redis (default 30s; 0 turns the cache off). Revocations
	// evict cached entries on every replica through pub/sub; the TTL only
	// bounds staleness when that channel is broken.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// NegativeCacheTTL is how long an unknown, revoked or expired key is
	// answered from the cache (default 5s; 0 turns it off).
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// CacheSize bounds each of the two caches, in entries (default 100000).
	CacheSize int `yaml:"cache_size"`
	// File makes the embedded store (no redis section) persist its keys to
	// this JSON file, so that `extauthz keys` and a running server share
	// them. Development only.
	File string `yaml:"file"`
	// Redis selects the Redis store. Nil means the embedded in-process store,
	// which is for development only.
	Redis *RedisConfig `yaml:"redis"`
}

// RedisConfig is the `api_keys.redis:` section: the connection settings
// that redisconn owns, shared with rate_limits.redis.
type RedisConfig = redisconn.Config

// Default returns the defaults: prefix "ek", a 30s positive and 5s
// negative cache of 100000 entries each, and the embedded store.
func Default() Config {
	return Config{
		Prefix:           DefaultPrefix,
		CacheTTL:         DefaultCacheTTL,
		NegativeCacheTTL: DefaultNegativeCacheTTL,
		CacheSize:        DefaultCacheSize,
	}
}

// Validate reports every problem of the section at path (api_keys) at once
// (errors.Join), each as "<path>.<key>: <rule>, <example>".
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, msg)) }

	if !validPrefix(c.Prefix) {
		bad("prefix", fmt.Sprintf("%q must be 1-16 ASCII letters or digits, not \"key\", e.g. ek", c.Prefix))
	}
	if c.CacheTTL < 0 || c.CacheTTL > maxCacheTTL {
		bad("cache_ttl", "must be between 0s (no cache) and 1h, e.g. 30s")
	}
	if c.NegativeCacheTTL < 0 || c.NegativeCacheTTL > maxCacheTTL {
		bad("negative_cache_ttl", "must be between 0s (no cache) and 1h, e.g. 5s")
	}
	if c.CacheSize < 1 {
		bad("cache_size", "must be at least 1, e.g. 100000")
	}
	if c.Redis != nil && c.File != "" {
		bad("file", "is only used by the embedded store; remove it or the redis section")
	}
	if c.Redis != nil {
		errs = append(errs, c.Redis.Validate(path+".redis")...)
	}
	return errors.Join(errs...)
}

func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 16 || p == "key" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

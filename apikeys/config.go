package apikeys

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Defaults of Config and RedisConfig. A zero RedisConfig.Timeout means
// DefaultTimeout.
const (
	DefaultPrefix           = "ek"
	DefaultCacheTTL         = 30 * time.Second
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultCacheSize        = 100000
	DefaultTimeout          = 200 * time.Millisecond

	// TombstoneTTL is how long a revoked key's record is kept after
	// revocation (bounded by its own expiry), so listings show it and
	// lookups report it as revoked rather than unknown.
	TombstoneTTL = 30 * 24 * time.Hour

	maxCacheTTL = time.Hour
	maxTimeout  = 10 * time.Second
)

// Config is the `api_keys:` section of the configuration file. It is decoded
// strictly by the config package; start from DefaultConfig.
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

// RedisConfig is the `api_keys.redis:` section. Zero values mean the default.
type RedisConfig struct {
	// Addrs with one entry is a standalone server (host:port, a unix socket
	// path, or unix:///path); with several, the seed nodes of a Redis Cluster;
	// with MasterName set, the Sentinels.
	Addrs []string `yaml:"addrs"`
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string `yaml:"master_name"`
	// Username is the ACL user (Redis 6+); empty means "default".
	Username string `yaml:"username"`
	// PasswordFile holds the password (trailing newline ignored). It is read
	// again whenever a new connection is made, so a rotated secret is picked
	// up. When empty, Deps.Password is used (extauthz serve takes it from the
	// environment variable REDIS_PASSWORD).
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (standalone and Sentinel only).
	DB int `yaml:"db"`
	// TLS turns on TLS (1.2 or later) with server verification.
	TLS bool `yaml:"tls"`
	// CAFile is a PEM bundle of CAs to verify the server with instead of the
	// system pool. Requires TLS.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds every Redis call, including dialling (default 200ms).
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the number of connections per node (default: go-redis's,
	// 10 per CPU).
	PoolSize int `yaml:"pool_size"`
}

// DefaultConfig returns the defaults: prefix "ek", a 30s positive and 5s
// negative cache of 100000 entries each, and the embedded store.
func DefaultConfig() Config {
	return Config{
		Prefix:           DefaultPrefix,
		CacheTTL:         DefaultCacheTTL,
		NegativeCacheTTL: DefaultNegativeCacheTTL,
		CacheSize:        DefaultCacheSize,
	}
}

// Validate reports every problem of the section at once (errors.Join), each
// as "api_keys.<path>: <rule>, <example>".
func (c Config) Validate() error {
	var errs []error
	bad := func(path, msg string) { errs = append(errs, fmt.Errorf("api_keys.%s: %s", path, msg)) }

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
	if r := c.Redis; r != nil {
		if len(r.Addrs) == 0 {
			bad("redis.addrs", "must list at least one address, e.g. [redis:6379]")
		}
		unix := 0
		for i, a := range r.Addrs {
			p := fmt.Sprintf("redis.addrs[%d]", i)
			if path, ok := unixPath(a); ok {
				unix++
				if path == "" || !strings.HasPrefix(path, "/") {
					bad(p, fmt.Sprintf("%q must be an absolute socket path, e.g. unix:///run/redis.sock", a))
				}
				continue
			}
			host, port, err := net.SplitHostPort(a)
			if err != nil || host == "" || port == "" || strings.Contains(a, "://") {
				bad(p, fmt.Sprintf("%q must be host:port, a socket path or unix:///path, e.g. redis:6379", a))
			}
		}
		if unix > 0 && (len(r.Addrs) > 1 || r.MasterName != "") {
			bad("redis.addrs", "a unix socket can only be used alone, for a standalone server")
		}
		if r.DB < 0 {
			bad("redis.db", "must not be negative, e.g. 0")
		}
		if r.DB != 0 && len(r.Addrs) > 1 && r.MasterName == "" {
			bad("redis.db", "must be 0 for Redis Cluster (several addrs)")
		}
		if r.CAFile != "" && !r.TLS {
			bad("redis.ca_file", "requires tls: true")
		}
		if r.TLS && unix > 0 {
			bad("redis.tls", "cannot be used with a unix socket")
		}
		if r.Timeout < 0 || r.Timeout > maxTimeout {
			bad("redis.timeout", "must be positive and at most 10s, e.g. 200ms")
		}
		if r.PoolSize < 0 {
			bad("redis.pool_size", "must not be negative (0 means 10 per CPU), e.g. 50")
		}
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

// unixPath reports whether addr names a unix socket ("/path" or
// "unix:///path") and returns its path.
func unixPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return p, true
	}
	if strings.HasPrefix(addr, "/") {
		return addr, true
	}
	return "", false
}

// timeout returns the configured Redis timeout or its default.
func (r *RedisConfig) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

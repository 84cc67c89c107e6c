package apikeys

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestConfig_Validate(t *testing.T) {
	redisCfg := func(f func(*RedisConfig)) Config {
		c := Default()
		c.Redis = &RedisConfig{Addrs: []string{"redis:6379"}}
		f(c.Redis)
		return c
	}
	cfg := func(f func(*Config)) Config {
		c := Default()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // one line per problem; nil means valid
	}{
		{"defaults (embedded)", Default(), nil},
		{"embedded with file", cfg(func(c *Config) { c.File = "/tmp/keys.json" }), nil},
		{"standalone", redisCfg(func(r *RedisConfig) {}), nil},
		{"unix socket path", redisCfg(func(r *RedisConfig) { r.Addrs = []string{"/run/redis.sock"} }), nil},
		{"unix socket url", redisCfg(func(r *RedisConfig) { r.Addrs = []string{"unix:///run/redis.sock"} }), nil},
		{"cluster", redisCfg(func(r *RedisConfig) { r.Addrs = []string{"a:6379", "b:6379", "[::1]:6379"} }), nil},
		{"sentinel with db", redisCfg(func(r *RedisConfig) {
			r.Addrs, r.MasterName, r.DB = []string{"s1:26379", "s2:26379"}, "main", 3
		}), nil},
		{"caches off", cfg(func(c *Config) { c.CacheTTL, c.NegativeCacheTTL = 0, 0 }), nil},
		{"tls with ca", redisCfg(func(r *RedisConfig) { r.TLS, r.CAFile = true, "/etc/ca.pem" }), nil},
		{"bad prefix", cfg(func(c *Config) { c.Prefix = "e_k" }), []string{
			`api_keys.prefix: "e_k" must be 1-16 ASCII letters or digits, not "key", e.g. ek`,
		}},
		{"empty prefix", cfg(func(c *Config) { c.Prefix = "" }), []string{
			`api_keys.prefix: "" must be 1-16 ASCII letters or digits, not "key", e.g. ek`,
		}},
		{"prefix key", cfg(func(c *Config) { c.Prefix = "key" }), []string{
			`api_keys.prefix: "key" must be 1-16 ASCII letters or digits, not "key", e.g. ek`,
		}},
		{"cache values", cfg(func(c *Config) {
			c.CacheTTL, c.NegativeCacheTTL, c.CacheSize = -time.Second, 2*time.Hour, 0
		}), []string{
			"api_keys.cache_ttl: must be between 0s (no cache) and 1h, e.g. 30s",
			"api_keys.negative_cache_ttl: must be between 0s (no cache) and 1h, e.g. 5s",
			"api_keys.cache_size: must be at least 1, e.g. 100000",
		}},
		{"file with redis", func() Config { c := redisCfg(func(*RedisConfig) {}); c.File = "k.json"; return c }(), []string{
			"api_keys.file: is only used by the embedded store; remove it or the redis section",
		}},
		{"no addrs", redisCfg(func(r *RedisConfig) { r.Addrs = nil }), []string{
			"api_keys.redis.addrs: must list at least one address, e.g. [redis:6379]",
		}},
		{"bad addrs", redisCfg(func(r *RedisConfig) { r.Addrs = []string{"redis", "redis://x:6379", "unix://rel.sock"} }), []string{
			`api_keys.redis.addrs[0]: "redis" must be host:port, a socket path or unix:///path, e.g. redis:6379`,
			`api_keys.redis.addrs[1]: "redis://x:6379" must be host:port, a socket path or unix:///path, e.g. redis:6379`,
			`api_keys.redis.addrs[2]: "unix://rel.sock" must be an absolute socket path, e.g. unix:///run/redis.sock`,
			"api_keys.redis.addrs: a unix socket can only be used alone, for a standalone server",
		}},
		{"everything else wrong", redisCfg(func(r *RedisConfig) {
			r.Addrs, r.DB, r.CAFile, r.Timeout, r.PoolSize = []string{"a:1", "b:2"}, 1, "ca.pem", -time.Second, -1
		}), []string{
			"api_keys.redis.db: must be 0 for Redis Cluster (several addrs)",
			"api_keys.redis.ca_file: requires tls: true",
			"api_keys.redis.timeout: must be positive and at most 10s, e.g. 200ms",
			"api_keys.redis.pool_size: must not be negative (0 means 10 per CPU), e.g. 50",
		}},
		{"negative db, tls on socket", redisCfg(func(r *RedisConfig) { r.Addrs, r.DB, r.TLS = []string{"/r.sock"}, -1, true }), []string{
			"api_keys.redis.db: must not be negative, e.g. 0",
			"api_keys.redis.tls: cannot be used with a unix socket",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := tt.cfg.Validate("api_keys"); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}

// The section decodes strictly with go.yaml.in/yaml/v3, durations included,
// over the defaults.
func TestConfig_DecodeYAML(t *testing.T) {
	src := `
prefix: sk
cache_ttl: 1m
redis:
  addrs: [unix:///run/redis.sock]
  timeout: 250ms
  password_file: /etc/redis/pw
`
	got := Default()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Prefix, want.CacheTTL = "sk", time.Minute
	want.Redis = &RedisConfig{Addrs: []string{"unix:///run/redis.sock"}, Timeout: 250 * time.Millisecond, PasswordFile: "/etc/redis/pw"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	if err := got.Validate("api_keys"); err != nil {
		t.Errorf("Validate: %v", err)
	}

	dec = yaml.NewDecoder(strings.NewReader("redis:\n  adrs: [x:1]\n"))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err == nil || !strings.Contains(err.Error(), "adrs") {
		t.Errorf("misspelled key: err = %v, want one naming it", err)
	}
}

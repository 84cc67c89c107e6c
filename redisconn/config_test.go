package redisconn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func lines(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestConfig_Validate(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := Config{Addrs: []string{"redis:6379"}}
		f(&c)
		return c
	}
	tests := []struct {
		name string
		path string
		cfg  Config
		want []string // nil: valid
	}{
		{"standalone", "api_keys.redis", with(func(*Config) {}), nil},
		{"unix socket path", "api_keys.redis", with(func(c *Config) { c.Addrs = []string{"/run/redis.sock"} }), nil},
		{"unix socket url", "api_keys.redis", with(func(c *Config) { c.Addrs = []string{"unix:///run/redis.sock"} }), nil},
		{"cluster", "api_keys.redis", with(func(c *Config) { c.Addrs = []string{"a:6379", "b:6379", "[::1]:6379"} }), nil},
		{"sentinel with db", "api_keys.redis", with(func(c *Config) {
			c.Addrs, c.MasterName, c.DB = []string{"s1:26379", "s2:26379"}, "main", 3
		}), nil},
		{"everything set", "api_keys.redis", with(func(c *Config) {
			c.Username, c.PasswordFile, c.TLS, c.CAFile, c.Timeout, c.PoolSize = "u", "/pw", true, "/ca.pem", 10*time.Second, 50
		}), nil},
		{"no addrs, path is the caller's", "rate_limits.redis", Config{}, []string{
			"rate_limits.redis.addrs: must list at least one address, e.g. [redis:6379]",
		}},
		{"bad addrs", "api_keys.redis", with(func(c *Config) { c.Addrs = []string{"redis", "redis://x:6379", "unix://rel.sock", "unix://"} }), []string{
			`api_keys.redis.addrs[0]: "redis" must be host:port, a socket path or unix:///path, e.g. redis:6379`,
			`api_keys.redis.addrs[1]: "redis://x:6379" must be host:port, a socket path or unix:///path, e.g. redis:6379`,
			`api_keys.redis.addrs[2]: "unix://rel.sock" must be an absolute socket path, e.g. unix:///run/redis.sock`,
			`api_keys.redis.addrs[3]: "unix://" must be an absolute socket path, e.g. unix:///run/redis.sock`,
			"api_keys.redis.addrs: a unix socket can only be used alone, for a standalone server",
		}},
		{"socket with sentinel", "x", with(func(c *Config) { c.Addrs, c.MasterName = []string{"/r.sock"}, "m" }), []string{
			"x.addrs: a unix socket can only be used alone, for a standalone server",
		}},
		{"everything else wrong", "rate_limits.redis", with(func(c *Config) {
			c.Addrs, c.DB, c.CAFile, c.Timeout, c.PoolSize = []string{"a:1", "b:2"}, 1, "ca.pem", -time.Second, -1
		}), []string{
			"rate_limits.redis.db: must be 0 for Redis Cluster (several addrs)",
			"rate_limits.redis.ca_file: requires tls: true",
			"rate_limits.redis.timeout: must be positive and at most 10s, e.g. 200ms",
			"rate_limits.redis.pool_size: must not be negative (0 means 10 per CPU), e.g. 50",
		}},
		{"timeout too long", "api_keys.redis", with(func(c *Config) { c.Timeout = 11 * time.Second }), []string{
			"api_keys.redis.timeout: must be positive and at most 10s, e.g. 200ms",
		}},
		{"negative db, tls on socket", "api_keys.redis", with(func(c *Config) { c.Addrs, c.DB, c.TLS = []string{"/r.sock"}, -1, true }), []string{
			"api_keys.redis.db: must not be negative, e.g. 0",
			"api_keys.redis.tls: cannot be used with a unix socket",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, lines(tt.cfg.Validate(tt.path))); diff != "" {
				t.Errorf("Validate(%q) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

// A caller can recognise the empty address list and add its own advice.
func TestConfig_Validate_NoAddrsIsRecognisable(t *testing.T) {
	errs := Config{}.Validate("rate_limits.redis")
	if len(errs) != 1 || !errors.Is(errs[0], ErrNoAddrs) {
		t.Fatalf("Validate = %v, want one error matching ErrNoAddrs", errs)
	}
	if errs := (Config{Addrs: []string{"bad"}}).Validate("p"); len(errs) != 1 || errors.Is(errs[0], ErrNoAddrs) {
		t.Errorf("a bad address matches ErrNoAddrs: %v", errs)
	}
}

func TestConfig_CallTimeoutAndMode(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		timeout time.Duration
		mode    string
	}{
		{"defaults", Config{Addrs: []string{"r:1"}}, DefaultTimeout, ModeStandalone},
		{"socket, own timeout", Config{Addrs: []string{"/r.sock"}, Timeout: time.Second}, time.Second, ModeStandalone},
		{"cluster", Config{Addrs: []string{"a:1", "b:1"}}, DefaultTimeout, ModeCluster},
		{"sentinel with one sentinel", Config{Addrs: []string{"s:26379"}, MasterName: "m"}, DefaultTimeout, ModeSentinel},
		{"sentinel with several", Config{Addrs: []string{"s:1", "t:1"}, MasterName: "m"}, DefaultTimeout, ModeSentinel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.CallTimeout(); got != tt.timeout {
				t.Errorf("CallTimeout() = %v, want %v", got, tt.timeout)
			}
			if got := tt.cfg.Mode(); got != tt.mode {
				t.Errorf("Mode() = %q, want %q", got, tt.mode)
			}
		})
	}
}

// The section decodes strictly with go.yaml.in/yaml/v3, durations included.
func TestConfig_DecodeYAML(t *testing.T) {
	src := `
addrs: [s1:26379, s2:26379]
master_name: main
username: extauthz
password_file: /etc/redis/pw
db: 2
tls: true
ca_file: /etc/redis/ca.pem
timeout: 250ms
pool_size: 20
`
	var got Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "main", Username: "extauthz", PasswordFile: "/etc/redis/pw",
		DB: 2, TLS: true, CAFile: "/etc/redis/ca.pem", Timeout: 250 * time.Millisecond, PoolSize: 20,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	dec = yaml.NewDecoder(strings.NewReader("adrs: [x:1]\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err == nil || !strings.Contains(err.Error(), "adrs") {
		t.Errorf("misspelled key: err = %v, want one naming it", err)
	}
}

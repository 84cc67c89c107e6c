package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{name: "empty section is valid", cfg: Config{}},
		{name: "full section is valid", cfg: Config{
			Redis:   &RedisConfig{Addrs: []string{"redis:6379"}},
			OnError: OnErrorDeny, Timeout: 50 * time.Millisecond, Key: KeyKeyID,
			Default: &Limit{Requests: 60, Per: time.Minute, Burst: 10},
			Roles:   map[string]Limit{"agent": {Requests: 10, Per: time.Minute}},
		}},
		{name: "unknown on_error", cfg: Config{OnError: "open"}, want: []string{
			`rate_limits.on_error: "open" must be allow (let requests through uncounted while Redis is down) or deny`,
		}},
		{name: "unknown key", cfg: Config{Key: "ip"}, want: []string{
			`rate_limits.key: "ip" must be subject, key_id or role`,
		}},
		{name: "timeout out of range", cfg: Config{Timeout: time.Minute}, want: []string{
			`rate_limits.timeout: 1m0s must be between 0s (default 100ms) and 10s, and below server.check_timeout, e.g. 100ms`,
		}},
		{name: "bad default and role limits, all reported", cfg: Config{
			Default: &Limit{Requests: 0, Per: 500 * time.Millisecond, Burst: -1},
			Roles:   map[string]Limit{"b": {Requests: 1, Per: 48 * time.Hour}, "a": {Requests: 2_000_000, Per: time.Minute}},
		}, want: []string{
			`rate_limits.default.requests: 0 must be between 1 and 1000000, e.g. 60`,
			`rate_limits.default.per: 500ms must be between 1s and 24h, e.g. 1m`,
			`rate_limits.default.burst: -1 must be between 0 (same as requests) and 1000000, e.g. 10`,
			`rate_limits.roles.a.requests: 2000000 must be between 1 and 1000000, e.g. 60`,
			`rate_limits.roles.b.per: 48h0m0s must be between 1s and 24h, e.g. 1m`,
		}},
		{name: "bad redis section", cfg: Config{Redis: &RedisConfig{Addrs: []string{"unix://rel.sock", "redis://x:1"}, CAFile: "ca.pem", DB: -1}}, want: []string{
			`rate_limits.redis.addrs[0]: "unix://rel.sock" must be an absolute socket path, e.g. unix:///run/redis.sock`,
			`rate_limits.redis.addrs[1]: "redis://x:1" must be host:port, a socket path or unix:///path, e.g. redis:6379`,
			`rate_limits.redis.addrs: a unix socket can only be used alone, for a standalone server`,
			`rate_limits.redis.db: must not be negative, e.g. 0`,
			`rate_limits.redis.db: must be 0 for Redis Cluster (several addrs)`,
			`rate_limits.redis.ca_file: requires tls: true`,
		}},
		{name: "empty redis section", cfg: Config{Redis: &RedisConfig{}}, want: []string{
			`rate_limits.redis.addrs: must list at least one address, e.g. [redis:6379] (or remove the section to use api_keys.redis)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, errLines(tt.cfg.Validate("rate_limits"))); diff != "" {
				t.Errorf("Validate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidatePolicy(t *testing.T) {
	known := func(r string) bool { return r == "agent" || r == "developer" }
	minute := Limit{Requests: 10, Per: time.Minute}
	tests := []struct {
		name   string
		cfg    Config
		routes []Route
		want   []string
	}{
		{name: "valid", cfg: Config{Roles: map[string]Limit{"agent": minute}}, routes: []Route{
			{Name: "health", Public: true},
			{Name: "chat", Limit: &RouteLimit{Limit: minute, Key: KeyRole, Roles: map[string]Limit{"developer": minute}}},
			{Name: "models", Limit: &RouteLimit{Disabled: true}},
			{Name: "embed", Limit: &RouteLimit{Key: KeyKeyID}},
		}},
		{name: "unknown roles", cfg: Config{Roles: map[string]Limit{"agnet": minute}}, routes: []Route{
			{Name: "chat", Limit: &RouteLimit{Roles: map[string]Limit{"dev": minute}}},
		}, want: []string{
			`rate_limits.roles.agnet: role "agnet" is not defined under roles: add it there or fix the name`,
			`routes[0].rate_limit.roles.dev: role "dev" is not defined under roles: add it there or fix the name`,
		}},
		{name: "public route with a limit", routes: []Route{
			{Name: "chat"}, {Name: "health", Public: true, Limit: &RouteLimit{Limit: minute}},
		}, want: []string{
			`routes[1].rate_limit: a public route has no identity to count: remove rate_limit or the public flag`,
		}},
		{name: "disabled with other fields", routes: []Route{
			{Name: "chat", Limit: &RouteLimit{Disabled: true, Limit: minute}},
		}, want: []string{
			`routes[0].rate_limit: disabled: true turns rate limiting off for the route: remove the other fields`,
		}},
		{name: "empty entry, bad key, bad limit", routes: []Route{
			{Name: "a", Limit: &RouteLimit{}},
			{Name: "b", Limit: &RouteLimit{Key: "ip"}},
			{Name: "c", Limit: &RouteLimit{Limit: Limit{Requests: 5}}},
		}, want: []string{
			`routes[0].rate_limit: set requests and per, key, roles, or disabled: true, e.g. {requests: 60, per: 1m}`,
			`routes[1].rate_limit.key: "ip" must be subject, key_id or role`,
			`routes[2].rate_limit.per: 0s must be between 1s and 24h, e.g. 1m`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, errLines(ValidatePolicy(tt.cfg, tt.routes, known))); diff != "" {
				t.Errorf("ValidatePolicy() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    Limit
		str     string
		wantErr string
	}{
		{in: "10/1m", want: Limit{Requests: 10, Per: time.Minute}, str: "10/1m"},
		{in: "600/1h,burst=20", want: Limit{Requests: 600, Per: time.Hour, Burst: 20}, str: "600/1h,burst=20"},
		{in: " 5 / 90s , burst=5", want: Limit{Requests: 5, Per: 90 * time.Second, Burst: 5}, str: "5/90s"},
		{in: "1/1500ms", want: Limit{Requests: 1, Per: 1500 * time.Millisecond}, str: "1/1.5s"},
		{in: "10", wantErr: `ratelimit: limit "10" must look like 10/1m or 10/1m,burst=5`},
		{in: "x/1m", wantErr: `ratelimit: limit "x/1m": requests must be a whole number`},
		{in: "10/soon", wantErr: `ratelimit: limit "10/soon": per must be a duration such as 1m`},
		{in: "10/1m,b=2", wantErr: `ratelimit: limit "10/1m,b=2": the option must be burst=<n>`},
		{in: "0/1ms", wantErr: "ratelimit: limit.requests: 0 must be between 1 and 1000000, e.g. 60\nlimit.per: 1ms must be between 1s and 24h, e.g. 1m"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseLimit(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseLimit(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String() = %q, want %q", got.String(), tt.str)
			}
			back, err := ParseLimit(got.String())
			if err != nil || back.normalized() != got.normalized() {
				t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

// The sections decode strictly from YAML as the config package reads them:
// durations as strings, the route's limit inline, unknown keys refused.
func TestConfig_DecodeYAML(t *testing.T) {
	type file struct {
		RateLimits *Config     `yaml:"rate_limits"`
		RateLimit  *RouteLimit `yaml:"rate_limit"`
	}
	decode := func(s string) (file, error) {
		var f file
		dec := yaml.NewDecoder(strings.NewReader(s))
		dec.KnownFields(true)
		err := dec.Decode(&f)
		return f, err
	}
	f, err := decode(`
rate_limits:
  redis: {addrs: [redis:6379], timeout: 150ms}
  on_error: deny
  timeout: 50ms
  key: key_id
  default: {requests: 60, per: 1m, burst: 10}
  roles:
    agent: {requests: 10, per: 1m}
rate_limit:
  requests: 600
  per: 1h
  key: role
  roles: {agent: {requests: 60, per: 1m}}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := file{
		RateLimits: &Config{
			Redis:   &RedisConfig{Addrs: []string{"redis:6379"}, Timeout: 150 * time.Millisecond},
			OnError: OnErrorDeny, Timeout: 50 * time.Millisecond, Key: KeyKeyID,
			Default: &Limit{Requests: 60, Per: time.Minute, Burst: 10},
			Roles:   map[string]Limit{"agent": {Requests: 10, Per: time.Minute}},
		},
		RateLimit: &RouteLimit{Limit: Limit{Requests: 600, Per: time.Hour}, Key: KeyRole, Roles: map[string]Limit{"agent": {Requests: 60, Per: time.Minute}}},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	if _, err := decode("rate_limit: {request: 10, per: 1m}"); err == nil || !strings.Contains(err.Error(), "field request not found") {
		t.Errorf("misspelled key: %v", err)
	}
}

package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/ratelimit"
)

// TestLoad_LLMGateway loads the README's worked example: rate limits take
// their Redis from api_keys.redis, and the engine gets them with the body
// limit.
func TestLoad_LLMGateway(t *testing.T) {
	cfg, err := Load("testdata/llm_gateway.yaml")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	rc := cfg.RateLimitConfig()
	if rc == nil || rc.Redis == nil {
		t.Fatalf("RateLimitConfig = %+v, want the api_keys.redis connection", rc)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:6379"}, rc.Redis.Addrs); diff != "" {
		t.Errorf("rate_limits.redis.addrs (-want +got):\n%s", diff)
	}
	if rc.Redis == cfg.APIKeys.Redis {
		t.Error("RateLimitConfig shares the api_keys.redis pointer: a change to one would change the other")
	}
	if diff := cmp.Diff(&ratelimit.Limit{Requests: 120, Per: time.Minute, Burst: 20}, rc.Default); diff != "" {
		t.Errorf("rate_limits.default (-want +got):\n%s", diff)
	}
	ac := cfg.Authz()
	if ac.RateLimits == nil || ac.LLMMaxBodyBytes != 4<<20 {
		t.Errorf("Authz() RateLimits=%v LLMMaxBodyBytes=%d", ac.RateLimits, ac.LLMMaxBodyBytes)
	}
	r := cfg.Routes[2]
	if !r.Require.Model || r.ModelHeader != "x-model" || r.ModelHeaderSetBy != "envoy" || r.RateLimit == nil || r.RateLimit.Requests != 600 {
		t.Errorf("routes[2] = %+v", r)
	}
}

func TestRateLimitConfig_Off(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.RateLimitConfig(); rc != nil {
		t.Errorf("RateLimitConfig = %+v, want nil without rate_limits or a route's rate_limit", rc)
	}
}

// TestLoad_LLMMistakes: one fixture per mistake, with the exact message.
func TestLoad_LLMMistakes(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"ratelimit_without_redis.yaml", []string{
			"rate_limits.redis: rate limits need Redis to share their counters: set rate_limits.redis or api_keys.redis",
		}},
		{"ratelimit_timeout.yaml", []string{
			"rate_limits.timeout: 100ms must be below server.check_timeout (100ms), or a slow Redis turns every check into a timeout: e.g. 100ms with check_timeout 300ms",
		}},
		{"ratelimit_mistakes.yaml", []string{
			`routes[1].name: "default_route" is reserved (it labels checks that matched no route): choose another name`,
			`rate_limits.on_error: "maybe" must be allow (let requests through uncounted while Redis is down) or deny`,
			`rate_limits.roles.ghost: role "ghost" is not defined under roles: add it there or fix the name`,
			"routes[0].rate_limit: a public route has no identity to count: remove rate_limit or the public flag",
		}},
		{"model_without_permission.yaml", []string{
			"routes[0].require.model: no role under roles grants a model:<name> permission, so every request would be refused: grant e.g. model:llama-3* to a role",
			"routes[1].model_header: is only read with require.model: true",
			`routes[1].model_header: "X-Model" must be a lower-case header name that is not a credential, content or x-envoy- header, e.g. x-model`,
			"routes[1].model_header_set_by: required with model_header: name the proxy that sets X-Model on every request, overwriting what the client sent (e.g. model_header_set_by: envoy), or remove model_header: a header the client sets is not trusted",
			`routes[3].model_header_set_by: "Envoy" must name a proxy in lower case, e.g. envoy`,
			"routes[2]: a public route has no identity to check models or tools against: remove require.model, require.tools and model_header, or the public flag",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatal("Load = nil, want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tt.want {
				found := false
				for _, l := range lines {
					if strings.HasSuffix(l, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error line ends with %q:\n%s", w, err)
				}
			}
		})
	}
}

// TestValidate_ToolsWithoutPermissionWarns: require.tools with no tool:
// permission refuses every request with tools, which may be intended.
func TestValidate_ToolsWithoutPermissionWarns(t *testing.T) {
	cfg, err := Parse([]byte(`listen: {grpc: 127.0.0.1:1}
roles: {dev: [chat:invoke, "model:*"]}
role_mapping: {default_roles: [dev]}
routes: [{name: chat, match: {path: /c}, require: {permissions: [chat:invoke], model: true, tools: true}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := "routes[0].require.tools: no role under roles grants a tool:<name> permission: every request that declares a tool is refused"
	found := false
	for _, w := range cfg.Warnings() {
		found = found || w == want
	}
	if !found {
		t.Errorf("warnings %q lack %q", cfg.Warnings(), want)
	}
}

// TestValidate_RateLimitsSectionWithoutRedis: the section alone turns rate
// limits on (per-key limits), so it needs Redis too.
func TestValidate_RateLimitsSectionWithoutRedis(t *testing.T) {
	_, err := Parse([]byte(`listen: {grpc: 127.0.0.1:1}
roles: {dev: [chat:invoke]}
role_mapping: {default_roles: [dev]}
rate_limits: {on_error: deny}
routes: [{name: chat, match: {path: /c}, require: {permissions: [chat:invoke]}}]
`))
	if err == nil || !strings.Contains(err.Error(), "rate_limits.redis: rate limits need Redis") {
		t.Fatalf("Parse = %v, want the missing-Redis error", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Errorf("error is not a joined list: %T", err)
	}
}

func TestValidateLLMPermissions(t *testing.T) {
	both := authz.LLMRoute{RequireModel: true, RequireTools: true}
	tests := []struct {
		name     string
		roles    map[string][]string
		wantErr  string
		warnings []string
	}{
		{name: "exact grants", roles: map[string][]string{"a": {"model:llama-3-8b", "tool:get_weather"}}},
		{name: "globs", roles: map[string][]string{"a": {"model:llama-3*"}, "b": {"tool:*"}}},
		{name: "wildcard", roles: map[string][]string{"admin": {"*"}}},
		{name: "a glob that reaches model: from above", roles: map[string][]string{"a": {"mod*", "t*"}}},
		{name: "nothing granted", roles: map[string][]string{"a": {"chat:invoke", "models:list", "model:", "tools:x"}},
			wantErr:  "routes[0].require.model: no role under roles grants a model:<name> permission, so every request would be refused: grant e.g. model:llama-3* to a role",
			warnings: []string{"routes[0].require.tools: no role under roles grants a tool:<name> permission: every request that declares a tool is refused"}},
		{name: "glob of another prefix", roles: map[string][]string{"a": {"models:*", "tool:x"}},
			wantErr: "routes[0].require.model: no role under roles grants a model:<name> permission, so every request would be refused: grant e.g. model:llama-3* to a role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := validateLLMPermissions("routes[0]", both, tt.roles)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
			if diff := cmp.Diff(tt.warnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

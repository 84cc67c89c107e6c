package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicy_Resolve(t *testing.T) {
	perMin := func(n int) Limit { return Limit{Requests: n, Per: time.Minute} }
	cfg := Config{
		Default: &Limit{Requests: 60, Per: time.Minute, Burst: 10},
		Roles: map[string]Limit{
			"agent":     perMin(10),
			"developer": perMin(100),
			"admin":     {Requests: 6000, Per: time.Hour}, // 100/min, like developer
		},
	}
	routes := []Route{
		{Name: "health", Public: true},
		{Name: "chat", Limit: &RouteLimit{Limit: perMin(30), Roles: map[string]Limit{"agent": perMin(5)}}},
		{Name: "embed", Limit: &RouteLimit{Key: KeyKeyID}},
		{Name: "models", Limit: &RouteLimit{Disabled: true}},
		{Name: "shared", Limit: &RouteLimit{Key: KeyRole}},
		{Name: "plain"},
	}
	p, err := NewPolicy(cfg, routes)
	if err != nil {
		t.Fatal(err)
	}
	alice := Caller{Subject: "alice", Issuer: "https://issuer.test", Roles: []string{"viewer"}}
	agentKey := Caller{Subject: "bot-owner", KeyID: "key_agent0000001", Roles: []string{"agent", "viewer"}}
	ownKey := Caller{Subject: "bob", KeyID: "key_bob000000001", Roles: []string{"agent"}, KeyLimit: &Limit{Requests: 1000, Per: time.Hour}}
	dev := Caller{Subject: "dora", Roles: []string{"admin", "developer"}}

	tests := []struct {
		name   string
		route  string
		caller Caller
		want   Rule
		ok     bool
	}{
		{name: "public route is never limited", route: "health", caller: alice},
		{name: "disabled route is never limited", route: "models", caller: ownKey},
		{name: "route limit for a caller without role limits", route: "chat", caller: alice, ok: true,
			want: Rule{Route: "chat", Key: "extauthz:rl:{s:https://issuer.test|alice}:chat", Limit: Limit{30, time.Minute, 30}, Source: SourceRoute}},
		{name: "route's per-role limit beats the global role limit", route: "chat", caller: agentKey, ok: true,
			want: Rule{Route: "chat", Key: "extauthz:rl:{s:bot-owner}:chat", Limit: Limit{5, time.Minute, 5}, Source: SourceRouteRole}},
		{name: "global role limit beats the default", route: "plain", caller: agentKey, ok: true,
			want: Rule{Route: "plain", Key: "extauthz:rl:{s:bot-owner}:plain", Limit: Limit{10, time.Minute, 10}, Source: SourceRole}},
		{name: "default for a caller without role limits", route: "plain", caller: alice, ok: true,
			want: Rule{Route: "plain", Key: "extauthz:rl:{s:https://issuer.test|alice}:plain", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
		{name: "the key's own limit beats everything and counts per key", route: "chat", caller: ownKey, ok: true,
			want: Rule{Route: "chat", Key: "extauthz:rl:{k:key_bob000000001}:chat", Limit: Limit{1000, time.Hour, 1000}, Source: SourceKey}},
		{name: "most generous role wins (same rate, larger burst)", route: "plain", caller: dev, ok: true,
			want: Rule{Route: "plain", Key: "extauthz:rl:{s:dora}:plain", Limit: Limit{6000, time.Hour, 6000}, Source: SourceRole}},
		{name: "key_id counts per key", route: "embed", caller: agentKey, ok: true,
			want: Rule{Route: "embed", Key: "extauthz:rl:{k:key_agent0000001}:embed", Limit: Limit{10, time.Minute, 10}, Source: SourceRole}},
		{name: "key_id falls back to the subject for a JWT", route: "embed", caller: alice, ok: true,
			want: Rule{Route: "embed", Key: "extauthz:rl:{s:https://issuer.test|alice}:embed", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
		{name: "role counts per role", route: "shared", caller: agentKey, ok: true,
			want: Rule{Route: "shared", Key: "extauthz:rl:{r:agent}:shared", Limit: Limit{10, time.Minute, 10}, Source: SourceRole}},
		{name: "role falls back to the subject when the limit is not a role's", route: "shared", caller: alice, ok: true,
			want: Rule{Route: "shared", Key: "extauthz:rl:{s:https://issuer.test|alice}:shared", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
		{name: "default route", route: "", caller: alice, ok: true,
			want: Rule{Route: "", Key: "extauthz:rl:{s:https://issuer.test|alice}:", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
		{name: "hostile subject cannot break out of the hash tag", route: "plain", caller: Caller{Subject: "x}:chat {y|%\n"}, ok: true,
			want: Rule{Route: "plain", Key: "extauthz:rl:{s:x%7D:chat%20%7By%7C%25%0A}:plain", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
		{name: "API key owner that looks like issuer|subject is another counter", route: "plain", caller: Caller{Subject: "https://issuer.test|alice"}, ok: true,
			want: Rule{Route: "plain", Key: "extauthz:rl:{s:https://issuer.test%7Calice}:plain", Limit: Limit{60, time.Minute, 10}, Source: SourceDefault}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := p.Resolve(tt.route, tt.caller)
			if ok != tt.ok {
				t.Fatalf("Resolve ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}

	if diff := cmp.Diff([]string{"chat", "embed", "shared", "plain"}, p.Routes()); diff != "" {
		t.Errorf("Routes() (-want +got):\n%s", diff)
	}
}

func TestPolicy_Resolve_NoLimitConfigured(t *testing.T) {
	p, err := NewPolicy(Config{}, []Route{{Name: "chat"}})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := p.Resolve("chat", Caller{Subject: "alice", Roles: []string{"agent"}}); ok {
		t.Errorf("Resolve without any limit = %#v, want none", r)
	}
	// Only the key's own limit applies.
	r, ok := p.Resolve("chat", Caller{Subject: "a", KeyID: "key_x", KeyLimit: &Limit{Requests: 3, Per: time.Second}})
	if !ok || r.Key != "extauthz:rl:{k:key_x}:chat" || r.Limit.Burst != 3 {
		t.Errorf("Resolve with a key limit = %#v, %v", r, ok)
	}
}

func TestPolicy_Resolve_LongSubjectIsHashed(t *testing.T) {
	p, err := NewPolicy(Config{Default: &Limit{Requests: 1, Per: time.Second}}, []Route{{Name: "chat"}})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 5000)
	r1, _ := p.Resolve("chat", Caller{Subject: long})
	r2, _ := p.Resolve("chat", Caller{Subject: long + "b"})
	if len(r1.Key) > 100 || !strings.HasPrefix(r1.Key, "extauthz:rl:{s#") || r1.Key == r2.Key {
		t.Errorf("long subjects: %q and %q, want short distinct hashed keys", r1.Key, r2.Key)
	}
}

// What NewPolicy trusts (it no longer checks again) is refused by
// Config.Validate and ValidatePolicy, which config.Load runs on every file.
func TestValidate_RefusesInvalidPolicyConfig(t *testing.T) {
	err := Config{OnError: "maybe"}.Validate("rate_limits")
	if err == nil || !strings.Contains(err.Error(), "rate_limits.on_error") {
		t.Errorf("Validate = %v, want the on_error problem", err)
	}
	err = ValidatePolicy(Config{}, []Route{{Name: "x", Limit: &RouteLimit{}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "routes[0].rate_limit") {
		t.Errorf("ValidatePolicy = %v, want the route problem", err)
	}
}

// TestPolicy_MintedKeysShareTheMintingBudget proves that keys minted by a
// JWT caller (self-service, token exchange: their Issuer is set) spend the
// budget of the minting identity, issuer and subject, under every key
// setting, so 50 minted keys are never 50 budgets; and that the same
// subject of two issuers has two budgets.
func TestPolicy_MintedKeysShareTheMintingBudget(t *testing.T) {
	cfg := Config{Default: &Limit{Requests: 60, Per: time.Minute}}
	routes := []Route{
		{Name: "by-subject", Limit: &RouteLimit{Key: KeySubject}},
		{Name: "by-key", Limit: &RouteLimit{Key: KeyKeyID}},
		{Name: "by-role", Limit: &RouteLimit{Key: KeyRole}},
	}
	p, err := NewPolicy(cfg, routes)
	if err != nil {
		t.Fatal(err)
	}
	const issA, issB = "https://a.example", "https://b.example"
	jwtA := Caller{Subject: "alice", Issuer: issA}
	mintedA1 := Caller{Subject: "alice", Issuer: issA, KeyID: "key_minted00001"}
	mintedA2 := Caller{Subject: "alice", Issuer: issA, KeyID: "key_minted00002"}
	jwtB := Caller{Subject: "alice", Issuer: issB}
	cliKey := Caller{Subject: "alice", KeyID: "key_cli00000001"}
	for _, route := range []string{"by-subject", "by-key", "by-role"} {
		t.Run(route, func(t *testing.T) {
			key := func(c Caller) string {
				r, ok := p.Resolve(route, c)
				if !ok {
					t.Fatalf("no rule for %+v", c)
				}
				return r.Key
			}
			want := "extauthz:rl:{s:https://a.example|alice}:" + route
			got := []string{key(jwtA), key(mintedA1), key(mintedA2)}
			if diff := cmp.Diff([]string{want, want, want}, got); diff != "" {
				t.Errorf("a JWT caller and its minted keys (-want +got):\n%s", diff)
			}
			if k := key(jwtB); k == want {
				t.Errorf("provider B's alice shares provider A's alice's budget %q", k)
			}
			if k := key(cliKey); k == want {
				t.Errorf("the CLI namespace's alice shares provider A's alice's budget %q", k)
			}
		})
	}
}

package rolemap

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testRoles = map[string][]string{
	"viewer":    {"models:list"},
	"developer": {"models:list", "chat:invoke"},
	"admin":     {"*"},
	"llama":     {"model:llama-3*"},
	"agent":     {"tool:search", "model:*"},
}

var testMapping = Mapping{
	Rules: []Rule{
		{Groups: []string{"eng", "ml-team"}, Roles: []string{"developer"}},
		{Groups: []string{"platform-admins"}, Roles: []string{"admin"}},
		{Groups: []string{"ml-team"}, Roles: []string{"llama", "developer"}},
	},
	DefaultRoles: []string{"viewer"},
}

func newTestMapper(t *testing.T) *Mapper {
	t.Helper()
	m, err := New(testMapping, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMapper_Roles(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		name           string
		groups, direct []string
		want           []string
	}{
		{"no groups gets the defaults", nil, nil, []string{"viewer"}},
		{"unknown group gets the defaults only", []string{"sales"}, nil, []string{"viewer"}},
		{"one rule", []string{"eng"}, nil, []string{"developer", "viewer"}},
		{"two rules for one group are merged and de-duplicated", []string{"ml-team", "eng"}, nil, []string{"developer", "llama", "viewer"}},
		{"direct roles are added and sorted", []string{"eng"}, []string{"agent", "viewer"}, []string{"agent", "developer", "viewer"}},
		{"group names are case-sensitive", []string{"ENG"}, nil, []string{"viewer"}},
		{"undefined direct roles are dropped", nil, []string{"nosuchrole", "viewer,admin", "admin\n", "agent"}, []string{"agent", "viewer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, m.Roles(tt.groups, tt.direct)); diff != "" {
				t.Errorf("Roles(%v, %v) mismatch (-want +got):\n%s", tt.groups, tt.direct, diff)
			}
		})
	}
}

func TestMapper_RolesWithoutDefaultsIsEmpty(t *testing.T) {
	m, err := New(Mapping{Rules: testMapping.Rules}, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Roles([]string{"nobody"}, nil); len(got) != 0 {
		t.Errorf("Roles = %v, want none", got)
	}
}

func TestMapper_Permits(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		name  string
		roles []string
		need  []string
		want  bool
	}{
		{"nothing needed", nil, nil, true},
		{"exact permission", []string{"viewer"}, []string{"models:list"}, true},
		{"missing permission", []string{"viewer"}, []string{"chat:invoke"}, false},
		{"all permissions needed, one role has both", []string{"developer"}, []string{"models:list", "chat:invoke"}, true},
		{"all permissions needed, spread over roles", []string{"viewer", "agent"}, []string{"models:list", "tool:search"}, true},
		{"all permissions needed, one missing", []string{"viewer"}, []string{"models:list", "chat:invoke"}, false},
		{"star grants everything", []string{"admin"}, []string{"anything:at-all"}, true},
		{"glob prefix matches", []string{"llama"}, []string{"model:llama-3.1-70b"}, true},
		{"glob does not match another model", []string{"llama"}, []string{"model:mistral-7b"}, false},
		{"glob star crosses slashes", []string{"agent"}, []string{"model:meta-llama/Llama-3"}, true},
		{"unknown role grants nothing", []string{"ghost"}, []string{"models:list"}, false},
		{"permission names are exact, not prefixes", []string{"viewer"}, []string{"models:lis"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Permits(tt.roles, tt.need); got != tt.want {
				t.Errorf("Permits(%v, %v) = %v, want %v", tt.roles, tt.need, got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, p string
		want       bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"*", "", true},
		{"*", "anything", true},
		{"model:*", "model:", true},
		{"model:*", "model", false},
		{"model:llama-3*", "model:llama-3", true},
		{"model:llama-3*", "model:llama-2", false},
		{"*:invoke", "chat:invoke", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.p, func(t *testing.T) {
			if got := Match(tt.pattern, tt.p); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.p, got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mapping Mapping
		roles   map[string][]string
		want    []string // substrings, each must appear
	}{
		{
			name:    "rule names an undefined role",
			mapping: Mapping{Rules: []Rule{{Groups: []string{"eng"}, Roles: []string{"develper"}}}},
			roles:   testRoles,
			want:    []string{`role_mapping.rules[0].roles[0]: role "develper" is not defined under roles`},
		},
		{
			name:    "default role undefined",
			mapping: Mapping{DefaultRoles: []string{"guest"}},
			roles:   testRoles,
			want:    []string{`role_mapping.default_roles[0]: role "guest" is not defined`},
		},
		{
			name:    "empty rule lists every problem",
			mapping: Mapping{Rules: []Rule{{}}},
			roles:   testRoles,
			want:    []string{"role_mapping.rules[0].groups: must list at least one group", "role_mapping.rules[0].roles: must list at least one role"},
		},
		{
			name:  "role name with a comma",
			roles: map[string][]string{"viewer,admin": {"models:list"}},
			want:  []string{`roles: role name "viewer,admin" must not contain a comma, white space or a control character`},
		},
		{
			name:  "empty permission",
			roles: map[string][]string{"x": {""}},
			want:  []string{"roles.x[0]: permission must not be empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.mapping, tt.roles)
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if err := Validate(testMapping, testRoles); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func BenchmarkMapper_Roles(b *testing.B) {
	m, _ := New(testMapping, testRoles)
	groups := []string{"eng", "ml-team", "sales"}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Roles(groups, nil)
	}
}

func BenchmarkMapper_Permits(b *testing.B) {
	m, _ := New(testMapping, testRoles)
	roles := []string{"developer", "llama", "viewer"}
	need := []string{"chat:invoke", "model:llama-3.1-8b"}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Permits(roles, need)
	}
}

// Package rolemap turns an identity's groups into roles and roles into
// permissions. It owns the `roles` and `role_mapping` sections of the
// configuration and nothing else: it does no I/O, logs nothing and exports no
// metrics, so a Mapper is cheap to build on every config reload and safe to
// share between goroutines.
package rolemap

import (
	"slices"
	"strings"
)

// Wildcard is the permission that grants every permission.
const Wildcard = "*"

// Mapper answers which roles a set of groups earns and whether a set of roles
// holds a set of permissions. All of its tables are built once by New.
type Mapper struct {
	byGroup  map[string][]string
	defaults []string
	perms    map[string]grant
	known    map[string]bool
}

// grant is what one role permits: every permission, a set of exact names, and
// a list of glob patterns (model:llama-3*).
type grant struct {
	all   bool
	exact map[string]struct{}
	globs []string
}

// New builds a Mapper from the role mapping and the `roles` table (role name
// to permissions). It fails on a rule or default that names a role missing
// from roles, and on a malformed permission pattern.
func New(m Mapping, roles Roles) (*Mapper, error) {
	if err := Validate(m, roles); err != nil {
		return nil, err
	}
	mp := &Mapper{
		byGroup: make(map[string][]string),
		perms:   make(map[string]grant, len(roles)),
		known:   make(map[string]bool, len(roles)),
	}
	for role, perms := range roles {
		g := grant{exact: make(map[string]struct{}, len(perms))}
		for _, p := range perms {
			switch {
			case p == Wildcard:
				g.all = true
			case isGlob(p):
				g.globs = append(g.globs, p)
			default:
				g.exact[p] = struct{}{}
			}
		}
		mp.perms[role] = g
		mp.known[role] = true
	}
	for _, r := range m.Rules {
		for _, grp := range r.Groups {
			mp.byGroup[grp] = appendUnique(mp.byGroup[grp], r.Roles...)
		}
	}
	mp.defaults = sortedUnique(m.DefaultRoles)
	return mp, nil
}

// Roles returns the sorted, de-duplicated roles earned by groups, plus the
// roles an identity carries directly (an API key's roles) that are defined in
// the roles table, and the default roles. A direct role that is not defined
// is dropped: a stored record is data, and "viewer,admin" or an unknown name
// must not reach the upstream's x-auth-roles (role names in the table are
// validated to be safe list items). It never returns nil for an identity that
// has a default role.
func (m *Mapper) Roles(groups, direct []string) []string {
	n := len(m.defaults) + len(direct)
	for _, g := range groups {
		n += len(m.byGroup[g])
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	out = append(out, m.defaults...)
	for _, r := range direct {
		if m.known[r] {
			out = append(out, r)
		}
	}
	for _, g := range groups {
		out = append(out, m.byGroup[g]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Known reports whether role is defined in the roles table.
func (m *Mapper) Known(role string) bool { return m.known[role] }

// Reachable reports whether some rule or the default roles can produce role.
// Roles carried directly by API keys are not counted.
func (m *Mapper) Reachable(role string) bool {
	if slices.Contains(m.defaults, role) {
		return true
	}
	for _, rs := range m.byGroup {
		if slices.Contains(rs, role) {
			return true
		}
	}
	return false
}

// HasAnyRole reports whether roles and want share a role.
func HasAnyRole(roles, want []string) bool {
	for _, w := range want {
		if slices.Contains(roles, w) {
			return true
		}
	}
	return false
}

// Permits reports whether the roles together hold every permission in need.
// An empty need is always permitted.
func (m *Mapper) Permits(roles, need []string) bool {
	for _, p := range need {
		if !m.permits(roles, p) {
			return false
		}
	}
	return true
}

// Permit reports whether the roles together hold the permission p.
func (m *Mapper) permits(roles []string, p string) bool {
	for _, r := range roles {
		g, ok := m.perms[r]
		if !ok {
			continue
		}
		if g.all {
			return true
		}
		if _, ok := g.exact[p]; ok {
			return true
		}
		for _, pat := range g.globs {
			if Match(pat, p) {
				return true
			}
		}
	}
	return false
}

func isGlob(p string) bool { return strings.Contains(p, "*") }

// Match reports whether the permission p matches pattern, in which each *
// stands for any run of characters (including none, and including '/' and
// ':'), so "model:llama-3*" matches "model:llama-3.1-70b" and "model:*"
// matches every model. There are no other special characters.
func Match(pattern, p string) bool {
	// Iterative wildcard matching with single-star backtracking: linear in
	// practice and never exponential.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(p) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == p[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

func appendUnique(dst []string, vals ...string) []string {
	for _, v := range vals {
		if !slices.Contains(dst, v) {
			dst = append(dst, v)
		}
	}
	return dst
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

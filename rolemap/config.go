package rolemap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Roles is the `roles` section of the configuration: each role's name and
// the permissions it grants (exact names, globs such as model:llama-3*, or
// the Wildcard).
type Roles map[string][]string

// Known reports whether role is defined.
func (r Roles) Known(role string) bool {
	_, ok := r[role]
	return ok
}

// Validate reports every problem of the roles section at path, each as the
// key's path and the rule it breaks, joined with errors.Join, in role-name
// order.
func (r Roles) Validate(path string) error {
	var errs []error
	names := make([]string, 0, len(r))
	for role := range r {
		names = append(names, role)
	}
	slices.Sort(names)
	for _, role := range names {
		if role == "" {
			errs = append(errs, fmt.Errorf("%s: a role name must not be empty", path))
		} else if strings.ContainsFunc(role, func(r rune) bool { return r == ',' || r <= ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s: role name %q must not contain a comma, white space or a control character (it travels in the comma-separated x-auth-roles header)", path, role))
		}
		for i, p := range r[role] {
			if p == "" {
				errs = append(errs, fmt.Errorf("%s.%s[%d]: permission must not be empty", path, role, i))
				continue
			}
			if strings.ContainsAny(p, " \t\r\n") {
				errs = append(errs, fmt.Errorf("%s.%s[%d]: %q must not contain white space", path, role, i, p))
			}
		}
	}
	return errors.Join(errs...)
}

// Rule maps membership in any of Groups to all of Roles.
type Rule struct {
	Groups []string `yaml:"groups"`
	Roles  []string `yaml:"roles"`
}

// Mapping is the `role_mapping` section of the configuration.
type Mapping struct {
	Rules        []Rule   `yaml:"rules"`
	DefaultRoles []string `yaml:"default_roles"`
}

// Validate reports every problem of the role_mapping section at path, each
// as the key's path and the rule it breaks: a rule without groups or roles,
// or a role that roles does not define.
func (m Mapping) Validate(path string, roles Roles) error {
	var errs []error
	for i, r := range m.Rules {
		if len(r.Groups) == 0 {
			errs = append(errs, fmt.Errorf("%s.rules[%d].groups: must list at least one group", path, i))
		}
		if len(r.Roles) == 0 {
			errs = append(errs, fmt.Errorf("%s.rules[%d].roles: must list at least one role", path, i))
		}
		for j, role := range r.Roles {
			if !roles.Known(role) {
				errs = append(errs, fmt.Errorf("%s.rules[%d].roles[%d]: role %q is not defined under roles: add it there or fix the name", path, i, j, role))
			}
		}
	}
	for i, role := range m.DefaultRoles {
		if !roles.Known(role) {
			errs = append(errs, fmt.Errorf("%s.default_roles[%d]: role %q is not defined under roles: add it there or fix the name", path, i, role))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the roles and role_mapping sections (at
// their top-level paths).
func Validate(m Mapping, roles Roles) error {
	return errors.Join(roles.Validate("roles"), m.Validate("role_mapping", roles))
}

package config

import (
	"fmt"
	"strings"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/rolemap"
)

// validateLLMPermissions checks that the roles table can ever satisfy a
// route's LLM policy. With require.model, some role must grant a model
// permission (model:<name>, a glob such as model:llama-3*, or *); otherwise
// every request would be refused, which is an error. With require.tools and
// no role granting a tool permission, every request that declares a tool is
// refused: that may be the intent, so it is a warning.
func validateLLMPermissions(path string, p authz.LLMRoute, roles rolemap.Roles) (warnings []string, err error) {
	if p.RequireModel && !grantsPrefix(roles, authz.ModelPermissionPrefix) {
		err = fmt.Errorf("%s.require.model: no role under roles grants a %s<name> permission, so every request would be refused: grant e.g. model:llama-3* to a role", path, authz.ModelPermissionPrefix)
	}
	if p.RequireTools && !grantsPrefix(roles, authz.ToolPermissionPrefix) {
		warnings = append(warnings, fmt.Sprintf("%s.require.tools: no role under roles grants a %s<name> permission: every request that declares a tool is refused", path, authz.ToolPermissionPrefix))
	}
	return warnings, err
}

// grantsPrefix reports whether some role holds a permission that matches
// prefix+<name> for some non-empty name: "*", "model:x", "model:llama-3*",
// even "mod*".
func grantsPrefix(roles rolemap.Roles, prefix string) bool {
	for _, perms := range roles {
		for _, perm := range perms {
			if canMatchPrefix(perm, prefix) {
				return true
			}
		}
	}
	return false
}

func canMatchPrefix(perm, prefix string) bool {
	star := strings.IndexByte(perm, '*')
	if star < 0 {
		return len(perm) > len(prefix) && strings.HasPrefix(perm, prefix)
	}
	// Every name the pattern matches starts with its literal part.
	lit := perm[:star]
	return strings.HasPrefix(prefix, lit) || strings.HasPrefix(lit, prefix)
}

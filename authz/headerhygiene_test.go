package authz

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEngine_RemovesEverySpellingOfIdentityHeaders proves that a client
// header an upstream may read as an identity or credential header is
// removed whatever its spelling: CGI, WSGI and Rack upstreams (and proxies
// configured to accept them) read x_auth_subject as x-auth-subject, and a
// header-map key need not be lower-case outside Envoy. Headers that only
// look alike stay.
func TestEngine_RemovesEverySpellingOfIdentityHeaders(t *testing.T) {
	forged := []string{
		"x_auth_subject", "mallory",
		"x_auth_roles", "admin",
		"x-auth_groups", "platform-admins",
		"X_AUTH_KEY_ID", "forged",
		"x_auth_anything", "evil",
		"x_auth_email", "ceo@example.com",
		"x_api_key", "ek_someone_elses",
		// Not identity headers: kept.
		"x_request_id", "r1",
		"x-authority", "kept",
		"x_auth", "kept",
	}
	tests := []struct {
		name       string
		mut        func(*Config)
		req        *Request
		wantCode   Code
		wantRemove []string
	}{
		{
			name:     "allowed JWT: underscore and upper-case spellings removed, the set ones overwritten",
			req:      req("POST", "/v1/chat/completions", append([]string{"authorization", "Bearer " + jwtAlice, "x-auth-subject", "mallory", "X-Auth-Roles", "admin"}, forged...)...),
			wantCode: Allowed,
			// x-auth-subject and X-Auth-Roles are overwritten by the
			// decision's own values (Envoy matches names case-insensitively);
			// every other spelling goes.
			wantRemove: []string{"X_AUTH_KEY_ID", "authorization", "x-auth_groups", "x_api_key", "x_auth_anything", "x_auth_email", "x_auth_roles", "x_auth_subject"},
		},
		{
			name:       "public route: every spelling removed",
			req:        req("GET", "/healthz", forged...),
			wantCode:   Allowed,
			wantRemove: []string{"X_AUTH_KEY_ID", "x-auth_groups", "x_api_key", "x_auth_anything", "x_auth_email", "x_auth_roles", "x_auth_subject"},
		},
		{
			name: "claims_to_headers name outside the prefix, spelt with underscores",
			mut: func(c *Config) {
				c.ClaimHeaders = []string{"x-user-email"}
				c.Headers.StripCredentials = false
			},
			req:        req("GET", "/healthz", "x_user_email", "ceo@example.com", "X-User-Email", "ceo@example.com", "x-user-emails", "kept"),
			wantCode:   Allowed,
			wantRemove: []string{"X-User-Email", "x_user_email"},
		},
		{
			name: "without strip_credentials the credential headers stay",
			mut:  func(c *Config) { c.Headers.StripCredentials = false },
			req:  req("GET", "/v1/models", "authorization", "Bearer "+jwtBob, "x_api_key", "ek_x", "x_auth_subject", "mallory"),
			// x_auth_subject still goes.
			wantCode:   Allowed,
			wantRemove: []string{"x_auth_subject"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, tt.mut)
			d := e.Decide(context.Background(), tt.req)
			if d.Code != tt.wantCode {
				t.Fatalf("Decide = %v (%s), want %v", d.Code, d.Reason, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantRemove, d.Remove); diff != "" {
				t.Errorf("Remove (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidHeaderName_RefusesReservedNames proves that the header names
// extauthz accepts in its configuration (claims_to_headers, model_header)
// exclude every hop-by-hop, credential, framing and routing header, in any
// spelling.
func TestValidHeaderName_RefusesReservedNames(t *testing.T) {
	for name, want := range map[string]bool{
		"x-auth-email":        true,
		"x-model":             true,
		"x-tenant":            true,
		"":                    false,
		":path":               false,
		"X-Auth-Email":        false,
		"connection":          false,
		"trailers":            false,
		"upgrade":             false,
		"te":                  false,
		"proxy-authenticate":  false,
		"proxy-authorization": false,
		"x_api_key":           false,
		"x-forwarded-for":     false,
		"x_forwarded_user":    false,
		"x-original-uri":      false,
		"forwarded":           false,
		"content-type":        false,
		"x-envoy-internal":    false,
		"x-extauthz-error":    false,
	} {
		t.Run(name, func(t *testing.T) {
			if got := ValidHeaderName(name); got != want {
				t.Errorf("ValidHeaderName(%q) = %v, want %v", name, got, want)
			}
		})
	}
}

package authz

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/rolemap"
)

// TestEngine_Decide_RefusedKeyIsNamedNotAuthenticated proves that a revoked
// or expired key's id and owner reach the Decision for the audit log, that
// the denial stays unauthenticated (no Identity, nothing set upstream), and
// that refusals without a known key name nothing.
func TestEngine_Decide_RefusedKeyIsNamedNotAuthenticated(t *testing.T) {
	mapper, err := rolemap.New(testMapping, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	keys := fakeKeys{
		"ek_expired": &apikeys.KeyError{Err: apikeys.ErrExpired, ID: "key_exp", Owner: "erin"},
		"ek_revoked": fmt.Errorf("lookup: %w", &apikeys.KeyError{Err: apikeys.ErrRevoked, ID: "key_rev", Owner: "dave"}),
		"ek_bare":    apikeys.ErrRevoked, // a backend that names nothing
		"ek_down":    fmt.Errorf("hgetall: %w", apikeys.ErrUnavailable),
	}
	e, err := NewEngine(Config{
		Routes: testRoutes, DefaultRoute: DefaultRouteDeny,
		Headers: Headers{Prefix: "x-auth-"}, APIKeyPrefix: "ek",
	}, Deps{Keys: keys, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Code            Code
		Reason          Reason
		KeyID, KeyOwner string
		Authenticated   bool
		Set             int
	}
	tests := []struct {
		key  string
		want got
	}{
		{"ek_expired", got{InvalidAPIKey, ReasonExpiredKey, "key_exp", "erin", false, 0}},
		{"ek_revoked", got{InvalidAPIKey, ReasonRevokedKey, "key_rev", "dave", false, 0}},
		{"ek_bare", got{InvalidAPIKey, ReasonRevokedKey, "", "", false, 0}},
		{"ek_unknown", got{InvalidAPIKey, ReasonUnknownKey, "", "", false, 0}},
		{"ek_down", got{Unavailable, ReasonRedisUnavailable, "", "", false, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			d := e.Decide(context.Background(), req("GET", "/v1/models", "x-api-key", tt.key))
			g := got{d.Code, d.Reason, d.KeyID, d.KeyOwner, d.Identity != nil, len(d.Set)}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			// Authenticate (the admin API's entry) returns no identity.
			if id, reason := e.Authenticate(context.Background(), map[string]string{"x-api-key": tt.key}); id != nil || reason != tt.want.Reason {
				t.Errorf("Authenticate = %v, %s; want nil, %s", id, reason, tt.want.Reason)
			}
		})
	}
}

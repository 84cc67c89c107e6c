package envoyauthz_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// TestCheck_StoredKeyRolesAreSanitised: roles in a key record written
// straight into Redis (by another tool, an old version, or an attacker with
// write access to one field) reach the upstream only if they are roles of
// the `roles:` table: "viewer,admin" must not become two roles in
// x-auth-roles, and an unknown role is dropped, like groups with a comma.
func TestCheck_StoredKeyRolesAreSanitised(t *testing.T) {
	srv := apikeystest.StartServer(t)
	cfg := apikeys.Default()
	cfg.Redis = &apikeys.RedisConfig{Addrs: []string{srv.URL()}, Timeout: 500 * time.Millisecond}
	st := newStack(t, cfg)
	ctx := context.Background()
	rdb := srv.Client(t)

	tests := []struct {
		name      string
		roles     string // the stored JSON list
		wantRoles string // x-auth-roles on GET /v1/models
	}{
		{"role with a comma", `["viewer,admin"]`, "viewer"},
		{"unknown role", `["nosuchrole"]`, "viewer"},
		{"role with a control character", `["admin\r\nx-auth-subject: root"]`, "viewer"},
		{"known role kept", `["developer","nosuchrole"]`, "developer,viewer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, rec, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "mallory"})
			if err != nil {
				t.Fatal(err)
			}
			if err := rdb.HSet(ctx, "extauthz:{apikeys}:key:"+rec.Hash, "roles", tt.roles).Err(); err != nil {
				t.Fatal(err)
			}
			resp, err := st.client.Check(ctx, checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + secret}))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantRoles, okHeader(resp, "x-auth-roles")); diff != "" {
				t.Errorf("x-auth-roles mismatch (-want +got):\n%s", diff)
			}
			resp, err = st.client.Check(ctx, checkRequest("GET", "/admin", map[string]string{"authorization": "Bearer " + secret}))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 403 {
				t.Errorf("GET /admin: denied status %d, want 403", got)
			}
		})
	}
}

// okHeader returns the value of an identity header the allow response sets.
func okHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

package keysapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
)

func TestHandler_AdminManagesEveryKey(t *testing.T) {
	en := newEnv(t)
	admin := en.jwt("root", time.Hour, "platform-admins")

	created := en.doJSON("POST", "/v1/keys", admin, `{"owner":"bob","roles":["agent"],"ttl":"1h","description":"ci"}`)
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	id, key := created.body["id"].(string), created.body["key"].(string)
	if !strings.HasPrefix(key, "ek_") || created.body["owner"] != "bob" || created.body["expires_at"] == nil {
		t.Fatalf("create answered %s", created.raw)
	}
	if got := en.checkStatus("/v1/agent", key); got != http.StatusOK {
		t.Fatalf("check with the new key: %d, want 200", got)
	}
	if _, _, err := en.store.Create(context.Background(), apikeys.CreateOptions{Owner: "carol"}); err != nil {
		t.Fatal(err)
	}

	if got := ids(en.doJSON("GET", "/v1/keys", admin, "")); len(got) != 2 {
		t.Errorf("admin list: %v, want both keys", got)
	}
	if got := ids(en.doJSON("GET", "/v1/keys?owner=bob", admin, "")); !cmp.Equal(got, []string{id}) {
		t.Errorf("admin list owner=bob: %v, want [%s]", got, id)
	}
	shown := en.doJSON("GET", "/v1/keys/"+id, admin, "")
	if shown.status != http.StatusOK || shown.body["status"] != "active" || shown.body["key"] != nil {
		t.Errorf("show: %d %s", shown.status, shown.raw)
	}
	if r := en.doJSON("DELETE", "/v1/keys/"+id, admin, ""); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if got := en.checkStatus("/v1/agent", key); got != http.StatusUnauthorized {
		t.Errorf("check with the revoked key: %d, want 401", got)
	}
	if r := en.doJSON("GET", "/v1/keys/"+id, admin, ""); r.body["status"] != "revoked" {
		t.Errorf("show after revoke: %s", r.raw)
	}
	if r := en.doJSON("GET", "/v1/keys/key_000000000000", admin, ""); r.status != http.StatusNotFound {
		t.Errorf("show unknown id: %d, want 404", r.status)
	}
	if strings.Contains(en.logs.String(), key) {
		t.Error("the audit log contains the key")
	}
}

func TestHandler_SelfService(t *testing.T) {
	en := newEnv(t)
	alice := en.jwt("alice", time.Hour, "eng") // developer, viewer: apikeys:self
	viewer := en.jwt("vic", time.Hour)         // viewer only: no key permission
	bob := en.jwt("bob", time.Hour, "eng")     // another developer
	// bob's key in his provider's namespace: a CLI key of owner "bob" is
	// somebody else's (TestHandler_TwoProvidersSameSubject).
	_, bobKey, err := en.store.Create(context.Background(), apikeys.CreateOptions{Owner: "bob", Issuer: en.idp.Issuer(), Roles: []string{"developer"}})
	if err != nil {
		t.Fatal(err)
	}
	own := en.doJSON("POST", "/v1/keys", alice, `{"roles":["developer"],"ttl":"24h"}`)
	if own.status != http.StatusCreated || own.body["owner"] != "alice" {
		t.Fatalf("alice creates her own key: %d %s", own.status, own.raw)
	}
	ownID := own.body["id"].(string)
	// Alice's own key holds apikeys:self through its roles, but a key may
	// not mint keys (they could outlive it): only a JWT caller self-serves.
	if r := en.doJSON("POST", "/v1/keys", own.body["key"].(string), `{}`); r.status != http.StatusForbidden {
		t.Errorf("create with an API key: %d %s, want 403", r.status, r.raw)
	}
	second := en.doJSON("POST", "/v1/keys", alice, `{"ttl":"1h"}`)
	if second.status != http.StatusCreated {
		t.Fatalf("alice creates a second key: %d %s", second.status, second.raw)
	}

	tests := []struct {
		name, method, path, cred, body string
		want                           int
		wantError                      string
	}{
		{"escalation by role", "POST", "/v1/keys", alice, `{"roles":["admin"]}`, 403, "forbidden"},
		{"escalation by group", "POST", "/v1/keys", alice, `{"groups":["agents"]}`, 403, "forbidden"},
		{"key for someone else", "POST", "/v1/keys", alice, `{"owner":"bob"}`, 403, "forbidden"},
		{"another owner's key is not found", "GET", "/v1/keys/" + bobKey.ID, alice, "", 404, "not_found"},
		{"another owner's key cannot be revoked", "DELETE", "/v1/keys/" + bobKey.ID, alice, "", 404, "not_found"},
		{"another owner's list", "GET", "/v1/keys?owner=bob", alice, "", 403, "forbidden"},
		{"no key permission", "GET", "/v1/keys", viewer, "", 403, "forbidden"},
		{"unknown field", "POST", "/v1/keys", alice, `{"rolez":["developer"]}`, 400, "invalid_request"},
		{"bad ttl", "POST", "/v1/keys", alice, `{"ttl":"soon"}`, 400, "invalid_request"},
		{"too large", "POST", "/v1/keys", alice, `{"description":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "invalid_request"},
		{"unauthenticated", "GET", "/v1/keys", "", "", 401, "missing_credentials"},
		{"invalid token", "GET", "/v1/keys", "a.b.c", "", 401, "invalid_token"},
		{"unknown endpoint", "GET", "/v1/nope", alice, "", 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := en.doJSON(tc.method, tc.path, tc.cred, tc.body)
			if r.status != tc.want || r.body["error"] != tc.wantError {
				t.Errorf("got %d %s, want %d %s", r.status, r.raw, tc.want, tc.wantError)
			}
			if tc.want == 401 && !strings.HasPrefix(r.header.Get("www-authenticate"), `Bearer realm="extauthz"`) {
				t.Errorf("www-authenticate = %q", r.header.Get("www-authenticate"))
			}
		})
	}

	mine := ids(en.doJSON("GET", "/v1/keys", alice, ""))
	if len(mine) != 2 || !strings.Contains(strings.Join(mine, ","), ownID) {
		t.Errorf("alice lists %v, want her two keys", mine)
	}
	if got := ids(en.doJSON("GET", "/v1/keys", bob, "")); !cmp.Equal(got, []string{bobKey.ID}) {
		t.Errorf("bob lists %v, want only his key", got)
	}
	if r := en.doJSON("DELETE", "/v1/keys/"+ownID, alice, ""); r.status != http.StatusNoContent {
		t.Errorf("alice revokes her key: %d %s", r.status, r.raw)
	}
	if rec, err := en.store.Get(context.Background(), bobKey.ID); err != nil || !rec.RevokedAt.IsZero() {
		t.Errorf("bob's key after alice's attempts: %v %v", rec, err)
	}
}

package keysapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/keysapi"
)

// TestHandler_TwoProvidersSameSubject proves that identities are
// issuer-qualified everywhere in the key API: provider B's alice cannot
// list, show or revoke provider A's alice's keys (nor the CLI namespace's
// alice's), and a key exchanged by B's alice reaches the upstream with
// x-auth-issuer = B's issuer.
func TestHandler_TwoProvidersSameSubject(t *testing.T) {
	en := newEnv(t)
	ctx := context.Background()
	aliceA := en.jwt("alice", time.Hour, "eng")
	aliceB := en.jwtB("alice", time.Hour, "eng")

	own := en.doJSON("POST", "/v1/keys", aliceA, `{"roles":["developer"],"ttl":"1h"}`)
	if own.status != http.StatusCreated || own.body["issuer"] != en.idp.Issuer() {
		t.Fatalf("A's alice creates a key: %d %s", own.status, own.raw)
	}
	ownID := own.body["id"].(string)
	xA := en.exchange(exchangeForm(en.jwt("alice", time.Hour, "eng", "agents"), "agent"))
	if xA.status != http.StatusOK {
		t.Fatalf("A's alice exchanges: %d %s", xA.status, xA.raw)
	}
	xAID := xA.body["key_id"].(string)
	_, cliKey, err := en.store.Create(ctx, apikeys.CreateOptions{Owner: "alice", Roles: []string{"developer"}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, method, path string
		want               int
	}{
		{"show A's self-service key", "GET", "/v1/keys/" + ownID, http.StatusNotFound},
		{"show A's exchanged key", "GET", "/v1/keys/" + xAID, http.StatusNotFound},
		{"show the CLI namespace's key", "GET", "/v1/keys/" + cliKey.ID, http.StatusNotFound},
		{"revoke A's self-service key", "DELETE", "/v1/keys/" + ownID, http.StatusNotFound},
		{"revoke A's exchanged key", "DELETE", "/v1/keys/" + xAID, http.StatusNotFound},
		{"revoke A's exchanged token", "DELETE", "/v1/token/" + xAID, http.StatusNotFound},
		{"revoke the CLI namespace's key", "DELETE", "/v1/keys/" + cliKey.ID, http.StatusNotFound},
		{"list naming A's issuer", "GET", "/v1/keys?issuer=" + url.QueryEscape(en.idp.Issuer()), http.StatusForbidden},
		{"revoke every key of alice", "DELETE", "/v1/keys?owner=alice", http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run("B's alice cannot "+tc.name, func(t *testing.T) {
			if r := en.doJSON(tc.method, tc.path, aliceB, ""); r.status != tc.want {
				t.Errorf("got %d %s, want %d", r.status, r.raw, tc.want)
			}
		})
	}
	t.Run("B's alice lists none of A's alice's keys", func(t *testing.T) {
		if got := ids(en.doJSON("GET", "/v1/keys", aliceB, "")); len(got) != 0 {
			t.Errorf("B's alice lists %v, want nothing", got)
		}
		if got := ids(en.doJSON("GET", "/v1/keys?owner=alice", aliceB, "")); len(got) != 0 {
			t.Errorf("B's alice lists owner=alice %v, want nothing", got)
		}
	})
	t.Run("A's keys survive B's attempts", func(t *testing.T) {
		for _, id := range []string{ownID, xAID, cliKey.ID} {
			if rec, err := en.store.Get(ctx, id); err != nil || !rec.RevokedAt.IsZero() {
				t.Errorf("%s: %+v %v", id, rec, err)
			}
		}
		if got := ids(en.doJSON("GET", "/v1/keys", aliceA, "")); !cmp.Equal(got, []string{ownID, xAID}) {
			t.Errorf("A's alice lists %v, want [%s %s]", got, ownID, xAID)
		}
	})
	t.Run("B's exchanged key reaches the upstream with B's issuer", func(t *testing.T) {
		xB := en.exchange(exchangeForm(en.jwtB("alice", time.Hour, "agents"), "agent"))
		if xB.status != http.StatusOK {
			t.Fatalf("B's alice exchanges: %d %s", xB.status, xB.raw)
		}
		status, h := en.checkHeaders("/v1/agent", xB.body["access_token"].(string))
		got := map[string]string{"status": http.StatusText(status), "subject": h.Get("x-auth-subject"),
			"issuer": h.Get("x-auth-issuer"), "method": h.Get("x-auth-method")}
		want := map[string]string{"status": "OK", "subject": "alice", "issuer": en.idpB.Issuer(), "method": "api_key"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("identity upstream (-want +got):\n%s", diff)
		}
		// and A's alice cannot revoke it either
		if r := en.do("DELETE", "/v1/token/"+xB.body["key_id"].(string), aliceA, "", ""); r.status != http.StatusNotFound {
			t.Errorf("A's alice revokes B's token: %d %s", r.status, r.raw)
		}
		// a CLI key has no issuer upstream
		if _, h := en.checkHeaders("/v1/models", mustSecret(t, en, apikeys.CreateOptions{Owner: "alice"})); h.Get("x-auth-issuer") != "" {
			t.Errorf("CLI key: x-auth-issuer %q, want none", h.Get("x-auth-issuer"))
		}
	})
	t.Run("admin revokes every key of one owner of one issuer", func(t *testing.T) {
		admin := en.jwt("root", time.Hour, "platform-admins")
		r := en.doJSON("DELETE", "/v1/keys?owner=alice&issuer="+url.QueryEscape(en.idp.Issuer()), admin, "")
		if r.status != http.StatusOK || r.body["revoked"] != float64(2) {
			t.Fatalf("revoke owner: %d %s, want 200 revoked 2", r.status, r.raw)
		}
		for id, wantRevoked := range map[string]bool{ownID: true, xAID: true, cliKey.ID: false} {
			rec, err := en.store.Get(ctx, id)
			if err != nil || rec.RevokedAt.IsZero() == wantRevoked {
				t.Errorf("%s: revoked=%v, want %v (%v)", id, rec != nil && !rec.RevokedAt.IsZero(), wantRevoked, err)
			}
		}
		if got := ids(en.doJSON("GET", "/v1/keys", aliceB, "")); len(got) != 1 {
			t.Errorf("B's alice lists %v after A's alice was revoked, want her one key", got)
		}
	})
}

func mustSecret(t *testing.T, en *env, o apikeys.CreateOptions) string {
	t.Helper()
	secret, _, err := en.store.Create(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestHandler_SelfServiceCannotWiden proves that a self-service key holds
// no group or role the caller lacks and cannot outlive api.max_ttl.
func TestHandler_SelfServiceCannotWiden(t *testing.T) {
	en := newEnv(t, func(c *keysapi.Config) { c.MaxTTL = 8 * time.Hour })
	alice := en.jwt("alice", time.Hour, "eng")
	tests := []struct {
		name, body string
		want       int
		wantError  string
	}{
		{"invented group", `{"groups":["platform-admins-next"],"ttl":"1h"}`, 403, "forbidden"},
		{"group of somebody else", `{"groups":["agents"],"ttl":"1h"}`, 403, "forbidden"},
		{"role the caller lacks", `{"roles":["agent"],"ttl":"1h"}`, 403, "forbidden"},
		{"no ttl", `{"roles":["developer"]}`, 400, "invalid_request"},
		{"ttl beyond max_ttl", `{"roles":["developer"],"ttl":"9h"}`, 400, "invalid_request"},
		{"own group and role within max_ttl", `{"groups":["eng"],"roles":["developer"],"ttl":"8h"}`, 201, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := en.doJSON("POST", "/v1/keys", alice, tc.body)
			if r.status != tc.want || (tc.wantError != "" && r.body["error"] != tc.wantError) {
				t.Errorf("got %d %s, want %d %s", r.status, r.raw, tc.want, tc.wantError)
			}
		})
	}
	t.Run("admin keeps creating keys without ttl", func(t *testing.T) {
		r := en.doJSON("POST", "/v1/keys", en.jwt("root", time.Hour, "platform-admins"), `{"owner":"svc","groups":["agents"]}`)
		if r.status != http.StatusCreated || r.body["expires_at"] != nil || r.body["issuer"] != nil {
			t.Errorf("got %d %s, want 201 without expiry in the CLI namespace", r.status, r.raw)
		}
	})
}

// TestHandler_MintingIsBounded proves that one caller cannot mint without
// bound: live keys per owner are capped atomically (concurrent exchanges
// included), and minting is rate limited per issuer-qualified caller.
func TestHandler_MintingIsBounded(t *testing.T) {
	t.Run("live keys per owner are capped, concurrently too", func(t *testing.T) {
		en := newEnv(t, func(c *keysapi.Config) {
			c.MaxKeysPerOwner = 3
			c.MintRateLimit.Requests, c.MintRateLimit.Burst = 1000, 1000
		})
		tok := en.jwt("alice", time.Hour, "agents")
		var mu sync.Mutex
		codes := map[int]int{}
		var keyIDs []string
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				r := en.exchange(exchangeForm(tok, ""))
				mu.Lock()
				defer mu.Unlock()
				codes[r.status]++
				if r.status == http.StatusOK {
					keyIDs = append(keyIDs, r.body["key_id"].(string))
				}
			})
		}
		wg.Wait()
		if diff := cmp.Diff(map[int]int{200: 3, 400: 9}, codes); diff != "" {
			t.Fatalf("12 concurrent exchanges (-want +got):\n%s", diff)
		}
		if r := en.doJSON("POST", "/v1/keys", en.jwt("alice", time.Hour, "eng"), `{"ttl":"1h"}`); r.status != http.StatusConflict {
			t.Errorf("self-service key at the cap: %d %s, want 409", r.status, r.raw)
		}
		// B's alice is somebody else: her own budget of keys.
		if r := en.exchange(exchangeForm(en.jwtB("alice", time.Hour, "agents"), "")); r.status != http.StatusOK {
			t.Errorf("B's alice exchanges: %d %s, want 200", r.status, r.raw)
		}
		// A revoked key no longer counts.
		if r := en.do("DELETE", "/v1/token/"+keyIDs[0], tok, "", ""); r.status != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		if r := en.exchange(exchangeForm(tok, "")); r.status != http.StatusOK {
			t.Errorf("exchange after a revocation: %d %s, want 200", r.status, r.raw)
		}
	})
	t.Run("minting is rate limited per caller", func(t *testing.T) {
		en := newEnv(t, func(c *keysapi.Config) {
			c.MintRateLimit.Requests, c.MintRateLimit.Per, c.MintRateLimit.Burst = 2, time.Hour, 2
		})
		tok := en.jwt("alice", time.Hour, "eng")
		var got []int
		for range 2 {
			got = append(got, en.exchange(exchangeForm(tok, "")).status)
		}
		over := en.exchange(exchangeForm(tok, ""))
		got = append(got, over.status)
		got = append(got, en.doJSON("POST", "/v1/keys", tok, `{"ttl":"1h"}`).status)
		got = append(got, en.exchange(exchangeForm(en.jwtB("alice", time.Hour, "eng"), "")).status)
		if diff := cmp.Diff([]int{200, 200, 429, 429, 200}, got); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}
		if over.header.Get("retry-after") == "" || !strings.Contains(over.raw, "slow_down") {
			t.Errorf("429 without retry-after or error: %v %s", over.header, over.raw)
		}
	})
}

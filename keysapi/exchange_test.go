package keysapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/keysapi"
)

func TestHandler_Exchange(t *testing.T) {
	en := newEnv(t)
	tests := []struct {
		name    string
		groups  []string
		exp     time.Duration
		scope   string
		wantTTL time.Duration // expires_in, within 3s below
		wantErr string
	}{
		{"shortest role wins", []string{"agents", "eng"}, time.Hour, "", 2 * time.Minute, ""},
		{"developer", []string{"eng"}, time.Hour, "", 15 * time.Minute, ""},
		{"scope narrows the roles and the ttl", []string{"platform-admins", "eng"}, 2 * time.Hour, "developer", 15 * time.Minute, ""},
		{"admin, capped by max_ttl", []string{"platform-admins"}, 2 * time.Hour, "admin", time.Hour, ""},
		{"default ttl for roles without one", nil, time.Hour, "", 10 * time.Minute, ""},
		{"capped by the subject token's exp", []string{"platform-admins"}, 5 * time.Minute, "admin", 5*time.Minute - time.Second, ""},
		{"scope beyond the grant", []string{"eng"}, time.Hour, "developer admin", 0, "invalid_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := en.exchange(exchangeForm(en.jwt("alice", tc.exp, tc.groups...), tc.scope))
			if tc.wantErr != "" {
				if r.status != 400 || r.body["error"] != tc.wantErr {
					t.Fatalf("got %d %s, want 400 %s", r.status, r.raw, tc.wantErr)
				}
				return
			}
			if r.status != 200 || r.body["token_type"] != "Bearer" || r.body["issued_token_type"] != keysapi.TokenTypeAccessToken {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			got := time.Duration(r.body["expires_in"].(float64)) * time.Second
			if got > tc.wantTTL || got < tc.wantTTL-3*time.Second {
				t.Errorf("expires_in = %s, want %s (at most 3s less)", got, tc.wantTTL)
			}
			rec, err := en.store.Get(context.Background(), r.body["key_id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Owner != "alice" || rec.Description != keysapi.ExchangeDescription {
				t.Errorf("record %+v", rec)
			}
			if left := time.Until(rec.ExpiresAt); left > tc.wantTTL || left < tc.wantTTL-5*time.Second {
				t.Errorf("key expires in %s, want about %s", left, tc.wantTTL)
			}
		})
	}
}

func TestHandler_ExchangeRefusals(t *testing.T) {
	en := newEnv(t)
	secret, _, err := en.store.Create(context.Background(), apikeys.CreateOptions{Owner: "alice", Roles: []string{"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	good := en.jwt("alice", time.Hour, "eng")
	other := en.idp.Claims("alice", "other-audience")
	tests := []struct {
		name    string
		form    url.Values
		wantErr string
	}{
		{"api key as subject token", exchangeForm(secret, ""), "invalid_grant"},
		{"expired subject token", exchangeForm(en.jwt("alice", -time.Hour, "eng"), ""), "invalid_grant"},
		{"wrong audience", exchangeForm(en.idp.Sign(other), ""), "invalid_grant"},
		{"garbage subject token", exchangeForm("not-a-token", ""), "invalid_grant"},
		{"wrong grant type", func() url.Values { f := exchangeForm(good, ""); f.Set("grant_type", "password"); return f }(), "unsupported_grant_type"},
		{"missing subject token", func() url.Values { f := exchangeForm(good, ""); f.Del("subject_token"); return f }(), "invalid_request"},
		{"wrong subject token type", func() url.Values {
			f := exchangeForm(good, "")
			f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:saml2")
			return f
		}(), "invalid_request"},
		{"repeated parameter", func() url.Values {
			f := exchangeForm(good, "")
			f.Add("scope", "viewer")
			f.Add("scope", "admin")
			return f
		}(), "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := en.exchange(tc.form)
			if r.status != 400 || r.body["error"] != tc.wantErr {
				t.Errorf("got %d %s, want 400 %s", r.status, r.raw, tc.wantErr)
			}
		})
	}
	if r := en.do("POST", "/v1/token", "", "application/json", `{}`); r.status != 400 || r.body["error"] != "invalid_request" {
		t.Errorf("json body: %d %s", r.status, r.raw)
	}
	if got := testutil.ToFloat64(counter(t, en.reg, keysapi.EventExchanged)); got != 0 {
		t.Errorf("exchanged events = %v after refusals only", got)
	}
}

func TestHandler_ExchangeEndToEnd(t *testing.T) {
	en := newEnv(t)
	r := en.exchange(exchangeForm(en.jwt("alice", time.Hour, "eng", "agents"), "agent"))
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	key, id := r.body["access_token"].(string), r.body["key_id"].(string)
	if got := en.checkStatus("/v1/agent", key); got != http.StatusOK {
		t.Fatalf("check on the agent route with the exchanged key: %d, want 200", got)
	}
	// Another subject, even with apikeys:self, cannot revoke it.
	if r := en.do("DELETE", "/v1/token/"+id, en.jwt("bob", time.Hour, "eng"), "", ""); r.status != http.StatusNotFound {
		t.Errorf("bob revokes alice's token: %d %s, want 404", r.status, r.raw)
	}
	if r := en.do("DELETE", "/v1/token/"+id, "", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("unauthenticated revoke: %d, want 401", r.status)
	}
	// The owner revokes it with the exchanged key itself.
	if r := en.do("DELETE", "/v1/token/"+id, key, "", ""); r.status != http.StatusNoContent {
		t.Fatalf("owner revokes: %d %s", r.status, r.raw)
	}
	if got := en.checkStatus("/v1/agent", key); got != http.StatusUnauthorized {
		t.Errorf("check with the revoked key: %d, want 401", got)
	}
	// An admin may revoke another subject's exchanged token.
	r2 := en.exchange(exchangeForm(en.jwt("carol", time.Hour, "agents"), ""))
	if r := en.do("DELETE", "/v1/token/"+r2.body["key_id"].(string), en.jwt("root", time.Hour, "platform-admins"), "", ""); r.status != http.StatusNoContent {
		t.Errorf("admin revokes carol's token: %d %s", r.status, r.raw)
	}

	logs := en.logs.String()
	if strings.Contains(logs, key) || strings.Contains(logs, r2.body["access_token"].(string)) {
		t.Error("the audit log contains an exchanged key")
	}
	var events []string
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["key_id"] == id {
			events = append(events, m["event"].(string)+" actor="+m["actor"].(string)+" owner="+m["owner"].(string))
		}
	}
	want := []string{"exchanged actor=alice owner=alice", "revoked actor=alice owner=alice"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("audit events of %s (-want +got):\n%s", id, diff)
	}
	exp := `
# HELP extauthz_apikey_events_total API key lifecycle events through the key API: created, exchanged (token exchange), revoked, mint_limited (refused by api.mint_rate_limit).
# TYPE extauthz_apikey_events_total counter
extauthz_apikey_events_total{event="created"} 0
extauthz_apikey_events_total{event="exchanged"} 2
extauthz_apikey_events_total{event="mint_limited"} 0
extauthz_apikey_events_total{event="revoked"} 2
`
	if err := testutil.GatherAndCompare(en.reg, strings.NewReader(exp), "extauthz_apikey_events_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(en.reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

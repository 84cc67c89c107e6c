package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

const apiPolicy = `roles: {viewer: [models:list], developer: [models:list, chat:invoke, apikeys:self]}
role_mapping:
  rules: [{groups: [eng], roles: [developer]}]
  default_roles: [viewer]
api:
  exchange: {default_ttl: 5m, ttl_by_role: {developer: 15m}}
routes:
  - {name: chat, match: {path_prefix: /v1/chat/completions, methods: [POST]}, require: {permissions: [chat:invoke]}}
  - {name: models, match: {path_prefix: /v1/models}, require: {any_role: [viewer]}}
`

// TestServe_KeyAPIOnItsOwnListener: with listen.api set, the key API and
// token exchange answer there (and not on the forward-auth listener), an
// exchanged key passes a Check until it is revoked, and the events are
// counted on /metrics.
func TestServe_KeyAPIOnItsOwnListener(t *testing.T) {
	path := devConfig(t, apiPolicy, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "admin: 127.0.0.1:0}", "admin: 127.0.0.1:0, api: 127.0.0.1:0}", 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, path)
	p.waitReady(t)
	var line map[string]any
	if err := json.Unmarshal([]byte(p.waitLog(t, `"key API serving"`)), &line); err != nil {
		t.Fatal(err)
	}
	api := "http://" + line["api"].(string)
	client, _ := p.client(t)

	do := func(method, u, cred, ctype, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if cred != "" {
			req.Header.Set("authorization", "Bearer "+cred)
		}
		if ctype != "" {
			req.Header.Set("content-type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}

	alice := mintToken(t, "alice", "eng")
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {alice},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
	}
	st, tok := do("POST", api+"/v1/token", "", "application/x-www-form-urlencoded", form.Encode())
	if st != 200 || tok["expires_in"].(float64) > 900 || tok["expires_in"].(float64) < 890 {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	key, id := tok["access_token"].(string), tok["key_id"].(string)
	chat := checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + key})
	if _, got := check(t, client, chat); got != 200 {
		t.Fatalf("check with the exchanged key: %d, want 200", got)
	}
	if st, body := do("POST", api+"/v1/keys", alice, "application/json", `{"roles":["developer"],"ttl":"1h"}`); st != 201 {
		t.Errorf("create: %d %v", st, body)
	}
	if st, _ := do("GET", api+"/v1/keys", "", "", ""); st != 401 {
		t.Errorf("unauthenticated list: %d, want 401", st)
	}
	// The forward-auth listener answers checks, not the API.
	if st, _ := do("GET", "http://"+p.http+"/v1/keys", alice, "", ""); st == 200 {
		t.Errorf("the forward-auth listener served /v1/keys")
	}
	if st, body := do("DELETE", api+"/v1/token/"+id, key, "", ""); st != 204 {
		t.Fatalf("revoke: %d %v", st, body)
	}
	if _, got := check(t, client, chat); got != 401 {
		t.Errorf("check with the revoked key: %d, want 401", got)
	}
	mf := p.scrape(t)
	for event, want := range map[string]float64{"created": 1, "exchanged": 1, "revoked": 1} {
		if got := value(t, mf, "extauthz_apikey_events_total", map[string]string{"event": event}); got != want {
			t.Errorf("events{%s} = %v, want %v", event, got, want)
		}
	}
	for _, l := range p.log() {
		if strings.Contains(l, key) {
			t.Fatalf("a log line contains the exchanged key: %s", l)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
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
	api := p.apiURL(t)
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

// TestServe_MintedKeysShareTheCallersBudget runs the real binary with the
// key API and rate_limits.key: key_id in a real Redis: a JWT caller and the
// keys it exchanged spend one budget (issuer + subject), so minting keys
// never multiplies it, while a CLI key of the same owner name (another
// namespace) keeps its own.
func TestServe_MintedKeysShareTheCallersBudget(t *testing.T) {
	redis := apikeystest.StartServer(t)
	policy := apiPolicy + `rate_limits:
  key: key_id
  default: {requests: 3, per: 1m}
`
	path := devConfig(t, policy, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "admin: 127.0.0.1:0}", "admin: 127.0.0.1:0, api: 127.0.0.1:0}", 1)
	s = strings.Replace(s, "api_keys: {file: keys.json}", `api_keys: {redis: {addrs: ["`+redis.URL()+`"]}}`, 1)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, path)
	p.waitReady(t)
	api := p.apiURL(t)
	client, _ := p.client(t)

	alice := mintToken(t, "alice", "eng")
	exchange := func() string {
		t.Helper()
		form := url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {alice},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
		}
		resp, err := http.Post(api+"/v1/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("exchange: %d %v", resp.StatusCode, m)
		}
		return m["access_token"].(string)
	}
	key1, key2 := exchange(), exchange()
	var out, errb strings.Builder
	if code := runKeys(context.Background(), []string{"create", "--config", path, "--owner", "alice", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("keys create: %d %s", code, errb.String())
	}
	var cli apikeys.CreatedKey
	if err := json.Unmarshal([]byte(out.String()), &cli); err != nil {
		t.Fatal(err)
	}
	models := func(cred string) *authv3.CheckRequest {
		return checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + cred})
	}
	var got []int
	for _, cred := range []string{alice, key1, key2, key1, alice, cli.Key} {
		_, st := check(t, client, models(cred))
		got = append(got, st)
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429, 429, 200}, got); diff != "" {
		t.Errorf("statuses of alice, key1, key2, key1, alice, the CLI's alice (-want +got):\n%s", diff)
	}
}

// apiURL returns the base URL of p's key API, from its "key API serving"
// log line.
func (p *proc) apiURL(t *testing.T) string {
	t.Helper()
	var line map[string]any
	if err := json.Unmarshal([]byte(p.waitLog(t, `"key API serving"`)), &line); err != nil {
		t.Fatal(err)
	}
	return "http://" + line["api"].(string)
}

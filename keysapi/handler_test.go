package keysapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
	"github.com/extauthz/extauthz/keysapi"
	"github.com/extauthz/extauthz/rolemap"
)

var (
	testRoles = map[string][]string{
		"viewer":    {"models:list"},
		"developer": {"models:list", "chat:invoke", "apikeys:self"},
		"agent":     {"chat:invoke"},
		"admin":     {"*"},
	}
	testMapping = rolemap.Mapping{
		Rules: []rolemap.Rule{
			{Groups: []string{"eng"}, Roles: []string{"developer"}},
			{Groups: []string{"agents"}, Roles: []string{"agent"}},
			{Groups: []string{"platform-admins"}, Roles: []string{"admin"}},
		},
		DefaultRoles: []string{"viewer"},
	}
	testRoutes = []authz.Route{
		{Name: "agent", Match: authz.Match{PathPrefix: "/v1/agent"}, Require: authz.Require{AnyRole: []string{"agent"}}},
		{Name: "models", Match: authz.Match{PathPrefix: "/v1/models"}, Require: authz.Require{AnyRole: []string{"viewer"}}},
	}
	testExchange = keysapi.ExchangeConfig{
		DefaultTTL: 10 * time.Minute,
		MaxTTL:     time.Hour,
		TTLByRole:  map[string]time.Duration{"agent": 2 * time.Minute, "developer": 15 * time.Minute, "admin": 60 * time.Minute},
	}
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t      *testing.T
	idp    *jwkstest.Server
	idpB   *jwkstest.Server // a second provider, whose subjects collide with idp's
	store  *apikeys.Store
	engine *authz.Engine
	api    http.Handler
	check  http.Handler
	logs   *lockedBuffer
	reg    *prometheus.Registry
}

func newEnv(t *testing.T, opts ...func(*keysapi.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	redis := apikeystest.StartServer(t)
	idp := jwkstest.NewServer(t)
	idpB := jwkstest.NewServer(t)
	quiet := slog.New(slog.DiscardHandler)
	jcfg := jwks.DefaultConfig()
	jcfg.Providers = []jwks.ProviderConfig{
		{Name: "idp", Issuer: idp.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: idp.JWKSURL()},
		{Name: "idp-b", Issuer: idpB.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: idpB.JWKSURL()},
	}
	jcfg.Providers[0].ApplyDefaults()
	jcfg.Providers[1].ApplyDefaults()
	v, err := jwks.New(ctx, jcfg, jwks.Deps{Logger: quiet, Metrics: jwks.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	kcfg := apikeys.DefaultConfig()
	kcfg.Redis = &apikeys.RedisConfig{Addrs: []string{redis.URL()}, Timeout: time.Second}
	store, err := apikeys.New(ctx, kcfg, apikeys.Deps{Logger: quiet, Metrics: apikeys.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mapper, err := rolemap.New(testMapping, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: testRoutes, DefaultRoute: authz.DefaultRouteDeny,
		Headers: authz.Headers{Prefix: "x-auth-"}, APIKeyPrefix: "ek",
	}, authz.Deps{Verifier: v, Keys: store, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: 2 * time.Second}, quiet, authz.NewMetrics(prometheus.NewRegistry()))
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	cfg := keysapi.DefaultConfig()
	cfg.Exchange = testExchange
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(mapper.Known); err != nil {
		t.Fatal(err)
	}
	api, err := keysapi.New(cfg, keysapi.Deps{
		Auth:    func() keysapi.Authenticator { return e },
		Store:   store,
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics: keysapi.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	en := &env{t: t, idp: idp, idpB: idpB, store: store, engine: e, api: api, check: forwardauth.New(srv), logs: logs, reg: reg}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, errA := v.Verify(ctx, en.jwt("probe", time.Hour))
		_, errB := v.Verify(ctx, en.jwtB("probe", time.Hour))
		if errA == nil && errB == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("JWKS did not load within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return en
}

// jwt signs a token for sub with the given groups, expiring after ttl.
func (en *env) jwt(sub string, ttl time.Duration, groups ...string) string {
	c := en.idp.Claims(sub, "llm-gateway")
	c["exp"] = time.Now().Add(ttl).Unix()
	if groups != nil {
		c["groups"] = groups
	}
	return en.idp.Sign(jwt.MapClaims(c))
}

// jwtB is jwt signed by the second provider.
func (en *env) jwtB(sub string, ttl time.Duration, groups ...string) string {
	c := en.idpB.Claims(sub, "llm-gateway")
	c["exp"] = time.Now().Add(ttl).Unix()
	if groups != nil {
		c["groups"] = groups
	}
	return en.idpB.Sign(jwt.MapClaims(c))
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (en *env) do(method, path, cred, contentType, body string) reply {
	en.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("authorization", "Bearer "+cred)
	}
	if contentType != "" {
		req.Header.Set("content-type", contentType)
	}
	rec := httptest.NewRecorder()
	en.api.ServeHTTP(rec, req)
	r := reply{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			en.t.Fatalf("%s %s: body %q: %v", method, path, rec.Body.String(), err)
		}
	}
	return r
}

func (en *env) doJSON(method, path, cred, body string) reply {
	en.t.Helper()
	return en.do(method, path, cred, "application/json", body)
}

// exchange posts a token exchange request.
func (en *env) exchange(form url.Values) reply {
	en.t.Helper()
	return en.do("POST", "/v1/token", "", "application/x-www-form-urlencoded", form.Encode())
}

func exchangeForm(token, scope string) url.Values {
	f := url.Values{
		"grant_type":         {keysapi.GrantTypeTokenExchange},
		"subject_token":      {token},
		"subject_token_type": {keysapi.TokenTypeJWT},
	}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

// checkStatus runs a forward-auth check of path with cred.
func (en *env) checkStatus(path, cred string) int {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("x-forwarded-method", "GET")
	req.Header.Set("x-forwarded-uri", path)
	req.Header.Set("authorization", "Bearer "+cred)
	rec := httptest.NewRecorder()
	en.check.ServeHTTP(rec, req)
	return rec.Code
}

// checkHeaders runs a forward-auth check of path with cred and returns the
// status and the response headers (the identity headers on allow).
func (en *env) checkHeaders(path, cred string) (int, http.Header) {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("x-forwarded-method", "GET")
	req.Header.Set("x-forwarded-uri", path)
	req.Header.Set("authorization", "Bearer "+cred)
	rec := httptest.NewRecorder()
	en.check.ServeHTTP(rec, req)
	return rec.Code, rec.Header()
}

func ids(r reply) []string {
	var out []string
	keys, _ := r.body["keys"].([]any)
	for _, k := range keys {
		out = append(out, k.(map[string]any)["id"].(string))
	}
	return out
}

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

func counter(t *testing.T, reg *prometheus.Registry, event string) prometheus.Collector {
	t.Helper()
	return &eventCounter{reg: reg, event: event}
}

// eventCounter exposes one series of extauthz_apikey_events_total.
type eventCounter struct {
	reg   *prometheus.Registry
	event string
}

func (c *eventCounter) Describe(chan<- *prometheus.Desc) {}

func (c *eventCounter) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := c.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "extauthz_apikey_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == c.event {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
			}
		}
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

func TestConfig_Validate(t *testing.T) {
	known := func(r string) bool { return r == "agent" }
	tests := []struct {
		name string
		cfg  keysapi.ExchangeConfig
		want string
	}{
		{"valid", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agent": time.Minute}}, ""},
		{"unknown role", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agnet": time.Minute}},
			"api.exchange.ttl_by_role.agnet: unknown role; define it under roles or remove the entry"},
		{"zero ttl", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agent": 0}},
			"api.exchange.ttl_by_role.agent: must be positive, e.g. 2m"},
		{"default above max", keysapi.ExchangeConfig{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour},
			"api.exchange.default_ttl: must not exceed max_ttl (1h0m0s); lower it or raise max_ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := keysapi.Config{Exchange: tc.cfg}.Validate(known)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

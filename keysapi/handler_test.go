package keysapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/internal/logtest"
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

type env struct {
	t      *testing.T
	idp    *jwkstest.Server
	idpB   *jwkstest.Server // a second provider, whose subjects collide with idp's
	store  *apikeys.Store
	engine *authz.Engine
	api    http.Handler
	check  http.Handler
	logs   *logtest.Buffer
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
	jcfg := jwks.Default()
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
	kcfg := apikeys.Default()
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
	logs := &logtest.Buffer{}
	reg := prometheus.NewRegistry()
	cfg := keysapi.Default()
	cfg.Exchange = testExchange
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate("api", mapper.Known); err != nil {
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
	return signJWT(en.idp, sub, ttl, groups)
}

// jwtB is jwt signed by the second provider.
func (en *env) jwtB(sub string, ttl time.Duration, groups ...string) string {
	return signJWT(en.idpB, sub, ttl, groups)
}

func signJWT(idp *jwkstest.Server, sub string, ttl time.Duration, groups []string) string {
	c := idp.Claims(sub, "llm-gateway")
	c["exp"] = time.Now().Add(ttl).Unix()
	if groups != nil {
		c["groups"] = groups
	}
	return idp.Sign(jwt.MapClaims(c))
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
	status, _ := en.checkHeaders(path, cred)
	return status
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

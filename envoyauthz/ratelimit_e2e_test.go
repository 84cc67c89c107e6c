package envoyauthz_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
)

// llmPolicy is the README's worked example: a team on two model families, an
// agent role limited to one model and one tool.
var llmPolicy = struct {
	roles   map[string][]string
	mapping rolemap.Mapping
	routes  []authz.Route
}{
	roles: map[string][]string{
		"team-a": {"chat:invoke", "models:list", "model:llama-3*", "model:mistral-7b-instruct", "tool:*"},
		"agent":  {"chat:invoke", "model:llama-3.1-8b-instruct", "tool:search_docs"},
	},
	mapping: rolemap.Mapping{Rules: []rolemap.Rule{{Groups: []string{"team-a"}, Roles: []string{"team-a"}}}},
	routes: []authz.Route{
		{Name: "chat", Match: authz.Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}},
			Require: authz.Require{Permissions: []string{"chat:invoke"}, Model: true, Tools: true}},
		{Name: "models", Match: authz.Match{PathPrefix: "/v1/models", Methods: []string{"GET"}},
			Require: authz.Require{Permissions: []string{"models:list"}}, RateLimit: &ratelimit.RouteLimit{Disabled: true}},
	},
}

// llmParts are the parts that two servers may share: the IdP, the verifier
// and the API-key store (in the API-key Redis).
type llmParts struct {
	idp      *jwkstest.Server
	verifier *jwks.Verifier
	store    *apikeys.Store
	keysURL  string
}

func newLLMParts(t *testing.T) *llmParts {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	redis := apikeystest.StartServer(t)
	idp := jwkstest.NewServer(t)
	logger := slog.New(slog.DiscardHandler)
	jcfg := jwks.Default()
	jcfg.Providers = []jwks.ProviderConfig{{Name: "idp", Issuer: idp.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: idp.JWKSURL()}}
	jcfg.Providers[0].ApplyDefaults()
	v, err := jwks.New(ctx, jcfg, jwks.Deps{Logger: logger, Metrics: jwks.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	kcfg := apikeys.Default()
	kcfg.Redis = &apikeys.RedisConfig{Addrs: []string{redis.URL()}, Timeout: time.Second}
	store, err := apikeys.New(ctx, kcfg, apikeys.Deps{Logger: logger, Metrics: apikeys.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := v.Verify(ctx, sign(t, idp, jwt.MapClaims{"sub": "probe"})); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("JWKS did not load within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &llmParts{idp: idp, verifier: v, store: store, keysURL: redis.URL()}
}

// llmServer is one extauthz replica over bufconn with its own Limiter.
type llmServer struct {
	client  authv3.AuthorizationClient
	logs    *logtest.Buffer
	reg     *prometheus.Registry
	limiter *ratelimit.Limiter
	http    http.Handler
}

func newLLMServer(t *testing.T, p *llmParts, rc ratelimit.Config) *llmServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	rm := ratelimit.NewMetrics(reg, nil)
	lim, err := ratelimit.New(context.Background(), rc, ratelimit.Deps{Logger: logger, Metrics: rm})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	mapper, err := rolemap.New(llmPolicy.mapping, llmPolicy.roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: llmPolicy.routes, DefaultRoute: authz.DefaultRouteDeny,
		Headers: authz.Headers{Prefix: "x-auth-", StripCredentials: true}, APIKeyPrefix: "ek",
		RateLimits: &rc, LLMMaxBodyBytes: 1 << 20,
	}, authz.Deps{Verifier: p.verifier, Keys: p.store, Mapper: mapper, Limiter: lim, LLMMetrics: authz.NewLLMMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	rm.AddRoutes(e.RateLimitRoutes())
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: 2 * time.Second, AllowSampleRate: 1}, logger, authz.NewMetrics(reg))
	return &llmServer{client: serveBufconn(t, srv), logs: logs, reg: reg, limiter: lim, http: forwardauth.New(srv)}
}

// chatRequest is a POST /v1/chat/completions check carrying body as Envoy's
// raw_body (with_request_body, pack_as_bytes: true).
func chatRequest(cred, body string) *authv3.CheckRequest {
	h := map[string]string{"content-type": "application/json"}
	if strings.HasPrefix(cred, "ek_") {
		h["x-api-key"] = cred
	} else {
		h["authorization"] = "Bearer " + cred
	}
	r := checkRequest("POST", "/v1/chat/completions", h)
	r.Attributes.Request.Http.RawBody = []byte(body)
	return r
}

// answer is what a CheckResponse tells the client, in short.
type answer struct {
	GRPC    int32
	Status  int // 200 for allowed
	Error   string
	Headers map[string]string // response headers to the client
}

func answerOf(t *testing.T, resp *authv3.CheckResponse) answer {
	t.Helper()
	a := answer{GRPC: resp.GetStatus().GetCode(), Status: 200, Headers: map[string]string{}}
	var hs []*corev3.HeaderValueOption
	if d := resp.GetDeniedResponse(); d != nil {
		a.Status = int(d.GetStatus().GetCode())
		var body struct{ Error string }
		if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
			t.Fatalf("denial body %q: %v", d.GetBody(), err)
		}
		a.Error = body.Error
		hs = d.GetHeaders()
	} else {
		hs = resp.GetOkResponse().GetResponseHeadersToAdd()
		for _, h := range hs {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("response header %s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
			}
		}
	}
	for _, h := range hs {
		if k := h.GetHeader().GetKey(); strings.HasPrefix(k, "ratelimit-") || k == "retry-after" {
			a.Headers[k] = h.GetHeader().GetValue()
		}
	}
	return a
}

const okBody = `{"model":"llama-3.1-8b-instruct","messages":[{"role":"user","content":"hi"}]}`

// TestCheck_RateLimits runs the worked example over a real gRPC connection
// with real Redis: an agent key with its own limit of 3/1m gets 3 answers,
// each with its remaining budget, then 429 with retry-after; a JWT user on a
// role limit gets the role's budget; a refused request spends nothing.
func TestCheck_RateLimits(t *testing.T) {
	p := newLLMParts(t)
	rlRedis := apikeystest.StartServer(t)
	rc := ratelimit.Config{
		Redis:   &ratelimit.RedisConfig{Addrs: []string{rlRedis.URL()}, Timeout: time.Second},
		Timeout: time.Second,
		Key:     ratelimit.KeyKeyID,
		Roles:   map[string]ratelimit.Limit{"team-a": {Requests: 2, Per: time.Minute}},
	}
	s := newLLMServer(t, p, rc)
	ctx := context.Background()
	agentKey, agent, err := p.store.Create(ctx, apikeys.CreateOptions{Owner: "ci-bot", Roles: []string{"agent"},
		RateLimit: &apikeys.RateLimit{Requests: 3, Per: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	alice := sign(t, p.idp, jwt.MapClaims{"groups": []string{"team-a"}})
	replace := map[string]string{agent.ID: "KEY_ID", p.idp.Issuer(): "ISSUER"}

	check := func(req *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		resp, err := s.client.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check returned an RPC error: %v", err)
		}
		return resp
	}
	// A refused model spends no budget.
	resp := check(chatRequest(agentKey, `{"model":"mistral-7b-instruct"}`))
	golden(t, "forbidden_model", resp, replace)
	resp = check(chatRequest(agentKey, `{"model":"llama-3.1-8b-instruct","model":"mistral-7b-instruct"}`))
	golden(t, "invalid_request_duplicate_model", resp, replace)

	want := []answer{
		{0, 200, "", map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "2", "ratelimit-reset": "20"}},
		{0, 200, "", map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "1", "ratelimit-reset": "40"}},
		{0, 200, "", map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "0", "ratelimit-reset": "60"}},
		{8, 429, "rate_limited", map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "0", "ratelimit-reset": "60", "retry-after": "20"}},
	}
	for i, w := range want {
		resp := check(chatRequest(agentKey, okBody))
		switch i {
		case 0:
			golden(t, "allowed_rate_limit_headers", resp, replace)
		case 3:
			golden(t, "rate_limited_api_key", resp, replace)
		}
		if diff := cmp.Diff(w, answerOf(t, resp)); diff != "" {
			t.Errorf("agent request %d (-want +got):\n%s", i+1, diff)
		}
	}
	// A route with rate_limit: {disabled: true} is never counted.
	if a := answerOf(t, check(checkRequest("GET", "/v1/models", map[string]string{"authorization": "Bearer " + alice}))); a.Status != 200 || len(a.Headers) != 0 {
		t.Errorf("disabled route: %+v, want 200 without ratelimit headers", a)
	}
	// The JWT user is on the team-a role limit: 2, then 429.
	for i, w := range []int{200, 200, 429} {
		a := answerOf(t, check(chatRequest(alice, okBody)))
		if a.Status != w || a.Headers["ratelimit-limit"] != "2" {
			t.Errorf("alice request %d: %+v, want %d with ratelimit-limit 2", i+1, a, w)
		}
	}
	if err := testutil.CollectAndCompare(s.reg, strings.NewReader(`
# HELP extauthz_ratelimit_decisions_total Rate-limit decisions by route and result (allowed, limited, error_allowed and error_denied when Redis failed and on_error decided).
# TYPE extauthz_ratelimit_decisions_total counter
extauthz_ratelimit_decisions_total{result="allowed",route="chat"} 5
extauthz_ratelimit_decisions_total{result="allowed",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="allowed",route="other"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="chat"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="other"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="chat"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="other"} 0
extauthz_ratelimit_decisions_total{result="limited",route="chat"} 2
extauthz_ratelimit_decisions_total{result="limited",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="limited",route="other"} 0
`), "extauthz_ratelimit_decisions_total"); err != nil {
		t.Error(err)
	}
	logs := s.logs.String()
	for _, w := range []string{`"ratelimit":"limited"`, `"model":"llama-3.1-8b-instruct"`, `"reason":"rate_limited"`, `"reason":"model_not_permitted"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("decision log lacks %s", w)
		}
	}
	if strings.Contains(logs, agentKey) {
		t.Error("the log contains an API key")
	}
}

// TestCheck_RateLimitSharedAcrossReplicas proves the limit holds globally:
// two servers, each with its own Limiter, share one Redis, and of many
// parallel requests spread over both only the budget passes.
func TestCheck_RateLimitSharedAcrossReplicas(t *testing.T) {
	p := newLLMParts(t)
	rlRedis := apikeystest.StartServer(t)
	rc := ratelimit.Config{Redis: &ratelimit.RedisConfig{Addrs: []string{rlRedis.URL()}, Timeout: time.Second}, Timeout: time.Second}
	a, b := newLLMServer(t, p, rc), newLLMServer(t, p, rc)
	ctx := context.Background()
	const budget, requests = 10, 60
	key, _, err := p.store.Create(ctx, apikeys.CreateOptions{Owner: "ci-bot", Roles: []string{"agent"},
		RateLimit: &apikeys.RateLimit{Requests: budget, Per: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
		limited int
	)
	start := time.Now()
	for i := range requests {
		c := a.client
		if i%2 == 1 {
			c = b.client
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Check(ctx, chatRequest(key, okBody))
			if err != nil {
				t.Errorf("Check: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch resp.GetStatus().GetCode() {
			case 0:
				allowed++
			case 8:
				limited++
			default:
				t.Errorf("unexpected answer %v", resp.GetStatus())
			}
		}()
	}
	wg.Wait()
	// GCRA lets the burst through at once and one more per 6s.
	extra := int(time.Since(start) / (time.Minute / budget))
	if allowed < budget || allowed > budget+extra || allowed+limited != requests {
		t.Errorf("allowed %d, limited %d of %d over two replicas, want %d allowed (+%d for elapsed time)", allowed, limited, requests, budget, extra)
	}
}

// TestCheck_RateLimitRedisDown proves on_error: with the rate-limit Redis
// stopped, allow lets requests through uncounted and without budget headers,
// deny refuses them as 503 unavailable; authentication is unaffected.
func TestCheck_RateLimitRedisDown(t *testing.T) {
	p := newLLMParts(t)
	alice := sign(t, p.idp, jwt.MapClaims{"groups": []string{"team-a"}})
	for _, tt := range []struct {
		onError string
		want    answer
	}{
		{ratelimit.OnErrorAllow, answer{0, 200, "", map[string]string{}}},
		{ratelimit.OnErrorDeny, answer{14, 503, "unavailable", map[string]string{"retry-after": "1"}}},
	} {
		t.Run(tt.onError, func(t *testing.T) {
			rlRedis := apikeystest.StartServer(t)
			rc := ratelimit.Config{
				Redis:   &ratelimit.RedisConfig{Addrs: []string{rlRedis.URL()}, Timeout: 200 * time.Millisecond},
				OnError: tt.onError, Timeout: 100 * time.Millisecond,
				Default: &ratelimit.Limit{Requests: 100, Per: time.Minute},
			}
			s := newLLMServer(t, p, rc)
			if a := answerOf(t, mustCheck(t, s, chatRequest(alice, okBody))); a.Status != 200 || a.Headers["ratelimit-limit"] != "100" {
				t.Fatalf("with Redis up: %+v", a)
			}
			rlRedis.Stop()
			for i := range 5 { // past the breaker's threshold too
				if diff := cmp.Diff(tt.want, answerOf(t, mustCheck(t, s, chatRequest(alice, okBody)))); diff != "" {
					t.Errorf("request %d with Redis down (-want +got):\n%s", i+1, diff)
				}
			}
			if a := answerOf(t, mustCheck(t, s, chatRequest("nope.nope.nope", okBody))); a.Status != 401 {
				t.Errorf("a bad token with Redis down: %d, want 401", a.Status)
			}
		})
	}
}

func mustCheck(t *testing.T, s *llmServer, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := s.client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check returned an RPC error: %v", err)
	}
	return resp
}

// TestHTTP_LLMAndRateLimits proves the HTTP front end reads the body, sends
// the budget headers on 200, and answers 400 and 429 with x-extauthz-error
// for proxies that drop the body.
func TestHTTP_LLMAndRateLimits(t *testing.T) {
	p := newLLMParts(t)
	rlRedis := apikeystest.StartServer(t)
	s := newLLMServer(t, p, ratelimit.Config{Redis: &ratelimit.RedisConfig{Addrs: []string{rlRedis.URL()}, Timeout: time.Second}, Timeout: time.Second})
	key, _, err := p.store.Create(context.Background(), apikeys.CreateOptions{Owner: "ci-bot", Roles: []string{"agent"},
		RateLimit: &apikeys.RateLimit{Requests: 1, Per: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(body string) *http.Response {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("x-forwarded-uri", "/v1/chat/completions")
		r.Header.Set("x-forwarded-method", "POST")
		r.Header.Set("content-type", "application/json")
		r.Header.Set("x-api-key", key)
		w := httptest.NewRecorder()
		s.http.ServeHTTP(w, r)
		return w.Result()
	}
	type got struct {
		Status     int
		Error      string
		Limit      string
		Remaining  string
		RetryAfter string
	}
	tests := []struct {
		name string
		body string
		want got
	}{
		{"malformed body", `{"model":`, got{400, "invalid_request", "", "", ""}},
		{"model not permitted", `{"model":"gpt-4o"}`, got{403, "forbidden", "", "", ""}},
		{"allowed with budget", okBody, got{200, "", "1", "0", ""}},
		{"over the limit", okBody, got{429, "rate_limited", "1", "0", "60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(tt.body)
			g := got{res.StatusCode, res.Header.Get("x-extauthz-error"), res.Header.Get("ratelimit-limit"), res.Header.Get("ratelimit-remaining"), res.Header.Get("retry-after")}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

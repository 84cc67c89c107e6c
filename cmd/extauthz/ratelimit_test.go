package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// rateLimiterConns returns the ids of the Redis connections the rate
// limiter holds (client name extauthz-ratelimit), sorted.
func rateLimiterConns(t *testing.T, redis *apikeystest.Server) []string {
	t.Helper()
	list, err := redis.Client(t).ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name=extauthz-ratelimit ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// TestServe_RateLimitsSurviveReload runs the real binary with rate limits in
// a real Redis: the limit answers 429, /readyz checks the rate-limit Redis
// (on_error: deny), a reload that changes only the policy keeps the
// Limiter and its connections, and one that changes the connection
// settings replaces it and closes the old connections.
func TestServe_RateLimitsSurviveReload(t *testing.T) {
	redis := apikeystest.StartServer(t)
	policy := defaultPolicy + `rate_limits:
  redis: {addrs: ["` + redis.URL() + `"]}
  on_error: deny
  timeout: 100ms
  default: {requests: 2, per: 1m}
`
	cfg := devConfig(t, policy, "")
	p := startProc(t, cfg)
	p.waitReady(t)
	authz, _ := p.client(t)
	bob := mintToken(t, "bob", "")
	models := checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + bob})
	for i, want := range []int{200, 200, 429} {
		if _, st := check(t, authz, models); st != want {
			t.Fatalf("request %d: status %d, want %d", i+1, st, want)
		}
	}
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var rd readiness
	_ = json.NewDecoder(resp.Body).Decode(&rd)
	resp.Body.Close()
	if rd.Checks["rate_limits"] != "ok" {
		t.Errorf("/readyz checks = %v, want rate_limits: ok", rd.Checks)
	}
	before := rateLimiterConns(t, redis)
	if len(before) == 0 {
		t.Fatal("no extauthz-ratelimit connection in CLIENT LIST")
	}

	reload := func(from, to string) {
		t.Helper()
		b, _ := os.ReadFile(cfg)
		next := strings.Replace(string(b), from, to, 1)
		if next == string(b) {
			t.Fatalf("%q not in the config", from)
		}
		if err := os.WriteFile(cfg, []byte(next), 0o644); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(strings.Join(p.log(), "\n"), "config reloaded")
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		if !eventually(10*time.Second, func() bool {
			return strings.Count(strings.Join(p.log(), "\n"), "config reloaded") > n
		}) {
			t.Fatal("no config reloaded line within 10s")
		}
	}
	// Only the policy changes: same Limiter, same connections. The new
	// limit answers (ratelimit-limit 3), and the counter in Redis carries
	// over: the spent budget is not handed out again.
	reload("default: {requests: 2, per: 1m}", "default: {requests: 3, per: 1m}")
	r, err := authz.Check(context.Background(), models)
	if err != nil {
		t.Fatal(err)
	}
	limit := ""
	for _, h := range r.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "ratelimit-limit" {
			limit = h.GetHeader().GetValue()
		}
	}
	if r.GetDeniedResponse().GetStatus().GetCode() != 429 || limit != "3" {
		t.Errorf("after the policy reload: %v with ratelimit-limit %q, want 429 with 3", r.GetDeniedResponse().GetStatus(), limit)
	}
	if after := rateLimiterConns(t, redis); !slices.Equal(before, after) {
		t.Errorf("rate-limit connections %v became %v: the Limiter was rebuilt on a policy-only reload", before, after)
	}
	// The connection settings change: a new Limiter, the old one closed.
	reload("timeout: 100ms", "timeout: 150ms")
	if _, st := check(t, authz, models); st != 429 {
		t.Errorf("after the connection reload: status %d, want 429 (the counter lives in Redis)", st)
	}
	// The replaced generation is closed after its drain (check_timeout
	// plus a second), then its Limiter's connections: poll for up to 10s,
	// as a busy machine fires the drain timer late.
	deadline := time.Now().Add(10 * time.Second)
	after := rateLimiterConns(t, redis)
	for slices.ContainsFunc(before, func(id string) bool { return slices.Contains(after, id) }) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		after = rateLimiterConns(t, redis)
	}
	for _, id := range before {
		if slices.Contains(after, id) {
			t.Errorf("connection %s of the replaced Limiter is still open (after: %v)", id, after)
		}
	}
	mf := p.scrape(t)
	if got := value(t, mf, "extauthz_ratelimit_decisions_total", map[string]string{"route": "models", "result": "limited"}); got != 3 {
		t.Errorf("limited = %v, want 3", got)
	}
	if got := value(t, mf, "extauthz_llm_denials_total", map[string]string{"reason": "malformed_body"}); got != 0 {
		t.Errorf("llm denials = %v, want 0", got)
	}
}

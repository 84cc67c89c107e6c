package introspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/internal/logtest"
)

// idp is a real RFC 7662 endpoint over httptest: it checks the client
// credentials and answers each token with the JSON body registered for it.
type idp struct {
	srv      *httptest.Server
	requests atomic.Int64
	// inFlight and maxInFlight count the requests being served at once.
	inFlight, maxInFlight atomic.Int64
	mu                    sync.Mutex
	answers               map[string]string // token -> body
	status                int               // when set, every answer has this status
	delay                 time.Duration
	release               chan struct{}
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{answers: map[string]string{}, release: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() { close(p.release); p.srv.Close() })
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for m := p.maxInFlight.Load(); n > m && !p.maxInFlight.CompareAndSwap(m, n); m = p.maxInFlight.Load() {
	}
	p.mu.Lock()
	status, delay, body := p.status, p.delay, ""
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-p.release:
			return
		}
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != "extauthz" || secret != "s3cret" || r.Method != http.MethodPost {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	body, ok = p.answers[r.PostForm.Get("token")]
	p.mu.Unlock()
	if !ok {
		body = `{"active":false}`
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

func (p *idp) answer(token, body string) {
	p.mu.Lock()
	p.answers[token] = body
	p.mu.Unlock()
}

func (p *idp) set(status int, delay time.Duration) {
	p.mu.Lock()
	p.status, p.delay = status, delay
	p.mu.Unlock()
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

type fixture struct {
	idp    *idp
	client *Client
	reg    *prometheus.Registry
	logs   *logtest.Buffer
}

func newFixture(t *testing.T, secret string, edit func(*Config)) *fixture {
	t.Helper()
	p := newIDP(t)
	cfg := Config{Endpoint: p.srv.URL + "/introspect", ClientID: "extauthz", ClientSecretFile: writeSecret(t, secret), Timeout: 200 * time.Millisecond}
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	f := &fixture{idp: p, reg: reg, logs: &logtest.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(f.logs, nil))
	c, err := New(context.Background(), cfg, Deps{Logger: logger, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.client = c
	return f
}

func (f *fixture) logText() string { return f.logs.String() }

const token = "opaque-2YotnFZFEjr1zCsicMWpAA"

func TestClient_Introspect(t *testing.T) {
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Minute).Unix()
	tests := []struct {
		name    string
		edit    func(*Config)
		body    string
		status  int
		want    *Result
		wantErr error
	}{
		{"active", nil, fmt.Sprintf(`{"active":true,"sub":"alice","groups":["eng","ml"],"client_id":"cli","scope":"read write","exp":%d}`, future), 0,
			&Result{Subject: "alice", Groups: []string{"eng", "ml"}, ClientID: "cli", Scope: "read write", ExpiresAt: time.Unix(future, 0)}, nil},
		{"active_without_exp_single_group", nil, `{"active":true,"sub":"bob","groups":"eng"}`, 0, &Result{Subject: "bob", Groups: []string{"eng"}}, nil},
		{"groups_from_scope", func(c *Config) { c.GroupsClaim = "scope" }, `{"active":true,"sub":"svc","scope":"models:read chat"}`, 0,
			&Result{Subject: "svc", Scope: "models:read chat", Groups: []string{"models:read", "chat"}}, nil},
		{"custom_subject_claim", func(c *Config) { c.SubjectClaim = "username" }, `{"active":true,"sub":"123","username":"carol"}`, 0, &Result{Subject: "carol"}, nil},
		{"inactive", nil, `{"active":false}`, 0, nil, ErrInactive},
		{"expired", nil, fmt.Sprintf(`{"active":true,"sub":"alice","exp":%d}`, past), 0, nil, ErrInactive},
		{"not_yet_valid", nil, fmt.Sprintf(`{"active":true,"sub":"alice","nbf":%d}`, future), 0, nil, ErrInactive},
		{"no_subject", nil, `{"active":true}`, 0, nil, ErrInactive},
		{"audience_accepted", func(c *Config) { c.Audiences = []string{"llm-gateway"} }, `{"active":true,"sub":"a","aud":["other","llm-gateway"]}`, 0, &Result{Subject: "a"}, nil},
		{"audience_refused", func(c *Config) { c.Audiences = []string{"llm-gateway"} }, `{"active":true,"sub":"a","aud":"other"}`, 0, nil, ErrInactive},
		{"audience_missing", func(c *Config) { c.Audiences = []string{"llm-gateway"} }, `{"active":true,"sub":"a"}`, 0, nil, ErrInactive},
		{"active_as_string", nil, `{"active":"true","sub":"a"}`, 0, nil, ErrUnavailable},
		{"active_missing", nil, `{"sub":"a"}`, 0, nil, ErrUnavailable},
		{"duplicate_active", nil, `{"active":false,"active":true,"sub":"a"}`, 0, nil, ErrUnavailable},
		{"trailing_data", nil, `{"active":true,"sub":"a"} {"active":true}`, 0, nil, ErrUnavailable},
		{"garbage", nil, `<html>oops</html>`, 0, nil, ErrUnavailable},
		{"exp_as_string", nil, `{"active":true,"sub":"a","exp":"soon"}`, 0, nil, ErrUnavailable},
		// exp and nbf are NumericDates read as a JWT's are (jwks.NumericDate):
		// 0 to the end of year 9999.
		{"exp_at_the_end_of_year_9999", nil, `{"active":true,"sub":"a","exp":253402300799}`, 0, &Result{Subject: "a", ExpiresAt: time.Unix(253402300799, 0)}, nil},
		{"exp_after_year_9999", nil, `{"active":true,"sub":"a","exp":253402300800}`, 0, nil, ErrUnavailable},
		{"exp_negative", nil, `{"active":true,"sub":"a","exp":-1}`, 0, nil, ErrUnavailable},
		{"nbf_after_year_9999", nil, `{"active":true,"sub":"a","nbf":1e300}`, 0, nil, ErrUnavailable},
		{"too_large", nil, `{"active":true,"sub":"a","pad":"` + strings.Repeat("x", MaxResponseBytes) + `"}`, 0, nil, ErrUnavailable},
		{"server_error", nil, "", http.StatusInternalServerError, nil, ErrUnavailable},
		{"redirect", nil, "", http.StatusFound, nil, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "s3cret", tt.edit)
			f.idp.answer(token, tt.body)
			f.idp.set(tt.status, 0)
			got, err := f.client.Introspect(context.Background(), token)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Introspect error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), token) {
				t.Errorf("the error holds the token: %v", err)
			}
		})
	}
}

func TestClient_IntrospectSlowEndpoint(t *testing.T) {
	f := newFixture(t, "s3cret", func(c *Config) { c.Timeout = 100 * time.Millisecond })
	f.idp.set(0, 5*time.Second)
	start := time.Now()
	_, err := f.client.Introspect(context.Background(), token)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Introspect error = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Introspect took %s, want about the 100ms timeout", d)
	}
	// A caller whose own deadline ends first is answered then, not at the
	// client's timeout (3s here, so a busy machine's delays cannot blur
	// the two).
	f = newFixture(t, "s3cret", func(c *Config) { c.Timeout = 3 * time.Second })
	f.idp.set(0, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := f.client.Introspect(ctx, "another-token"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Introspect error = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Introspect took %s past the caller's 20ms deadline (client timeout 3s)", d)
	}
}

func TestClient_IntrospectEndpointDown(t *testing.T) {
	f := newFixture(t, "s3cret", nil)
	f.idp.srv.Close()
	if _, err := f.client.Introspect(context.Background(), token); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Introspect error = %v, want ErrUnavailable", err)
	}
	if got := testutil.ToFloat64(f.client.metrics.failed); got != 1 {
		t.Errorf(`requests_total{result="error"} = %v, want 1`, got)
	}
}

func TestClient_IntrospectWrongCredentials(t *testing.T) {
	f := newFixture(t, "wrong-secret", nil)
	f.idp.answer(token, `{"active":true,"sub":"alice"}`)
	for range 2 {
		if _, err := f.client.Introspect(context.Background(), token); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Introspect error = %v, want ErrUnavailable", err)
		}
	}
	if n := f.idp.requests.Load(); n != 2 {
		t.Errorf("endpoint requests = %d, want 2 (failures are never cached)", n)
	}
	logs := f.logText()
	if n := strings.Count(logs, `"level":"WARN"`); n != 1 {
		t.Errorf("Warn lines = %d, want 1 (rate limited):\n%s", n, logs)
	}
	if !strings.Contains(logs, "refused the client credentials") {
		t.Errorf("no Warn about the client credentials:\n%s", logs)
	}
	for _, secret := range []string{token, "wrong-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret %q:\n%s", secret, logs)
		}
	}
}

func TestClient_IntrospectCache(t *testing.T) {
	f := newFixture(t, "s3cret", func(c *Config) { c.NegativeCacheTTL = 50 * time.Millisecond })
	f.idp.answer(token, `{"active":true,"sub":"alice"}`)
	first, err := f.client.Introspect(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.client.Introspect(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("the second call did not return the cached Result")
	}
	if n := f.idp.requests.Load(); n != 1 {
		t.Errorf("endpoint requests = %d, want 1", n)
	}

	// Inactive answers are cached for negative_cache_ttl only.
	for range 3 {
		if _, err := f.client.Introspect(context.Background(), "revoked"); !errors.Is(err, ErrInactive) {
			t.Fatalf("Introspect error = %v, want ErrInactive", err)
		}
	}
	if n := f.idp.requests.Load(); n != 2 {
		t.Errorf("endpoint requests = %d, want 2 (inactive cached)", n)
	}
	time.Sleep(60 * time.Millisecond)
	f.idp.answer("revoked", `{"active":true,"sub":"bob"}`)
	if res, err := f.client.Introspect(context.Background(), "revoked"); err != nil || res.Subject != "bob" {
		t.Fatalf("after negative_cache_ttl: Introspect = %v, %v, want bob", res, err)
	}
	if got := testutil.ToFloat64(f.client.metrics.hit); got != 3 {
		t.Errorf(`cache_lookups_total{result="hit"} = %v, want 3`, got)
	}
}

func TestClient_IntrospectCacheUntilExp(t *testing.T) {
	f := newFixture(t, "s3cret", nil)
	now := time.Now()
	f.client.now = func() time.Time { return now }
	f.idp.answer(token, fmt.Sprintf(`{"active":true,"sub":"alice","exp":%d}`, now.Add(10*time.Second).Unix()))
	if _, err := f.client.Introspect(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	now = now.Add(11 * time.Second) // past exp, well within cache_ttl
	f.idp.answer(token, `{"active":false}`)
	if _, err := f.client.Introspect(context.Background(), token); !errors.Is(err, ErrInactive) {
		t.Fatalf("after exp: Introspect error = %v, want ErrInactive", err)
	}
	if n := f.idp.requests.Load(); n != 2 {
		t.Errorf("endpoint requests = %d, want 2 (the entry ended at exp)", n)
	}
}

func TestClient_IntrospectConcurrentCallsShareOneRequest(t *testing.T) {
	f := newFixture(t, "s3cret", nil)
	f.idp.answer(token, `{"active":true,"sub":"alice"}`)
	f.idp.set(0, 50*time.Millisecond)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.client.Introspect(context.Background(), token); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := f.idp.requests.Load(); n != 1 {
		t.Errorf("endpoint requests = %d, want 1", n)
	}
}

func TestClient_IntrospectTokenTooLarge(t *testing.T) {
	f := newFixture(t, "s3cret", func(c *Config) { c.MaxTokenBytes = 64 })
	if _, err := f.client.Introspect(context.Background(), strings.Repeat("a", 65)); !errors.Is(err, ErrInactive) {
		t.Fatalf("Introspect error = %v, want ErrInactive", err)
	}
	if n := f.idp.requests.Load(); n != 0 {
		t.Errorf("endpoint requests = %d, want 0", n)
	}
}

func TestMetrics_Lint(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n != 9 {
		t.Errorf("series = %d (%v), want 9 (every result pre-initialised)", n, err)
	}
}

// BenchmarkClient_IntrospectCached measures a cache hit: one SHA-256 and
// one LRU lookup.
func BenchmarkClient_IntrospectCached(b *testing.B) {
	p := &idp{answers: map[string]string{token: `{"active":true,"sub":"alice"}`}, release: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	defer p.srv.Close()
	dir := b.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		b.Fatal(err)
	}
	c, err := New(context.Background(), Config{Endpoint: p.srv.URL, ClientID: "extauthz", ClientSecretFile: secret},
		Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Introspect(context.Background(), token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Introspect(context.Background(), token); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClient_IntrospectResponseRules refuses active answers that an
// attacker could use to pass another kind of token, or a subject that
// would be read differently upstream: the same subject rules as for JWTs.
func TestClient_IntrospectResponseRules(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error
	}{
		{"token_type_absent_is_accepted", `{"active":true,"sub":"alice"}`, nil},
		{"token_type_bearer_is_accepted", `{"active":true,"sub":"alice","token_type":"Bearer"}`, nil},
		{"token_type_bearer_lower_case_is_accepted", `{"active":true,"sub":"alice","token_type":"bearer"}`, nil},
		{"token_type_access_token_is_accepted", `{"active":true,"sub":"alice","token_type":"access_token"}`, nil},
		{"token_type_rfc8693_access_token_is_accepted", `{"active":true,"sub":"alice","token_type":"urn:ietf:params:oauth:token-type:access_token"}`, nil},
		{"token_use_access_token_is_accepted", `{"active":true,"sub":"alice","token_type":"Bearer","token_use":"access_token"}`, nil},
		{"token_type_refresh_token_is_inactive", `{"active":true,"sub":"alice","token_type":"refresh_token"}`, ErrInactive},
		{"token_type_rfc8693_refresh_token_is_inactive", `{"active":true,"sub":"alice","token_type":"urn:ietf:params:oauth:token-type:refresh_token"}`, ErrInactive},
		{"token_type_id_token_is_inactive", `{"active":true,"sub":"alice","token_type":"id_token"}`, ErrInactive},
		{"token_type_dpop_is_inactive", `{"active":true,"sub":"alice","token_type":"DPoP"}`, ErrInactive},
		{"token_type_n_a_is_inactive", `{"active":true,"sub":"alice","token_type":"N_A"}`, ErrInactive},
		{"token_type_empty_is_inactive", `{"active":true,"sub":"alice","token_type":""}`, ErrInactive},
		{"token_type_not_a_string_is_inactive", `{"active":true,"sub":"alice","token_type":["Bearer"]}`, ErrInactive},
		{"token_type_bearer_with_space_is_inactive", `{"active":true,"sub":"alice","token_type":"Bearer "}`, ErrInactive},
		{"token_use_refresh_token_is_inactive", `{"active":true,"sub":"alice","token_type":"Bearer","token_use":"refresh_token"}`, ErrInactive},
		{"token_use_id_is_inactive", `{"active":true,"sub":"alice","token_use":"id"}`, ErrInactive},
		{"keycloak_typ_refresh_is_inactive", `{"active":true,"sub":"alice","typ":"Refresh"}`, ErrInactive},
		{"keycloak_typ_id_is_inactive", `{"active":true,"sub":"alice","typ":"ID"}`, ErrInactive},
		{"keycloak_typ_bearer_is_accepted", `{"active":true,"sub":"alice","typ":"Bearer","token_type":"Bearer"}`, nil},
		{"subject_with_nul_is_inactive", `{"active":true,"sub":"alice\u0000admin"}`, ErrInactive},
		{"subject_with_newline_is_inactive", `{"active":true,"sub":"alice\nx-auth-roles: admin"}`, ErrInactive},
		{"subject_with_del_is_inactive", `{"active":true,"sub":"alice\u007f"}`, ErrInactive},
		{"subject_with_leading_space_is_inactive", `{"active":true,"sub":" alice"}`, ErrInactive},
		{"subject_with_trailing_space_is_inactive", `{"active":true,"sub":"alice "}`, ErrInactive},
		{"subject_with_trailing_nbsp_is_inactive", `{"active":true,"sub":"alice\u00a0"}`, ErrInactive},
		{"subject_only_space_is_inactive", `{"active":true,"sub":" "}`, ErrInactive},
		{"subject_with_inner_space_is_accepted", `{"active":true,"sub":"alice smith"}`, nil},
		{"subject_not_a_string_is_inactive", `{"active":true,"sub":42}`, ErrInactive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "s3cret", nil)
			f.idp.answer(token, tt.body)
			got, err := f.client.Introspect(context.Background(), token)
			if tt.wantErr == nil {
				if err != nil || got == nil {
					t.Fatalf("Introspect = %v, %v, want accepted", got, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Introspect = %v, %v, want %v", got, err, tt.wantErr)
			}
		})
	}
}

// TestClient_IntrospectFloodOfDistinctTokens sends 300 distinct garbage
// tokens at once: the endpoint sees at most burst + rate*elapsed requests,
// the rest are refused with ErrUnavailable (ErrRateLimited) without a
// request, and none is ever an answer that allows.
func TestClient_IntrospectFloodOfDistinctTokens(t *testing.T) {
	const rate, burst = 20, 10
	// A Timeout long enough that, without the limit, all 300 would reach
	// the endpoint on a loaded machine.
	f := newFixture(t, "s3cret", func(c *Config) {
		c.MaxRequestsPerSecond, c.MaxRequestsBurst, c.Timeout = rate, burst, 2*time.Second
	})
	start := time.Now()
	var wg sync.WaitGroup
	var inactive, limited, other atomic.Int64
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.client.Introspect(context.Background(), fmt.Sprintf("garbage-%d", i))
			switch {
			case res != nil || err == nil:
				t.Errorf("garbage-%d: Introspect = %v, %v, want an error", i, res, err)
			case errors.Is(err, ErrInactive):
				inactive.Add(1)
			case errors.Is(err, ErrRateLimited) && errors.Is(err, ErrUnavailable):
				limited.Add(1)
			default:
				other.Add(1)
				t.Errorf("garbage-%d: Introspect error = %v, want ErrInactive or ErrRateLimited", i, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	max := int64(burst + rate*elapsed.Seconds() + 1)
	if n := f.idp.requests.Load(); n > max {
		t.Errorf("endpoint requests = %d in %s, want at most %d (burst %d + %d/s)", n, elapsed, max, burst, rate)
	}
	if n := f.idp.requests.Load(); inactive.Load() != n {
		t.Errorf("inactive answers = %d, want one per endpoint request (%d)", inactive.Load(), n)
	}
	if got := testutil.ToFloat64(f.client.metrics.rateLimited); got != float64(limited.Load()) || got == 0 {
		t.Errorf(`throttled_total{reason="rate_limited"} = %v, want %d (> 0)`, got, limited.Load())
	}
	// Refused tokens are not cached: once the bucket refills, one is asked.
	time.Sleep(time.Second / rate * 2)
	before := f.idp.requests.Load()
	if _, err := f.client.Introspect(context.Background(), "garbage-fresh"); !errors.Is(err, ErrInactive) {
		t.Fatalf("after the bucket refilled: Introspect error = %v, want ErrInactive", err)
	}
	if n := f.idp.requests.Load() - before; n != 1 {
		t.Errorf("endpoint requests after refill = %d, want 1", n)
	}
}

// TestClient_IntrospectOneTokenManyChecks: 300 concurrent checks of one
// token (active or inactive) make one request; the inactive one repeated
// within negative_cache_ttl makes no more.
func TestClient_IntrospectOneTokenManyChecks(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		wantErr    error
	}{
		{"active", `{"active":true,"sub":"alice"}`, nil},
		{"inactive", `{"active":false}`, ErrInactive},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "s3cret", func(c *Config) {
				c.MaxRequestsPerSecond, c.MaxRequestsBurst, c.NegativeCacheTTL = 1, 1, time.Minute
			})
			f.idp.answer(token, tt.body)
			f.idp.set(0, 50*time.Millisecond)
			for range 3 {
				var wg sync.WaitGroup
				for range 300 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := f.client.Introspect(context.Background(), token); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
							t.Errorf("Introspect error = %v, want %v", err, tt.wantErr)
						}
					}()
				}
				wg.Wait()
			}
			if n := f.idp.requests.Load(); n != 1 {
				t.Errorf("endpoint requests = %d, want 1", n)
			}
		})
	}
}

// TestClient_IntrospectConcurrencyIsBounded: checks that give up (their
// deadline ends) leave their request running, detached; however many such
// checks arrive, at most max_concurrent requests are in flight, and a check
// that finds no free slot is refused with ErrUnavailable (ErrBusy) without
// a request.
func TestClient_IntrospectConcurrencyIsBounded(t *testing.T) {
	const slots = 4
	f := newFixture(t, "s3cret", func(c *Config) {
		c.MaxConcurrent, c.Timeout, c.MaxRequestsPerSecond, c.MaxRequestsBurst = slots, 300*time.Millisecond, 1e6, 1e6
	})
	f.idp.set(0, time.Second) // slower than Timeout: every request runs its full 300ms
	var wg sync.WaitGroup
	var busy atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			res, err := f.client.Introspect(ctx, fmt.Sprintf("slow-%d", i))
			if res != nil || !errors.Is(err, ErrUnavailable) {
				t.Errorf("slow-%d: Introspect = %v, %v, want ErrUnavailable", i, res, err)
			}
			if errors.Is(err, ErrBusy) {
				busy.Add(1)
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // let the detached requests reach the endpoint
	if n := f.idp.maxInFlight.Load(); n > slots {
		t.Errorf("endpoint requests in flight at once = %d, want at most %d", n, slots)
	}
	if n := f.idp.requests.Load(); n > slots {
		t.Errorf("endpoint requests = %d within one Timeout, want at most %d", n, slots)
	}
	if got := testutil.ToFloat64(f.client.metrics.busy); got != float64(busy.Load()) || got < 200-slots {
		t.Errorf(`throttled_total{reason="concurrency_limited"} = %v, want %d (>= %d)`, got, busy.Load(), 200-slots)
	}
	// Once the requests end (Timeout), the slots are free again: poll (a
	// busy machine may end them late) until a check gets through.
	f.idp.set(0, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.client.Introspect(context.Background(), "after")
		if errors.Is(err, ErrInactive) {
			break
		}
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("after the slots freed: Introspect error = %v, want ErrInactive", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClient_IntrospectGarbageDoesNotEvictActive: inactive answers live in
// their own bounded cache, so a flood of garbage tokens neither grows memory
// past negative_cache_size nor evicts the active answers (which would turn
// every legitimate check into a request, then a refusal).
func TestClient_IntrospectGarbageDoesNotEvictActive(t *testing.T) {
	f := newFixture(t, "s3cret", func(c *Config) {
		c.CacheSize, c.NegativeCacheSize, c.MaxRequestsPerSecond, c.MaxRequestsBurst = 10, 5, 1e6, 1e6
	})
	f.idp.answer(token, `{"active":true,"sub":"alice"}`)
	if _, err := f.client.Introspect(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := f.client.Introspect(context.Background(), fmt.Sprintf("garbage-%d", i)); !errors.Is(err, ErrInactive) {
			t.Fatalf("garbage-%d: Introspect error = %v, want ErrInactive", i, err)
		}
	}
	before := f.idp.requests.Load()
	if _, err := f.client.Introspect(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if n := f.idp.requests.Load() - before; n != 0 {
		t.Errorf("endpoint requests for the active token after the flood = %d, want 0 (still cached)", n)
	}
	if n := f.client.negative.Len(); n > 5 {
		t.Errorf("negative cache entries = %d, want at most negative_cache_size 5", n)
	}
}

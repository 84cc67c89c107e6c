package envoyauthz_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/rolemap"
)

// TestCheck_OpaqueFloodIsBounded sends 300 Checks with distinct garbage
// bearer tokens at once over a real gRPC connection, against a real RFC 7662
// endpoint that counts its requests: the endpoint sees at most burst +
// rate*elapsed of them, every other Check is 503 unavailable with
// retry-after (reason introspection_rate_limited), and none is allowed.
// Active answers for a refresh token or with a padded subject are 401.
func TestCheck_OpaqueFloodIsBounded(t *testing.T) {
	const rate, burst = 10, 5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idp := startIdP(t, map[string]string{
		"opaque-alice":         `{"active":true,"sub":"alice","groups":["eng"],"token_type":"Bearer"}`,
		"opaque-refresh":       `{"active":true,"sub":"alice","groups":["eng"],"token_type":"refresh_token"}`,
		"opaque-hydra-refresh": `{"active":true,"sub":"alice","groups":["eng"],"token_type":"Bearer","token_use":"refresh_token"}`,
		"opaque-padded-sub":    `{"active":true,"sub":"alice ","groups":["eng"]}`,
	})
	requests, secretFile := &idp.requests, idp.secretFile
	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	ic, err := introspect.New(ctx, introspect.Config{
		Endpoint: idp.URL + "/oauth2/introspect", ClientID: "extauthz", ClientSecretFile: secretFile, Timeout: time.Second,
		MaxRequestsPerSecond: rate, MaxRequestsBurst: burst, MaxConcurrent: 32, // no busy refusals here: only the rate bound
	}, introspect.Deps{Logger: logger, Metrics: introspect.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	mapper, err := rolemap.New(policy.mapping, policy.roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: policy.routes, DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: "ek",
	}, authz.Deps{Introspector: ic, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(e, authz.ServerOptions{CheckTimeout: 2 * time.Second, AllowSampleRate: 1}, logger, authz.NewMetrics(reg))
	client := serveBufconn(t, srv)
	check := func(token string) (codes.Code, string) {
		resp, err := client.Check(ctx, checkRequest("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + token}))
		if err != nil {
			t.Errorf("Check returned an RPC error: %v", err)
			return codes.Unknown, ""
		}
		var retry string
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if strings.EqualFold(h.GetHeader().GetKey(), "retry-after") {
				retry = h.GetHeader().GetValue()
			}
		}
		return codes.Code(resp.GetStatus().GetCode()), retry
	}

	// The legitimate token is introspected before the flood and stays
	// cached through it.
	if c, _ := check("opaque-alice"); c != codes.OK {
		t.Fatalf("opaque-alice before the flood: %v, want OK", c)
	}
	time.Sleep(time.Second / rate * burst) // refill the bucket

	start := time.Now()
	before := requests.Load()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, retry := check(fmt.Sprintf("garbage-%03d-%s", i, strings.Repeat("x", 20)))
			mu.Lock()
			got[fmt.Sprintf("%v retry-after=%q", c, retry)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sent := requests.Load() - before
	if max := int64(burst + rate*elapsed.Seconds() + 1); sent > max {
		t.Errorf("endpoint requests = %d in %s, want at most %d (burst %d + %d/s)", sent, elapsed, max, burst, rate)
	}
	want := map[string]int{
		fmt.Sprintf("%v retry-after=%q", codes.Unauthenticated, ""):                  int(sent),
		fmt.Sprintf("%v retry-after=%q", codes.Unavailable, authz.RetryAfterSeconds): 300 - int(sent),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check outcomes of the flood (-want +got):\n%s", diff)
	}
	if c, _ := check("opaque-alice"); c != codes.OK {
		t.Errorf("opaque-alice after the flood: %v, want OK (cached)", c)
	}
	if !strings.Contains(logs.String(), `"reason":"introspection_rate_limited"`) {
		t.Errorf("the decision log lacks reason introspection_rate_limited")
	}

	// Active answers that are not access tokens, or whose subject would
	// read differently upstream, are 401.
	time.Sleep(time.Second / rate * burst)
	for _, tok := range []string{"opaque-refresh", "opaque-hydra-refresh", "opaque-padded-sub"} {
		t.Run(tok, func(t *testing.T) {
			if c, _ := check(tok); c != codes.Unauthenticated {
				t.Errorf("%s: %v, want Unauthenticated", tok, c)
			}
		})
	}
}

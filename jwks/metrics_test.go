package jwks

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

func TestMetrics_SeriesStartAtZeroAndFollowRefreshes(t *testing.T) {
	idp := jwkstest.NewServer(t)
	env := newEnv()
	v := env.start(t, configWith(urlProvider("corp", idp)), nil)
	tok := idp.Sign(claims(idp))
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP extauthz_jwks_keys Usable signature keys currently loaded for a provider.
# TYPE extauthz_jwks_keys gauge
extauthz_jwks_keys{provider="corp"} 3
# HELP extauthz_jwks_refresh_total Fetches of a provider's JWK Set (URL, discovery or file), by result.
# TYPE extauthz_jwks_refresh_total counter
extauthz_jwks_refresh_total{provider="corp",result="failure"} 0
extauthz_jwks_refresh_total{provider="corp",result="success"} 1
# HELP extauthz_token_cache_hits_total Token verifications answered from the verified-token cache.
# TYPE extauthz_token_cache_hits_total counter
extauthz_token_cache_hits_total 2
# HELP extauthz_token_cache_misses_total Token verifications not found in the verified-token cache.
# TYPE extauthz_token_cache_misses_total counter
extauthz_token_cache_misses_total 1
`
	if err := testutil.GatherAndCompare(env.reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(env.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestMetrics_ProviderSeriesSurviveReloadAndGoWithTheLastVerifier(t *testing.T) {
	a := jwkstest.NewServer(t)
	b := jwkstest.NewServer(t)
	env := newEnv()
	old, err := New(context.Background(), configWith(urlProvider("a", a), urlProvider("b", b)), env.deps)
	if err != nil {
		t.Fatal(err)
	}
	// The reloaded config drops provider b.
	next, err := New(context.Background(), configWith(urlProvider("a", a)), env.deps)
	if err != nil {
		t.Fatal(err)
	}
	series := func() int { return testutil.CollectAndCount(env.deps.Metrics.keys) }
	if n := series(); n != 2 {
		t.Fatalf("%d extauthz_jwks_keys series with both Verifiers, want 2", n)
	}
	old.Close()
	if n := series(); n != 1 {
		t.Errorf("%d extauthz_jwks_keys series after closing the old Verifier, want 1 (provider a)", n)
	}
	if got := testutil.ToFloat64(env.deps.Metrics.keys.WithLabelValues("a")); got != 3 {
		t.Errorf("extauthz_jwks_keys{provider=a} = %v, want 3", got)
	}
	next.Close()
	if n := series(); n != 0 {
		t.Errorf("%d extauthz_jwks_keys series after closing every Verifier, want 0", n)
	}
}

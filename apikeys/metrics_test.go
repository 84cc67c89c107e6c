package apikeys

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

func TestMetrics_StartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	problems, err := testutil.CollectAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	want := `
# HELP extauthz_apikey_lookups_total API-key lookups by source of the answer (cache, redis, memory, local) and result.
# TYPE extauthz_apikey_lookups_total counter
extauthz_apikey_lookups_total{result="corrupt",source="cache"} 0
extauthz_apikey_lookups_total{result="corrupt",source="redis"} 0
extauthz_apikey_lookups_total{result="expired",source="cache"} 0
extauthz_apikey_lookups_total{result="expired",source="memory"} 0
extauthz_apikey_lookups_total{result="expired",source="redis"} 0
extauthz_apikey_lookups_total{result="error",source="redis"} 0
extauthz_apikey_lookups_total{result="found",source="cache"} 0
extauthz_apikey_lookups_total{result="found",source="memory"} 0
extauthz_apikey_lookups_total{result="found",source="redis"} 0
extauthz_apikey_lookups_total{result="malformed",source="local"} 0
extauthz_apikey_lookups_total{result="not_found",source="cache"} 0
extauthz_apikey_lookups_total{result="not_found",source="memory"} 0
extauthz_apikey_lookups_total{result="not_found",source="redis"} 0
extauthz_apikey_lookups_total{result="revoked",source="cache"} 0
extauthz_apikey_lookups_total{result="revoked",source="memory"} 0
extauthz_apikey_lookups_total{result="revoked",source="redis"} 0
# HELP extauthz_redis_errors_total Failed Redis calls made by the API-key store, timeouts included.
# TYPE extauthz_redis_errors_total counter
extauthz_redis_errors_total 0
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestMetrics_CountLookups(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	// Keys are made before the measured store exists, so that no pub/sub
	// event reaches its caches during the lookups.
	admin := newStore(t, redisConfig(srv.URL()))
	active, _, err := admin.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rec, err := admin.Create(ctx, CreateOptions{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	corrupt, rec, err := admin.Create(ctx, CreateOptions{Owner: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).HSet(ctx, recordKeyPfx+rec.Hash, fieldRateLimit, "10/1m").Err(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s, err := New(ctx, redisConfig(srv.URL()), Deps{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitLive(t, s)

	unknown := mustKey(t, "ek")
	_, _ = s.Lookup(ctx, "ek_garbage") // local malformed
	_, _ = s.Lookup(ctx, active)       // redis found
	_, _ = s.Lookup(ctx, active)       // cache found
	_, _ = s.Lookup(ctx, unknown)      // redis not_found
	_, _ = s.Lookup(ctx, unknown)      // cache not_found
	_, _ = s.Lookup(ctx, revoked)      // redis revoked
	_, _ = s.Lookup(ctx, revoked)      // cache revoked
	_, _ = s.Lookup(ctx, corrupt)      // redis corrupt
	_, _ = s.Lookup(ctx, corrupt)      // cache corrupt
	srv.Stop()
	_, _ = s.Lookup(ctx, mustKey(t, "ek")) // redis error

	want := `
# HELP extauthz_apikey_lookups_total API-key lookups by source of the answer (cache, redis, memory, local) and result.
# TYPE extauthz_apikey_lookups_total counter
extauthz_apikey_lookups_total{result="corrupt",source="cache"} 1
extauthz_apikey_lookups_total{result="corrupt",source="redis"} 1
extauthz_apikey_lookups_total{result="expired",source="cache"} 0
extauthz_apikey_lookups_total{result="expired",source="memory"} 0
extauthz_apikey_lookups_total{result="expired",source="redis"} 0
extauthz_apikey_lookups_total{result="error",source="redis"} 1
extauthz_apikey_lookups_total{result="found",source="cache"} 1
extauthz_apikey_lookups_total{result="found",source="memory"} 0
extauthz_apikey_lookups_total{result="found",source="redis"} 1
extauthz_apikey_lookups_total{result="malformed",source="local"} 1
extauthz_apikey_lookups_total{result="not_found",source="cache"} 1
extauthz_apikey_lookups_total{result="not_found",source="memory"} 0
extauthz_apikey_lookups_total{result="not_found",source="redis"} 1
extauthz_apikey_lookups_total{result="revoked",source="cache"} 1
extauthz_apikey_lookups_total{result="revoked",source="memory"} 0
extauthz_apikey_lookups_total{result="revoked",source="redis"} 1
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "extauthz_apikey_lookups_total"); err != nil {
		t.Error(err)
	}
	// The failed lookup, and the subscription noticing the outage.
	if n := testutil.ToFloat64(m.redisErrors); n < 1 {
		t.Errorf("extauthz_redis_errors_total = %v, want at least 1", n)
	}
}

// An idle subscription is kept alive by PINGs without being counted as an
// error or taken down (which would stop caching).
func TestStore_IdleSubscriptionStaysUp(t *testing.T) {
	if testing.Short() {
		t.Skip("waits several ping intervals")
	}
	url := apikeystest.StartRedis(t)
	m := NewMetrics(nil)
	s, err := New(context.Background(), redisConfig(url), Deps{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitLive(t, s)
	time.Sleep(staleAfter + pingInterval/2)
	if !s.live.Load() {
		t.Error("subscription went down while idle")
	}
	if n := testutil.ToFloat64(m.redisErrors); n != 0 {
		t.Errorf("extauthz_redis_errors_total = %v while idle, want 0", n)
	}
}

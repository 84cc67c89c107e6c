package envoyauthz_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
	"github.com/extauthz/extauthz/rolemap"
)

// drill is a real engine (jwkstest JWKS, apikeys store) behind a real gRPC
// server on bufconn, with its registry exposed so tests can read the
// store's counters.
type drill struct {
	idp    *jwkstest.Server
	store  *apikeys.Store
	server *authz.Server
	client authv3.AuthorizationClient
	reg    *prometheus.Registry
	logs   *logtest.Buffer
}

func newDrill(t *testing.T, keys apikeys.Config) *drill {
	t.Helper()
	return newDrillCheckTimeout(t, keys, time.Second)
}

// newDrillCheckTimeout is newDrill with the server's check_timeout.
func newDrillCheckTimeout(t *testing.T, keys apikeys.Config, checkTimeout time.Duration) *drill {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &drill{idp: jwkstest.NewServer(t), reg: prometheus.NewRegistry(), logs: &logtest.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(d.logs, nil))
	jcfg := jwks.Default()
	jcfg.Providers = []jwks.ProviderConfig{{Name: "idp", Issuer: d.idp.Issuer(), Audiences: []string{"llm-gateway"}, JWKSURL: d.idp.JWKSURL()}}
	jcfg.Providers[0].ApplyDefaults()
	v, err := jwks.New(ctx, jcfg, jwks.Deps{Logger: logger, Metrics: jwks.NewMetrics(d.reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	if !v.Ready() {
		t.Fatal("JWKS not loaded")
	}
	d.store, err = apikeys.New(ctx, keys, apikeys.Deps{Logger: logger, Metrics: apikeys.NewMetrics(d.reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.store.Close() })
	mapper, err := rolemap.New(policy.mapping, policy.roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes: policy.routes, DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.Headers{Prefix: "x-auth-", StripCredentials: true},
		APIKeyPrefix: keys.Prefix,
	}, authz.Deps{Verifier: v, Keys: d.store, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	d.server = authz.NewServer(e, authz.ServerOptions{CheckTimeout: checkTimeout, AllowSampleRate: 1}, logger, authz.NewMetrics(d.reg))

	d.client = serveBufconn(t, d.server)
	return d
}

// counter returns the value of a counter series of the drill's registry.
func (d *drill) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := d.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// status runs one Check and returns the HTTP status Envoy would send.
func (d *drill) status(ctx context.Context, headers map[string]string, method, path string) (int, error) {
	st, _, err := d.check(ctx, headers, method, path)
	return st, err
}

// check runs one Check and returns the HTTP status Envoy would send and the
// decision's reason (from the response's dynamic metadata).
func (d *drill) check(ctx context.Context, headers map[string]string, method, path string) (int, string, error) {
	resp, err := d.client.Check(ctx, checkRequest(method, path, headers))
	if err != nil {
		return 0, "", err
	}
	reason := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
	if dr := resp.GetDeniedResponse(); dr != nil {
		return int(dr.GetStatus().GetCode()), reason, nil
	}
	return 200, reason, nil
}

// waitCached checks key until an answer comes from the store's cache, so
// the key is known to be cached (the store caches only while its
// invalidation subscription is up).
func (d *drill) waitCached(t *testing.T, key string) {
	t.Helper()
	hits := map[string]string{"source": "cache", "result": "found"}
	before := d.counter(t, "extauthz_apikey_lookups_total", hits)
	deadline := time.Now().Add(5 * time.Second)
	for d.counter(t, "extauthz_apikey_lookups_total", hits) == before {
		if st, err := d.status(context.Background(), map[string]string{"x-api-key": key}, "GET", "/v1/models"); err != nil || st != 200 {
			t.Fatalf("key check = %d, %v; want 200", st, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the key was never answered from the cache within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wellFormedKey returns a key of the given prefix with a valid checksum
// that no store has issued: it passes the local shape check and costs a
// Redis lookup.
func wellFormedKey(prefix string, r *rand.Rand) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 0, len(prefix)+1+36)
	b = append(b, prefix...)
	b = append(b, '_')
	for range 30 {
		b = append(b, base62[r.IntN(62)])
	}
	sum := uint64(crc32.ChecksumIEEE(b))
	var cs [6]byte
	for i := 5; i >= 0; i-- {
		cs[i] = base62[sum%62]
		sum /= 62
	}
	return string(append(b, cs[:]...))
}

// Drill phases.
const (
	phaseUp = iota
	phaseHung
	phaseKilled
	phaseRestarted
	numPhases
)

var phaseNames = [numPhases]string{"up", "hung", "killed", "restarted"}

// Credential kinds of the drill's load.
const (
	kindCachedKey = iota
	kindUncachedKey
	kindUnknownKey
	kindGarbage
	kindJWT
	numKinds
)

var kindNames = [numKinds]string{"cached key", "uncached key", "unknown key", "garbage", "jwt"}

// TestCheck_RedisOutageUnderConcurrentLoad kills and restarts a real Redis
// while eight goroutines keep checking: a valid key cached before the
// outage, a valid key never looked up before it, fresh well-formed unknown
// keys, garbage, and JWTs. Redis first hangs (SIGSTOP), then dies (SIGKILL),
// then comes back with its data. Never is an unknown key, garbage, or the
// uncached key during the outage allowed; no Check fails at the RPC level;
// every check during the outage ends on the Redis timeout (reason
// redis_timeout or redis_unavailable, never check_timeout); everything recovers once Redis is back; and no goroutine
// is left behind.
func TestCheck_RedisOutageUnderConcurrentLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("outage drill: several seconds")
	}
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last, after every other cleanup

	srv := apikeystest.StartServer(t)
	const redisTimeout = 100 * time.Millisecond
	keys := apikeys.Default()
	keys.Redis = &apikeys.RedisConfig{Addrs: []string{srv.URL()}, Timeout: redisTimeout}
	// A check_timeout far above the Redis timeout: a check that the Redis
	// timeout failed to bound ends on check_timeout, which is asserted
	// never to happen (its reason, not the wall clock, carries the
	// assertion: a busy machine is slow).
	const checkTimeout = 5 * time.Second
	d := newDrillCheckTimeout(t, keys, checkTimeout)
	ctx := context.Background()

	cached, _, err := d.store.Create(ctx, apikeys.CreateOptions{Owner: "carol", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	uncached, _, err := d.store.Create(ctx, apikeys.CreateOptions{Owner: "erin", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	// The data must survive SIGKILL: write the snapshot Redis loads on start.
	if err := srv.Client(t).Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	d.waitCached(t, cached)
	jwtTok := sign(t, d.idp, jwt.MapClaims{"groups": []string{"eng"}})
	r := rand.New(rand.NewPCG(1, 2))
	k := wellFormedKey("ek", r)
	garbage := []string{
		"Bearer " + k[:len(k)-1] + string("10"[min(1, int(k[len(k)-1]-'0'))]), // checksum off by one character
		"Bearer ek_short",
		"Bearer not-a-credential",
		"Bearer aaaa.bbbb.cccc",
		"Bearer " + jwtTok[:len(jwtTok)-6] + "AAAAAA", // bad signature
	}

	var phase atomic.Int32
	type tally struct {
		status  map[int]int
		maxTook time.Duration
	}
	var mu sync.Mutex
	tallies := map[[2]int]*tally{} // {phase, kind}
	var rpcErrs atomic.Int64
	var violations []string
	// record counts a check by the phase it started in: its latency always,
	// its status only when it also ended in that phase.
	record := func(ph, end, kind, st int, reason string, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		k := [2]int{ph, kind}
		ta := tallies[k]
		if ta == nil {
			ta = &tally{status: map[int]int{}}
			tallies[k] = ta
		}
		ta.maxTook = max(ta.maxTook, took)
		// Whatever the phase it ended in, no check may outlive the Redis
		// timeout until check_timeout cuts it.
		if reason == string(authz.ReasonCheckTimeout) && len(violations) < 20 {
			violations = append(violations, fmt.Sprintf("%s started in phase %s ended on check_timeout: the Redis timeout did not bound it", kindNames[kind], phaseNames[ph]))
		}
		if end != ph {
			return
		}
		ta.status[st]++
		outage := ph == phaseHung || ph == phaseKilled
		bad := ""
		switch {
		case outage && st == 503 && reason != string(authz.ReasonRedisTimeout) && reason != string(authz.ReasonRedisUnavailable):
			bad = fmt.Sprintf("503 with reason %q, want redis_timeout or redis_unavailable", reason)
		case st == 200 && (kind == kindUnknownKey || kind == kindGarbage):
			bad = "allowed"
		case st == 200 && kind == kindUncachedKey && (ph == phaseHung || ph == phaseKilled):
			bad = "allowed during the outage though never cached"
		case kind == kindGarbage && st != 401:
			bad = "garbage not refused locally as 401"
		case kind == kindJWT && st != 200:
			bad = "JWT refused: the JWT path does not depend on Redis"
		case kind == kindCachedKey && (ph == phaseHung || ph == phaseKilled) && st != 200:
			bad = "cached key refused during the outage"
		}
		if bad != "" && len(violations) < 20 {
			violations = append(violations, fmt.Sprintf("%s in phase %s: status %d (reason %q): %s", kindNames[kind], phaseNames[ph], st, reason, bad))
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ph := int(phase.Load())
				kind := (i + w) % numKinds
				h := map[string]string{}
				switch kind {
				case kindCachedKey:
					h["x-api-key"] = cached
				case kindUncachedKey:
					if ph == phaseUp {
						continue // it must stay uncached until the outage
					}
					h["authorization"] = "Bearer " + uncached
				case kindUnknownKey:
					h["x-api-key"] = wellFormedKey("ek", r)
				case kindGarbage:
					h["authorization"] = garbage[r.IntN(len(garbage))]
				case kindJWT:
					h["authorization"] = "Bearer " + jwtTok
				}
				start := time.Now()
				st, reason, err := d.check(ctx, h, "GET", "/v1/models")
				took := time.Since(start)
				if err != nil {
					rpcErrs.Add(1)
					continue
				}
				record(ph, int(phase.Load()), kind, st, reason, took)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	settle := func() int {
		// The goroutines of idle clients and servers; wait for stragglers.
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	baseline := settle()

	time.Sleep(700 * time.Millisecond)
	// Hang Redis before the phase says so: the other order lets a check of
	// the uncached key reach a Redis that still answers and count as an
	// allow during the outage. SIGSTOP takes effect asynchronously, hence
	// the pause before the phase changes.
	srv.Pause()
	time.Sleep(100 * time.Millisecond)
	phase.Store(phaseHung)
	time.Sleep(time.Second)
	phase.Store(phaseKilled)
	srv.Kill() // SIGKILL, while hung
	time.Sleep(time.Second)
	phase.Store(phaseRestarted) // before Start: Redis answers before Start returns
	srv.Start()
	recovered := time.Now()
	for {
		st, err := d.status(ctx, map[string]string{"x-api-key": uncached}, "GET", "/v1/models")
		if err == nil && st == 200 {
			break
		}
		if time.Since(recovered) > 10*time.Second {
			t.Fatalf("the uncached key is still refused (%d, %v) 10s after Redis returned", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("recovered %v after Redis restarted", time.Since(recovered).Round(time.Millisecond))
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()

	for _, v := range violations {
		t.Error(v)
	}
	if n := rpcErrs.Load(); n > 0 {
		t.Errorf("%d checks failed at the RPC level; Check must always answer", n)
	}
	for ph := range numPhases {
		for kind := range numKinds {
			ta := tallies[[2]int{ph, kind}]
			if ta == nil {
				if kind != kindUncachedKey || ph != phaseUp {
					t.Errorf("no %s check started in phase %s", kindNames[kind], phaseNames[ph])
				}
				continue
			}
			t.Logf("%-9s %-12s %v max %v", phaseNames[ph], kindNames[kind], ta.status, ta.maxTook.Round(time.Millisecond))
			// A hung Redis costs at most its timeout: that no check ended
			// on check_timeout is asserted by record; this wall-clock bound
			// is loose (a busy machine is slow) but well under checkTimeout.
			if (ph == phaseHung || ph == phaseKilled) && ta.maxTook > 2*time.Second {
				t.Errorf("%s checks took up to %v while Redis was %s, want about the Redis timeout %v (check_timeout %v)", kindNames[kind], ta.maxTook, phaseNames[ph], redisTimeout, checkTimeout)
			}
			if len(ta.status) == 0 {
				t.Errorf("no %s check completed in phase %s", kindNames[kind], phaseNames[ph])
			}
		}
	}
	for _, ph := range []int{phaseHung, phaseKilled} {
		if ta := tallies[[2]int{ph, kindUncachedKey}]; ta != nil && ta.status[503] == 0 {
			t.Errorf("the uncached key never got 503 while Redis was %s: %v", phaseNames[ph], ta.status)
		}
	}
	if ta := tallies[[2]int{phaseRestarted, kindUnknownKey}]; ta != nil && ta.status[401] == 0 {
		t.Errorf("unknown keys after the restart: %v, want 401", ta.status)
	}

	// No goroutine is left behind by the outage (stuck lookups, leaked
	// dials or subscriptions); goleak checks again after the teardown.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := settle()
		if n <= baseline+4 {
			t.Logf("goroutines: %d before the outage, %d after", baseline, n)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before the outage, %d after it\n%s", baseline, n, buf[:runtime.Stack(buf, true)])
			break
		}
	}
}

// TestCheck_RevocationMissedDuringPubSubGapIsEnforced: one replica's link
// to Redis is cut while its cache holds a key; the key is revoked on
// another replica meanwhile, so the eviction message never reaches it.
// When the link comes back, the replica flushes its caches and refuses the
// key, through the whole Check path, and never allows it again.
func TestCheck_RevocationMissedDuringPubSubGapIsEnforced(t *testing.T) {
	url := apikeystest.StartRedis(t)
	proxy := apikeystest.NewProxy(t, url)
	keys := apikeys.Default()
	keys.Redis = &apikeys.RedisConfig{Addrs: []string{proxy.URL()}, Timeout: 200 * time.Millisecond}
	d := newDrill(t, keys) // the replica under test, behind the proxy

	adminCfg := apikeys.Default()
	adminCfg.Redis = &apikeys.RedisConfig{Addrs: []string{url}, Timeout: 500 * time.Millisecond}
	admin, err := apikeys.New(context.Background(), adminCfg, apikeys.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	key, rec, err := admin.Create(ctx, apikeys.CreateOptions{Owner: "mallory", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	d.waitCached(t, key)

	proxy.Cut()
	if err := admin.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	// Cut off, the replica cannot know: its cache answers (the documented
	// outage behaviour, bounded by cache_ttl).
	check := func() int {
		st, err := d.status(ctx, map[string]string{"x-api-key": key}, "POST", "/v1/chat/completions")
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return st
	}
	if st := check(); st != 200 {
		t.Fatalf("cut-off replica: %d, want 200 from its cache (else this test proves nothing)", st)
	}

	proxy.Restore()
	start := time.Now()
	for check() != 401 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the revoked key is still not refused 5s after the link came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revocation enforced %v after the link came back", time.Since(start).Round(time.Millisecond))
	for i := range 50 {
		if st := check(); st != 401 {
			t.Fatalf("check %d after the refusal: %d, want 401 every time", i, st)
		}
	}
}

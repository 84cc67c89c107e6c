package ratelimit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newLimiter(t testing.TB, cfg Config, m *Metrics) *Limiter {
	t.Helper()
	l, err := New(context.Background(), cfg, Deps{Logger: discardLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func redisAt(url string) *RedisConfig { return &RedisConfig{Addrs: []string{url}} }

func rule(key string, l Limit) Rule {
	return Rule{Route: "chat", Key: KeyPrefix + "{s:" + key + "}:chat", Limit: l.normalized(), Source: SourceDefault}
}

// GCRA: a fresh caller gets the burst at once, with remaining counting down;
// the next request is refused with retry-after about one emission interval,
// and passes once that has elapsed.
func TestLimiter_Allow_GCRA(t *testing.T) {
	srv := apikeystest.StartServer(t)
	l := newLimiter(t, Config{Redis: redisAt(srv.URL())}, nil)
	ctx := context.Background()
	lim := Limit{Requests: 4, Per: 2 * time.Second} // one every 500ms, burst 4
	r := rule("gcra", lim)

	burst := time.Now()
	for i := range 4 {
		res, err := l.Allow(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Limit != 4 || res.Remaining != 3-i || res.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i+1, res, 3-i)
		}
		if res.Reset <= 0 || res.Reset > 2*time.Second {
			t.Errorf("request %d: reset %v, want in (0, 2s]", i+1, res.Reset)
		}
	}
	res, err := l.Allow(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	// Retry-after is one emission interval (500ms) from the first request
	// of the burst: at least 500ms minus the time the five calls took (a
	// busy machine is slow; a fixed lower bound flaked), at most 500ms.
	lo := 500*time.Millisecond - time.Since(burst) - time.Millisecond
	if res.Allowed || res.Remaining != 0 || res.RetryAfter <= 0 || res.RetryAfter < lo || res.RetryAfter > 500*time.Millisecond {
		t.Fatalf("request 5: %+v, want refused with retry-after in [%v, 500ms]", res, lo)
	}
	if diff := cmp.Diff([]Header{
		{HeaderLimit, "4"}, {HeaderRemaining, "0"}, {HeaderReset, "2"}, {HeaderRetryAfter, "1"},
	}, res.Headers()); diff != "" {
		t.Errorf("headers of a refusal (-want +got):\n%s", diff)
	}
	// A refused request does not spend budget: after retry-after one more
	// passes, and only one.
	time.Sleep(res.RetryAfter + 20*time.Millisecond)
	if res, err := l.Allow(ctx, r); err != nil || !res.Allowed || res.Remaining != 0 {
		t.Fatalf("after retry-after: %+v, %v, want allowed with 0 remaining", res, err)
	}
	if res, err := l.Allow(ctx, r); err != nil || res.Allowed {
		t.Fatalf("right after: %+v, %v, want refused", res, err)
	}
	// Another caller has its own budget.
	if res, err := l.Allow(ctx, rule("other", lim)); err != nil || !res.Allowed || res.Remaining != 3 {
		t.Fatalf("another caller: %+v, %v", res, err)
	}
}

func TestLimiter_Allow_CounterKeyAndExpiry(t *testing.T) {
	srv := apikeystest.StartServer(t)
	l := newLimiter(t, Config{Redis: redisAt(srv.URL())}, nil)
	ctx := context.Background()
	if _, err := l.Allow(ctx, rule("alice", Limit{Requests: 10, Per: time.Minute})); err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"rate:extauthz:rl:{s:alice}:chat"}, keys); diff != "" {
		t.Errorf("redis keys (-want +got):\n%s", diff)
	}
	// The counter expires when the budget is full again (6s: one request of
	// 10/min), so idle callers cost no memory.
	ttl, err := rdb.TTL(ctx, keys[0]).Result()
	if err != nil || ttl <= 0 || ttl > 6*time.Second {
		t.Errorf("TTL = %v, %v, want in (0, 6s]", ttl, err)
	}
}

// Two Limiters with their own connections (two replicas) share one Redis:
// out of M parallel requests exactly the burst passes, not a burst per
// replica.
func TestLimiter_Allow_GlobalAcrossReplicas(t *testing.T) {
	srv := apikeystest.StartServer(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"chat"})
	// A generous timeout: this test is about the global bound, and 200
	// concurrent calls on a loaded CI machine can outlast the 100ms default.
	rc := redisAt(srv.URL())
	rc.Timeout = 5 * time.Second
	cfg := Config{Redis: rc, Timeout: 5 * time.Second}
	replicas := []*Limiter{newLimiter(t, cfg, m), newLimiter(t, cfg, m)}
	// 10 per hour: during the test (well under a second) GCRA refills
	// nothing, so the bound is exact.
	const n, total = 10, 200
	r := rule("agent", Limit{Requests: n, Per: time.Hour})

	var allowed, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := replicas[i%2].Allow(context.Background(), r)
			switch {
			case err != nil:
				t.Errorf("Allow: %v", err)
			case res.Allowed:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if allowed.Load() != n || refused.Load() != total-n {
		t.Errorf("%d allowed, %d refused of %d across two replicas; want %d allowed", allowed.Load(), refused.Load(), total, n)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("chat", "allowed")); got != n {
		t.Errorf("allowed counted %v, want %d", got, n)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("chat", "limited")); got != total-n {
		t.Errorf("limited counted %v, want %d", got, total-n)
	}
}

// With a sustained rate the bound over a window is burst + refills: over
// about 1.2s at 20/s with burst 5, at most 5 + 24 (+1 for timing) pass.
func TestLimiter_Allow_SustainedRateAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	srv := apikeystest.StartServer(t)
	cfg := Config{Redis: redisAt(srv.URL())}
	replicas := []*Limiter{newLimiter(t, cfg, nil), newLimiter(t, cfg, nil)}
	r := rule("steady", Limit{Requests: 20, Per: time.Second, Burst: 5})
	var allowed atomic.Int32
	var wg sync.WaitGroup
	begin := time.Now()
	deadline := begin.Add(1200 * time.Millisecond)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				res, err := replicas[w%2].Allow(context.Background(), r)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if res.Allowed {
					allowed.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	maxAllowed := 5 + int32(elapsed.Seconds()*20) + 1
	minAllowed := 5 + int32(1.2*20) - 4 // workers may leave a few slots unused
	if got := allowed.Load(); got > maxAllowed || got < minAllowed {
		t.Errorf("%d allowed in %v, want between %d and %d", got, elapsed, minAllowed, maxAllowed)
	}
}

func TestLimiter_Allow_RedisDown(t *testing.T) {
	tests := []struct {
		name    string
		onError string
		allowed bool
		result  string
	}{
		{name: "on_error allow (default)", onError: "", allowed: true, result: "error_allowed"},
		{name: "on_error deny", onError: OnErrorDeny, allowed: false, result: "error_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := apikeystest.StartServer(t)
			m := NewMetrics(prometheus.NewRegistry(), []string{"chat"})
			l := newLimiter(t, Config{Redis: redisAt(srv.URL()), OnError: tt.onError}, m)
			ctx := context.Background()
			r := rule("alice", Limit{Requests: 10, Per: time.Minute})
			if res, err := l.Allow(ctx, r); err != nil || !res.Allowed {
				t.Fatalf("with Redis up: %+v, %v", res, err)
			}
			srv.Kill()
			res, err := l.Allow(ctx, r)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("with Redis down: err = %v, want ErrUnavailable", err)
			}
			if diff := cmp.Diff(Result{Allowed: tt.allowed}, res); diff != "" {
				t.Errorf("with Redis down (-want +got):\n%s", diff)
			}
			if res.Headers() != nil {
				t.Errorf("headers without a counter: %v", res.Headers())
			}
			if got := testutil.ToFloat64(m.decisions.WithLabelValues("chat", tt.result)); got != 1 {
				t.Errorf("%s counted %v, want 1", tt.result, got)
			}
			// Back up (empty: the counter was lost with the process): counted
			// again.
			srv.Start()
			deadline := time.Now().Add(5 * time.Second)
			for {
				res, err = l.Allow(ctx, r)
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil || !res.Allowed || res.Remaining != 9 {
				t.Errorf("after restart: %+v, %v, want allowed with 9 remaining", res, err)
			}
		})
	}
}

// roundTripCounter is a go-redis hook counting every dial, command and
// pipeline the client attempts.
type roundTripCounter struct{ n atomic.Int64 }

func (c *roundTripCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.n.Add(1)
		return next(ctx, network, addr)
	}
}

func (c *roundTripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// A hung Redis costs at most the timeout per check, and after a few failures
// in a row nothing: calls are suspended, then one probe finds it back.
func TestLimiter_Allow_HungRedisIsBoundedAndSuspended(t *testing.T) {
	srv := apikeystest.StartServer(t)
	m := NewMetrics(prometheus.NewRegistry(), []string{"chat"})
	const timeout = 60 * time.Millisecond
	l := newLimiter(t, Config{Redis: redisAt(srv.URL()), Timeout: timeout}, m)
	ctx := context.Background()
	r := rule("alice", Limit{Requests: 10, Per: time.Minute})
	if _, err := l.Allow(ctx, r); err != nil {
		t.Fatal(err)
	}

	srv.Pause()
	defer srv.Resume()
	for i := range breakerFailures {
		start := time.Now()
		res, err := l.Allow(ctx, r)
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) || !res.Allowed {
			t.Fatalf("call %d on hung Redis: %+v, %v", i+1, res, err)
		}
		// Loose upper bound (a busy machine is slow), far below go-redis's
		// own 3s read timeout, which applies if Timeout does not.
		if took < timeout/2 || took > timeout+time.Second {
			t.Errorf("call %d took %v, want about %v", i+1, took, timeout)
		}
	}
	// Suspended calls must not touch Redis at all: count the commands and
	// dials the client attempts (a wall-clock bound flakes on a busy machine).
	var hook roundTripCounter
	l.rdb.AddHook(&hook)
	start := time.Now()
	for range 100 {
		if _, err := l.Allow(ctx, r); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("suspended call: %v", err)
		}
	}
	// The breaker opened at the latest when the last failing call returned
	// (before start); it lets one probe through per breakerOpen, which only
	// a very slow machine reaches within these 100 calls.
	// A probe is at most a dial, EVALSHA and EVAL.
	probes := int64(time.Since(start) / breakerOpen)
	if n := hook.n.Load(); n > 3*probes {
		t.Errorf("100 suspended calls attempted %d Redis round trips, want at most %d (0 unless a probe window passed)", n, 3*probes)
	}
	// Loose backstop: 100 calls that each waited for the hung Redis would
	// take 100 x timeout.
	if took := time.Since(start); took > 20*timeout {
		t.Errorf("100 suspended calls took %v, want no Redis round trip", took)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("chat", "error_allowed")); got != breakerFailures+100 {
		t.Errorf("error_allowed = %v, want %d", got, breakerFailures+100)
	}

	srv.Resume()
	time.Sleep(breakerOpen + 50*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := l.Allow(ctx, r)
		if err == nil {
			// The counter survived; the updates that timed out may still
			// have been applied when Redis woke up (never more than them).
			if !res.Allowed || res.Remaining > 8 || res.Remaining < 8-breakerFailures {
				t.Errorf("after resume: %+v, want the counter kept (5 to 8 remaining)", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis not used again after resume: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The caller's deadline (check_timeout) wins over the limiter's timeout, and
// a caller that gives up does not count against Redis.
func TestLimiter_Allow_CallerDeadline(t *testing.T) {
	srv := apikeystest.StartServer(t)
	// A limiter timeout far above the callers' deadline, so that a busy
	// machine's delays cannot blur the two.
	l := newLimiter(t, Config{Redis: redisAt(srv.URL()), Timeout: 5 * time.Second}, nil)
	r := rule("alice", Limit{Requests: 10, Per: time.Minute})
	srv.Pause()
	defer srv.Resume()
	for range breakerFailures + 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		start := time.Now()
		_, err := l.Allow(ctx, r)
		cancel()
		// 2s: loose for a busy machine, far below the 5s limiter timeout.
		if !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
			t.Fatalf("Allow with a 30ms deadline = %v after %v", err, time.Since(start))
		}
	}
	if l.openUntil.Load() != 0 {
		t.Errorf("callers' own deadlines opened the breaker")
	}
}

// Counters work the same on every topology api_keys.redis supports; in a
// Cluster each caller's counters share a slot (the hash tag) and callers
// spread over the nodes.
func TestLimiter_Allow_Topologies(t *testing.T) {
	tests := []struct {
		name  string
		redis func(t *testing.T) *RedisConfig
	}{
		{name: "standalone", redis: func(t *testing.T) *RedisConfig { return redisAt(apikeystest.StartRedis(t)) }},
		{name: "cluster", redis: func(t *testing.T) *RedisConfig { return &RedisConfig{Addrs: apikeystest.StartCluster(t)} }},
		{name: "sentinel", redis: func(t *testing.T) *RedisConfig {
			addr, master := apikeystest.StartSentinel(t)
			return &RedisConfig{Addrs: []string{addr}, MasterName: master}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, Config{Redis: tt.redis(t)}, nil)
			p, err := NewPolicy(Config{Default: &Limit{Requests: 2, Per: time.Hour}}, []Route{{Name: "chat"}, {Name: "embed"}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, who := range []string{"alice", "bob", "carol", "dave"} {
				for _, route := range []string{"chat", "embed"} {
					rl, _ := p.Resolve(route, Caller{Subject: who})
					var got []bool
					for range 3 {
						res, err := l.Allow(ctx, rl)
						if err != nil {
							t.Fatalf("%s on %s: %v", who, route, err)
						}
						got = append(got, res.Allowed)
					}
					if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
						t.Errorf("%s on %s (-want +got):\n%s", who, route, diff)
					}
				}
			}
		})
	}
}

// Policy and Limiter together: on one route, a role's limit, a key's own
// limit and the default each give their caller its own budget.
func TestLimiter_Allow_PolicyBudgets(t *testing.T) {
	l := newLimiter(t, Config{Redis: redisAt(apikeystest.StartRedis(t))}, nil)
	p, err := NewPolicy(Config{
		Key:     KeyKeyID,
		Default: &Limit{Requests: 2, Per: time.Hour},
		Roles:   map[string]Limit{"agent": {Requests: 3, Per: time.Hour}},
	}, []Route{{Name: "chat"}})
	if err != nil {
		t.Fatal(err)
	}
	callers := []struct {
		name   string
		caller Caller
		budget int
	}{
		{name: "default", caller: Caller{Subject: "alice", Issuer: "https://issuer.test"}, budget: 2},
		{name: "agent role, first key", caller: Caller{Subject: "ci", KeyID: "key_agent1", Roles: []string{"agent"}}, budget: 3},
		{name: "agent role, second key of the same owner", caller: Caller{Subject: "ci", KeyID: "key_agent2", Roles: []string{"agent"}}, budget: 3},
		{name: "key's own limit", caller: Caller{Subject: "ci", KeyID: "key_big", Roles: []string{"agent"}, KeyLimit: &Limit{Requests: 5, Per: time.Hour}}, budget: 5},
	}
	ctx := context.Background()
	for _, c := range callers {
		rl, ok := p.Resolve("chat", c.caller)
		if !ok {
			t.Fatalf("%s: no rule", c.name)
		}
		n := 0
		for range 10 {
			res, err := l.Allow(ctx, rl)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				n++
			}
		}
		if n != c.budget {
			t.Errorf("%s: %d of 10 allowed, want %d", c.name, n, c.budget)
		}
	}
}

// The README's ACL for the rate-limit user is enough, and nothing more is
// needed.
func TestLimiter_Allow_RedisACL(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	admin := srv.Client(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "rl", "reset", "on", ">s3cret", "~rate:extauthz:rl:*",
		"+hello", "+auth", "+client|setname", "+ping", "+evalsha", "+eval", "+get", "+set", "+time").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Redis: &RedisConfig{Addrs: []string{srv.URL()}, Username: "rl"}, OnError: OnErrorDeny}
	l, err := New(ctx, cfg, Deps{Logger: discardLogger(), Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		res, err := l.Allow(ctx, rule("alice", Limit{Requests: 2, Per: time.Minute}))
		if err != nil {
			t.Fatalf("request %d under the ACL: %v", i+1, err)
		}
		if res.Allowed != (i < 2) {
			t.Errorf("request %d: allowed = %v", i+1, res.Allowed)
		}
	}
	// A counter outside the namespace is refused by the ACL.
	_, err = l.Allow(ctx, Rule{Route: "chat", Key: "elsewhere", Limit: Limit{1, time.Minute, 1}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("counter outside the ACL: %v, want a NOPERM error", err)
	}
}

func TestNew_Errors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{}, Deps{Logger: discardLogger()}); err == nil || !strings.Contains(err.Error(), "no Redis connection") {
		t.Errorf("New without redis = %v", err)
	}
	if _, err := New(ctx, Config{Redis: redisAt("redis:6379")}, Deps{}); err == nil {
		t.Errorf("New without a logger succeeded")
	}
	if _, err := New(ctx, Config{Redis: &RedisConfig{Addrs: []string{"redis:6379"}, PasswordFile: "/nonexistent/pw"}}, Deps{Logger: discardLogger()}); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("New with a missing password file = %v", err)
	}
	// An unreachable Redis is not an error: on_error decides.
	l, err := New(ctx, Config{Redis: redisAt("unix:///nonexistent/r.sock")}, Deps{Logger: discardLogger()})
	if err != nil {
		t.Fatalf("New with Redis down = %v", err)
	}
	defer l.Close()
	if res, err := l.Allow(ctx, rule("a", Limit{Requests: 1, Per: time.Second})); !errors.Is(err, ErrUnavailable) || !res.Allowed {
		t.Errorf("Allow with Redis down = %+v, %v", res, err)
	}
}

func TestResult_Headers(t *testing.T) {
	tests := []struct {
		name string
		res  Result
		want []Header
	}{
		{name: "allowed", res: Result{Allowed: true, Limit: 10, Remaining: 7, Reset: 18*time.Second + time.Millisecond},
			want: []Header{{HeaderLimit, "10"}, {HeaderRemaining, "7"}, {HeaderReset, "19"}}},
		{name: "refused: retry-after rounds up, at least 1", res: Result{Limit: 10, Reset: 59 * time.Second, RetryAfter: 200 * time.Millisecond},
			want: []Header{{HeaderLimit, "10"}, {HeaderRemaining, "0"}, {HeaderReset, "59"}, {HeaderRetryAfter, "1"}}},
		{name: "refused for long", res: Result{Limit: 1, Reset: time.Hour, RetryAfter: 3599500 * time.Millisecond},
			want: []Header{{HeaderLimit, "1"}, {HeaderRemaining, "0"}, {HeaderReset, "3600"}, {HeaderRetryAfter, "3600"}}},
		{name: "no counter", res: Result{Allowed: true}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.res.Headers()); diff != "" {
				t.Errorf("Headers (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkLimiter_Allow(b *testing.B) {
	l := newLimiter(b, Config{Redis: redisAt(apikeystest.StartRedis(b))}, NewMetrics(nil, []string{"chat"}))
	r := rule("bench", Limit{Requests: MaxRequests, Per: time.Second})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPolicy_Resolve(b *testing.B) {
	p, err := NewPolicy(Config{Default: &Limit{Requests: 60, Per: time.Minute}, Roles: map[string]Limit{"agent": {Requests: 10, Per: time.Minute}}}, []Route{{Name: "chat"}})
	if err != nil {
		b.Fatal(err)
	}
	c := Caller{Subject: "alice", Issuer: "https://issuer.test", Roles: []string{"agent", "viewer"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.Resolve("chat", c); !ok {
			b.Fatal("no rule")
		}
	}
}

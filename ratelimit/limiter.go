package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/redisconn"
)

// ErrUnavailable marks a counter that could not be updated: Redis failed,
// was too slow, or failed repeatedly just before. The Result returned with it
// carries the on_error decision.
var ErrUnavailable = errors.New("rate-limit store unavailable")

// errOpen is returned while calls to Redis are suspended after repeated
// failures.
var errOpen = fmt.Errorf("ratelimit: %w: skipped after repeated failures", ErrUnavailable)

// Circuit breaker: after breakerFailures failures in a row, Redis is not
// called for breakerOpen; then one call probes it.
const (
	breakerFailures = 3
	breakerOpen     = time.Second
)

// Header names of a rate-limited response (lower-case, as Envoy sends
// them). The ratelimit-* headers follow the IETF httpapi RateLimit header
// fields draft; reset and retry-after are in whole seconds.
const (
	HeaderLimit      = "ratelimit-limit"
	HeaderRemaining  = "ratelimit-remaining"
	HeaderReset      = "ratelimit-reset"
	HeaderRetryAfter = "retry-after"
)

// Header is one response header (lower-case name and value).
type Header struct{ Name, Value string }

// Result is the outcome of one counter update.
type Result struct {
	// Allowed reports whether the request may pass. With an error it is
	// the on_error decision.
	Allowed bool
	// Limit is the rule's burst: the most requests that may arrive at once.
	// Zero when the counter could not be read.
	Limit int
	// Remaining is how many more requests may arrive right now.
	Remaining int
	// Reset is the time until the full burst is available again.
	Reset time.Duration
	// RetryAfter is the time until the next request may pass; zero when
	// Allowed.
	RetryAfter time.Duration
}

// Headers returns the response headers that describe r: ratelimit-limit,
// ratelimit-remaining and ratelimit-reset, and retry-after when the request
// is refused. It returns nil for a result without a counter (Redis failed).
func (r Result) Headers() []Header {
	if r.Limit == 0 {
		return nil
	}
	h := make([]Header, 3, 4)
	h[0] = Header{HeaderLimit, strconv.Itoa(r.Limit)}
	h[1] = Header{HeaderRemaining, strconv.Itoa(r.Remaining)}
	h[2] = Header{HeaderReset, strconv.FormatInt(ceilSeconds(r.Reset), 10)}
	if !r.Allowed {
		h = append(h, Header{HeaderRetryAfter, strconv.FormatInt(max(1, ceilSeconds(r.RetryAfter)), 10)})
	}
	return h
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Deps are the Limiter's collaborators.
type Deps struct {
	Logger *slog.Logger // required
	// Metrics count every decision; nil counts nothing.
	Metrics *Metrics
	// Password is used when RedisConfig.PasswordFile is empty (extauthz
	// serve takes it from REDIS_PASSWORD).
	Password string
}

// Limiter updates the shared counters in Redis. It is safe for concurrent
// use, and outlives config reloads as long as the rate_limits connection
// settings, on_error and timeout do not change; Close it when done.
type Limiter struct {
	rdb          redis.UniversalClient
	rl           *redis_rate.Limiter
	allowOnError bool
	timeout      time.Duration
	log          *slog.Logger
	m            *Metrics

	failures  atomic.Int32
	openUntil atomic.Int64 // unix ns; 0: closed
}

// New connects to cfg.Redis, which must be set (the config package fills in
// api_keys.redis when rate_limits.redis is absent). An unreachable Redis is
// not an error: it is logged, and Allow applies on_error until it answers.
func New(ctx context.Context, cfg Config, deps Deps) (*Limiter, error) {
	if deps.Logger == nil {
		return nil, errors.New("ratelimit: a logger is required")
	}
	if cfg.Redis == nil {
		return nil, errors.New("ratelimit: rate_limits.redis: no Redis connection configured (set it or api_keys.redis)")
	}
	// Nothing is retried: a counter update that timed out may still have
	// been applied, a retry could count the request twice, and on_error
	// decides faster than a second attempt would.
	opts, err := redisconn.Options(*cfg.Redis, redisconn.OptionsOverrides{
		ClientName: "extauthz-ratelimit",
		MaxRetries: -1,
		Password:   deps.Password,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis: %w", err)
	}
	rdb := redis.NewUniversalClient(opts)
	l := &Limiter{
		rdb:          rdb,
		rl:           redis_rate.NewLimiter(rdb),
		allowOnError: cfg.OnError != OnErrorDeny,
		timeout:      cfg.timeout(),
		log:          deps.Logger.With(slog.String("component", "ratelimit")),
		m:            deps.Metrics,
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Redis.CallTimeout())
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelWarn, "rate-limit redis unreachable at startup; on_error decides until it answers",
			slog.String("on_error", l.onErrorName()), slog.String("err", err.Error()))
	}
	return l, nil
}

func (l *Limiter) onErrorName() string {
	if l.allowOnError {
		return OnErrorAllow
	}
	return OnErrorDeny
}

// Allow spends one request of rule's budget. It returns the Result, or with
// Redis unusable a Result whose Allowed is the on_error decision and an
// error wrapping ErrUnavailable. Every call is counted in
// extauthz_ratelimit_decisions_total.
func (l *Limiter) Allow(ctx context.Context, rule Rule) (Result, error) {
	if !l.mayCall() {
		return l.failed(rule, errOpen)
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	res, err := l.rl.Allow(cctx, rule.Key, redis_rate.Limit{
		Rate:   rule.Limit.Requests,
		Burst:  rule.Limit.Burst,
		Period: rule.Limit.Per,
	})
	cancel()
	if err != nil {
		if !callerGaveUp(ctx) {
			l.recordFailure(ctx, err)
		}
		return l.failed(rule, fmt.Errorf("ratelimit: %w: %w", ErrUnavailable, err))
	}
	l.recordSuccess(ctx)
	r := Result{
		Allowed:   res.Allowed > 0,
		Limit:     rule.Limit.Burst,
		Remaining: max(0, res.Remaining),
		Reset:     max(0, res.ResetAfter),
	}
	if r.Allowed {
		l.m.count(rule.Route, resAllowed)
	} else {
		r.RetryAfter = max(time.Millisecond, res.RetryAfter)
		l.m.count(rule.Route, resLimited)
	}
	return r, nil
}

// callerGaveUp reports whether the caller's own context has ended or is
// about to: a failure then says nothing about Redis (go-redis reports the
// caller's deadline as a socket timeout, slightly before ctx.Err is set).
func callerGaveUp(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < time.Millisecond
}

func (l *Limiter) failed(rule Rule, err error) (Result, error) {
	if l.allowOnError {
		l.m.count(rule.Route, resErrorAllowed)
	} else {
		l.m.count(rule.Route, resErrorDenied)
	}
	return Result{Allowed: l.allowOnError}, err
}

// mayCall reports whether Redis may be called: the breaker is closed, or
// this call is the one probe after it has been open for breakerOpen.
func (l *Limiter) mayCall() bool {
	until := l.openUntil.Load()
	if until == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if now < until {
		return false
	}
	// Open long enough: let exactly one caller probe, keep the rest out for
	// another period.
	return l.openUntil.CompareAndSwap(until, now+int64(breakerOpen))
}

func (l *Limiter) recordFailure(ctx context.Context, err error) {
	if l.failures.Add(1) < breakerFailures {
		return
	}
	if l.openUntil.Swap(time.Now().Add(breakerOpen).UnixNano()) == 0 {
		l.log.LogAttrs(ctx, slog.LevelWarn, "rate-limit redis failing; suspending calls and applying on_error",
			slog.String("on_error", l.onErrorName()), slog.Duration("retry_in", breakerOpen), slog.String("err", err.Error()))
	}
}

func (l *Limiter) recordSuccess(ctx context.Context) {
	if l.failures.Load() != 0 {
		l.failures.Store(0)
	}
	if l.openUntil.Load() != 0 && l.openUntil.Swap(0) != 0 {
		l.log.LogAttrs(ctx, slog.LevelInfo, "rate-limit redis answering again")
	}
}

// Ping checks that Redis answers, for readiness when on_error is deny.
func (l *Limiter) Ping(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if err := l.rdb.Ping(cctx).Err(); err != nil {
		return fmt.Errorf("ratelimit: ping: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// Close closes the Redis connections.
func (l *Limiter) Close() error { return l.rdb.Close() }

package authz

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServerOptions tune a Server. Zero values mean the defaults.
type ServerOptions struct {
	// CheckTimeout bounds one check (default 300ms). Keep it below the
	// proxy's ext_authz timeout so that a slow backend yields our 503 rather
	// than the proxy's own error.
	CheckTimeout time.Duration
	// AllowSampleRate is the fraction of allowed decisions that are logged
	// (0 to 1, default 1). Denials are always logged.
	AllowSampleRate float64
	// DenialLogRate is how many identical denials (same transport, method,
	// outcome, reason, route and presented key id) are logged per second
	// (default DefaultDenialLogRate); the next line logged for them carries
	// "suppressed", the count left out. Negative logs every denial. Metrics
	// count every decision either way.
	DenialLogRate int
	// HTTPPathPrefix is removed from the path of HTTP-mode checks with
	// HTTPForwardedHeaders ForwardedNone (Envoy http_service path_prefix).
	HTTPPathPrefix string
	// HTTPForwardedHeaders is the header family the HTTP front end reads
	// the original request from: ForwardedForwarded (default),
	// ForwardedOriginal or ForwardedNone.
	HTTPForwardedHeaders string
}

// The values of server.http_forwarded_headers: the one family of headers
// the forward-auth front end (package forwardauth) reads the original request from.
const (
	// ForwardedForwarded (the default): x-forwarded-method and
	// x-forwarded-uri, host from x-forwarded-host (else the check's Host).
	// nginx/extauthz.conf, Traefik forwardAuth and Caddy forward_auth set
	// them.
	ForwardedForwarded = "forwarded"
	// ForwardedOriginal: x-original-method and x-original-uri, host from
	// the check's own Host (x-forwarded-host, which hops in front of the
	// proxy may set, is ignored). nginx's auth_request documentation sets
	// X-Original-URI; add X-Original-Method and Host $host.
	ForwardedOriginal = "original"
	// ForwardedNone: the check request is the original request (method,
	// Host, and path with server.http_path_prefix removed): Envoy
	// http_service.
	ForwardedNone = "none"
)

// DefaultCheckTimeout is the default per-check deadline.
const DefaultCheckTimeout = 300 * time.Millisecond

// serverSettings is what a reload can change besides the Engine.
type serverSettings struct {
	timeout    time.Duration
	sample     float64
	pathPrefix string
	denials    *denialSampler // nil: log every denial
	forwarded  string         // ForwardedForwarded, ForwardedOriginal or ForwardedNone
}

// Generation is an Engine with the settings of the same configuration. It
// is published as one pointer and a check loads it once (Server.Current),
// so no check sees the settings of one reload with the Engine of another.
type Generation struct {
	engine *Engine
	serverSettings
}

// Engine is the generation's Engine.
func (g *Generation) Engine() *Engine { return g.engine }

// HTTPPathPrefix is ServerOptions.HTTPPathPrefix without a trailing slash.
func (g *Generation) HTTPPathPrefix() string { return g.pathPrefix }

// HTTPForwardedHeaders is ServerOptions.HTTPForwardedHeaders: ForwardedForwarded,
// ForwardedOriginal or ForwardedNone.
func (g *Generation) HTTPForwardedHeaders() string { return g.forwarded }

// Server answers checks with the current Engine, for the front ends
// (packages envoyauthz and forwardauth), which translate their transport's
// request into a Request and the Decision back. Server records one
// histogram sample, one counter increment and at most one log line per
// check. Swap replaces the Engine atomically: checks in flight finish on
// the Engine they started with.
type Server struct {
	gen     atomic.Pointer[Generation]
	logger  *slog.Logger
	metrics *Metrics
	deny    *denials
}

// NewServer returns a Server answering with e.
func NewServer(e *Engine, opts ServerOptions, logger *slog.Logger, m *Metrics) *Server {
	s := &Server{logger: logger, metrics: m, deny: buildDenials()}
	s.Swap(e, opts)
	return s
}

// Swap makes e and opts, together, answer every check that starts from now
// on.
func (s *Server) Swap(e *Engine, opts ServerOptions) {
	g := &Generation{engine: e, serverSettings: serverSettings{
		timeout:    opts.CheckTimeout,
		sample:     opts.AllowSampleRate,
		pathPrefix: strings.TrimSuffix(opts.HTTPPathPrefix, "/"),
		forwarded:  opts.HTTPForwardedHeaders,
	}}
	if g.timeout <= 0 {
		g.timeout = DefaultCheckTimeout
	}
	if g.forwarded == "" {
		g.forwarded = ForwardedForwarded
	}
	if g.sample < 0 || g.sample > 1 {
		g.sample = 1
	}
	rate := opts.DenialLogRate
	if rate == 0 {
		rate = DefaultDenialLogRate
	}
	g.denials = newDenialSampler(rate)
	s.gen.Store(g)
}

// Engine returns the Engine currently answering.
func (s *Server) Engine() *Engine { return s.gen.Load().engine }

// Current returns the generation currently answering. A front end loads it
// once per check and passes it to DecideOn or Refuse.
func (s *Server) Current() *Generation { return s.gen.Load() }

// decide runs one check on the current generation.
func (s *Server) decide(ctx context.Context, t Transport, r *Request, requestID string) Decision {
	return s.DecideOn(ctx, s.gen.Load(), t, r, requestID)
}

// DecideOn runs one check on generation g under its check timeout, turning
// a panic into a fail-closed denial, and records its metrics and log line
// (t is the front end's transport label). It never fails: every error is a
// denied Decision.
func (s *Server) DecideOn(ctx context.Context, g *Generation, t Transport, r *Request, requestID string) Decision {
	start := time.Now()
	cc := &checkContext{Context: ctx, deadline: start.Add(g.timeout)}
	d := s.safeDecide(cc, g.engine, r)
	cc.release()
	elapsed := time.Since(start)
	s.metrics.observe(t, d.Method, d.Code, elapsed.Seconds())
	if d.Code != Allowed {
		ok, suppressed := g.denials.allow(sampleKey{
			transport: t, method: d.Method, code: d.Code, reason: d.Reason, route: d.Route, keyID: d.KeyID,
		}, start)
		if ok {
			s.logDecision(t, r, requestID, &d, elapsed, suppressed)
		}
	} else if g.sample >= 1 || (g.sample > 0 && rand.Float64() < g.sample) {
		s.logDecision(t, r, requestID, &d, elapsed, 0)
	}
	return d
}

// Refuse records and returns the denial of a check that a front end refuses
// before the Engine is asked (forwarding headers that cannot be trusted),
// with reason's code.
func (s *Server) Refuse(g *Generation, t Transport, r *Request, requestID string, reason Reason) Decision {
	d := Decision{Code: ReasonCode(reason), Reason: reason}
	s.metrics.observe(t, d.Method, d.Code, 0)
	if ok, suppressed := g.denials.allow(sampleKey{transport: t, code: d.Code, reason: d.Reason}, time.Now()); ok {
		s.logDecision(t, r, requestID, &d, 0, suppressed)
	}
	return d
}

func (s *Server) safeDecide(ctx context.Context, e *Engine, r *Request) (d Decision) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.LogAttrs(context.Background(), slog.LevelError, "panic in decision, denied",
				slog.String("err", fmt.Sprint(p)))
			d = Decision{Code: Unavailable, Reason: ReasonInternalError}
		}
	}()
	return e.Decide(ctx, r)
}

// logDecision writes the one audit line of a decision. It never logs a
// credential, the header map or the query string. Every string a client
// controls goes through logField, which bounds and escapes it. suppressed is
// the number of identical denials left out since the last one logged.
func (s *Server) logDecision(t Transport, r *Request, requestID string, d *Decision, elapsed time.Duration, suppressed int) {
	level := slog.LevelInfo
	if d.Code == Unavailable || d.Code == codeUnset {
		level = slog.LevelWarn
	}
	if !s.logger.Enabled(context.Background(), level) {
		return
	}
	p := r.Path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("request_id", logField(requestID)),
		slog.String("transport", t.String()),
		slog.String("route", d.Route),
		slog.String("http_method", logField(r.Method)),
		slog.String("host", logField(r.Host)),
		slog.String("path", logField(p)),
		slog.String("method", d.Method.String()),
		slog.String("decision", d.Code.String()),
		slog.String("reason", string(d.Reason)),
		slog.Duration("duration", elapsed),
	)
	if id := d.Identity; id != nil {
		attrs = append(attrs, slog.String("subject", logField(id.Subject)))
		if id.KeyID != "" {
			attrs = append(attrs, slog.String("key_id", logField(id.KeyID)))
		}
		if id.Issuer != "" {
			attrs = append(attrs, slog.String("issuer", logField(id.Issuer)))
		}
	} else if d.KeyID != "" {
		// A revoked or expired key that was presented: the audit event of
		// its use, named by the key's public id and owner.
		event := "expired_on_use"
		if d.Reason == ReasonRevokedKey {
			event = "revoked_on_use"
		}
		attrs = append(attrs,
			slog.String("event", event),
			slog.String("subject", logField(d.KeyOwner)),
			slog.String("key_id", logField(d.KeyID)))
		if d.KeyIssuer != "" {
			attrs = append(attrs, slog.String("issuer", logField(d.KeyIssuer)))
		}
	}
	if d.Model != "" {
		attrs = append(attrs, slog.String("model", logField(d.Model)))
	}
	if len(d.Tools) > 0 {
		attrs = append(attrs, slog.Int("tools", len(d.Tools)))
	}
	if d.RateLimit != "" {
		attrs = append(attrs, slog.String("ratelimit", logField(d.RateLimit)))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	s.logger.LogAttrs(context.Background(), level, "decision", attrs...)
}

// checkContext is the caller's context bounded by the check timeout, like
// context.WithDeadline, but it arms no timer until something waits on Done
// (a Redis round trip, a JWKS refresh). A decision answered from the caches
// never blocks, so it only compares the clock in Err instead of paying for a
// timer and its cancellation on every check.
type checkContext struct {
	context.Context // the caller's
	deadline        time.Time
	mu              sync.Mutex
	timed           atomic.Pointer[timedContext] // set on the first Done
	released        atomic.Bool
}

type timedContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Deadline returns the check deadline, or the caller's when it is earlier.
func (c *checkContext) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done arms the deadline on first use: from then on the context is a real
// context.WithDeadline of the caller's.
func (c *checkContext) Done() <-chan struct{} {
	return c.arm().Done()
}

func (c *checkContext) arm() context.Context {
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	ctx, cancel := context.WithDeadline(c.Context, c.deadline)
	if c.released.Load() {
		cancel()
	}
	c.timed.Store(&timedContext{ctx: ctx, cancel: cancel})
	return ctx
}

// Err reports context.DeadlineExceeded once the deadline has passed, and the
// caller's error once the caller's context is done.
func (c *checkContext) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Err()
	}
	if c.released.Load() {
		return context.Canceled
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value answers from the armed context once there is one, so that contexts
// derived from this one (context.WithTimeout in a Redis client) attach to
// its cancellation, and context.Cause sees it.
func (c *checkContext) Value(key any) any {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Value(key)
	}
	return c.Context.Value(key)
}

// release stops the timer, if one was armed. The context counts as
// cancelled from then on, like after the cancel of context.WithDeadline.
func (c *checkContext) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released.Store(true)
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}

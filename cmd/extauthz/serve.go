package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/envoyauthz"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
)

// metrics are created once per process and shared by every generation of
// parts across reloads.
type metrics struct {
	reg       *prometheus.Registry
	authz     *authz.Metrics
	jwks      *jwks.Metrics
	apikeys   *apikeys.Metrics
	ratelimit *ratelimit.Metrics
	llm       *authz.LLMMetrics
	reloads   *prometheus.CounterVec
	intro     *introspect.Metrics
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	v, r := buildVersion()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "extauthz_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": v, "revision": r, "goversion": runtime.Version()},
	})
	info.Set(1)
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_config_reloads_total",
		Help: "Configuration reloads (SIGHUP or file change), by result (success, failure).",
	}, []string{"result"})
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	reg.MustRegister(info, reloads)
	return &metrics{
		reg:       reg,
		authz:     authz.NewMetrics(reg),
		jwks:      jwks.NewMetrics(reg),
		apikeys:   apikeys.NewMetrics(reg),
		ratelimit: ratelimit.NewMetrics(reg, nil),
		llm:       authz.NewLLMMetrics(reg),
		reloads:   reloads,
		intro:     introspect.NewMetrics(reg),
	}
}

// parts are what one configuration builds: a generation. The engine is the
// generation's own; the verifier, key store, rate limiter and introspection
// client are long-lived parts shared with the generations before and after
// it whose configuration section is the same. Each long-lived part has its
// own lifetime (see lifetime): it is never bound to the context or the life
// of the generation that built it, every generation using it holds a
// reference, and it stops when the last of them is closed.
type parts struct {
	cfg      *config.Config
	verifier *jwks.Verifier // nil without providers
	store    *apikeys.Store
	limiter  *ratelimit.Limiter // nil without rate limits
	engine   *authz.Engine
	// intro validates opaque tokens (nil without an introspection section).
	intro *introspect.Client
	// held are the lifetimes of the long-lived parts above (nil for an
	// absent part); this generation holds one reference on each.
	held      [numShared]*lifetime
	closeOnce sync.Once
}

// The long-lived parts, indexes of parts.held.
const (
	sharedJWKS = iota
	sharedKeys
	sharedLimiter
	sharedIntro
	numShared
)

// lifetime is the life of one long-lived part: the number of generations
// holding it, and how to stop it when none is left.
type lifetime struct {
	refs atomic.Int64
	stop func()
}

// newLifetime returns the lifetime of a new part, held by one generation.
func newLifetime(stop func()) *lifetime {
	l := &lifetime{stop: stop}
	l.refs.Store(1)
	return l
}

// acquire adds a generation holding the part. Only a holder may call it,
// so the part is never stopped at that moment.
func (l *lifetime) acquire() *lifetime {
	if l.refs.Add(1) <= 1 {
		panic("extauthz: acquire of a stopped part")
	}
	return l
}

// release drops a generation's hold and stops the part when it was the last.
func (l *lifetime) release() {
	switch n := l.refs.Add(-1); {
	case n == 0:
		l.stop()
	case n < 0:
		panic("extauthz: release of a stopped part")
	}
}

// limiterSettings is the part of the configuration a Limiter is built from:
// when it is unchanged, a reload keeps the Limiter (and its connections).
// The policy (limits, key, roles) lives in the Engine.
type limiterSettings struct {
	Redis   *ratelimit.RedisConfig
	OnError string
	Timeout time.Duration
}

func limiterSettingsOf(rc *ratelimit.Config) limiterSettings {
	return limiterSettings{Redis: rc.Redis, OnError: rc.OnError, Timeout: rc.Timeout}
}

// build makes the parts for cfg, reusing the verifier, key store, rate
// limiter and introspection client of prev when their configuration did
// not change (so a reload neither refetches every JWKS, drops the embedded
// store's keys, nor reconnects to the rate-limit Redis). A reused part gets
// one more holder; prev keeps its own hold until it is closed.
func build(cfg *config.Config, prev *parts, logger *slog.Logger, m *metrics) (*parts, error) {
	// ctx bounds the construction only: no part's goroutines run under it.
	ctx := context.Background()
	p := &parts{cfg: cfg}
	fail := func(err error) (*parts, error) {
		p.close()
		return nil, err
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.JWT, cfg.JWT) {
		p.verifier = prev.verifier
		p.reuse(prev, sharedJWKS)
	} else if len(cfg.JWT.Providers) > 0 {
		v, err := jwks.New(ctx, cfg.JWT, jwks.Deps{Logger: logger.With("component", "jwks"), Metrics: m.jwks})
		if err != nil {
			return fail(fmt.Errorf("jwt: %w", err))
		}
		p.verifier, p.held[sharedJWKS] = v, newLifetime(v.Close)
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.APIKeys, cfg.APIKeys) {
		p.store = prev.store
		p.reuse(prev, sharedKeys)
	} else {
		s, err := apikeys.New(ctx, cfg.APIKeys, apikeys.Deps{Logger: logger.With("component", "apikeys"), Metrics: m.apikeys, Password: os.Getenv("REDIS_PASSWORD")})
		if err != nil {
			return fail(fmt.Errorf("api_keys: %w", err))
		}
		p.store, p.held[sharedKeys] = s, newLifetime(func() { _ = s.Close() })
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Introspection, cfg.Introspection) {
		p.intro = prev.intro
		p.reuse(prev, sharedIntro)
	} else if cfg.Introspection != nil {
		c, err := introspect.New(ctx, *cfg.Introspection, introspect.Deps{Logger: logger.With("component", "introspect"), Metrics: m.intro})
		if err != nil {
			return fail(fmt.Errorf("introspection: %w", err))
		}
		p.intro, p.held[sharedIntro] = c, newLifetime(c.Close)
	}
	if rc := cfg.RateLimitConfig(); rc != nil {
		if prev != nil && prev.limiter != nil && reflect.DeepEqual(limiterSettingsOf(prev.cfg.RateLimitConfig()), limiterSettingsOf(rc)) {
			p.limiter = prev.limiter
			p.reuse(prev, sharedLimiter)
		} else {
			l, err := ratelimit.New(ctx, *rc, ratelimit.Deps{Logger: logger, Metrics: m.ratelimit, Password: os.Getenv("REDIS_PASSWORD")})
			if err != nil {
				return fail(fmt.Errorf("rate_limits: %w", err))
			}
			p.limiter, p.held[sharedLimiter] = l, newLifetime(func() { _ = l.Close() })
		}
	}
	mapper, err := rolemap.New(cfg.RoleMapping, cfg.Roles)
	if err != nil {
		return fail(err)
	}
	deps := authz.Deps{Mapper: mapper, Keys: p.store, LLMMetrics: m.llm}
	if p.verifier != nil {
		deps.Verifier = p.verifier
	}
	if p.limiter != nil {
		deps.Limiter = p.limiter
	}
	if p.intro != nil {
		deps.Introspector = p.intro
	}
	e, err := authz.NewEngine(cfg.Authz(), deps)
	if err != nil {
		return fail(err)
	}
	m.ratelimit.AddRoutes(e.RateLimitRoutes())
	p.engine = e
	return p, nil
}

// reuse makes p a holder of prev's long-lived part i (if prev has one).
func (p *parts) reuse(prev *parts, i int) {
	if l := prev.held[i]; l != nil {
		p.held[i] = l.acquire()
	}
}

// close ends this generation: it releases its hold on each long-lived part,
// stopping those no other generation holds. It is idempotent.
func (p *parts) close() {
	p.closeOnce.Do(func() {
		for _, l := range p.held {
			if l != nil {
				l.release()
			}
		}
	})
}

// ready reports whether the parts can answer. serving is what gRPC health
// (the Kubernetes readiness probe and Envoy health checks) reports: every
// JWKS has loaded a key. ready, what /readyz reports, also needs the key
// store to answer PING, and with rate_limits.on_error: deny the rate-limit
// Redis too. Redis is kept out of gRPC health on purpose: when
// Redis is down, every replica would otherwise leave the load balancer at
// once and JWT callers and cached keys would lose service too, while each
// check already fails closed on its own (uncached keys get 503).
func (p *parts) ready(ctx context.Context) (serving, ready bool, detail map[string]string) {
	detail = map[string]string{}
	serving = true
	if p.verifier != nil {
		if p.verifier.Ready() {
			detail["jwks"] = "ok"
		} else {
			detail["jwks"] = "not every JWKS has loaded a key yet, or key refresh has stopped"
			serving = false
		}
	}
	ready = serving
	if p.store != nil {
		if err := p.store.Ping(ctx); err != nil {
			detail["api_keys"] = "unreachable: " + err.Error()
			ready = false
		} else if p.store.Embedded() {
			detail["api_keys"] = "ok (embedded, development only)"
		} else {
			detail["api_keys"] = "ok"
		}
	}
	// The rate-limit Redis matters for readiness only with on_error: deny,
	// when its outage refuses requests; with allow they pass uncounted.
	if rc := p.cfg.RateLimitConfig(); p.limiter != nil && rc != nil && rc.OnError == ratelimit.OnErrorDeny {
		if err := p.limiter.Ping(ctx); err != nil {
			detail["rate_limits"] = "unreachable: " + err.Error()
			ready = false
		} else {
			detail["rate_limits"] = "ok"
		}
	}
	return serving, ready, detail
}

// server is the running process: listeners, the authz server and the current
// parts.
type server struct {
	path     string
	logger   *slog.Logger
	level    *slog.LevelVar
	metrics  *metrics
	authz    *authz.Server
	health   *health.Server
	mu       sync.Mutex // serialises reloads
	cur      atomic.Pointer[parts]
	stopping atomic.Bool
	state    atomic.Pointer[readiness]
	// retiring are the generations a reload replaced, until the checks
	// that may still run on them have ended (see retire).
	retireMu sync.Mutex
	retiring map[*parts]*time.Timer
}

// retireDrain is how long a replaced generation stays open after its
// check_timeout: a check that started on it (bounded by check_timeout, as
// are its Redis and introspection calls) ends on parts that still run.
const retireDrain = time.Second

// retire closes p, a generation a reload replaced, once the checks that may
// still run on it have ended. Parts the new generation reuses keep running
// under its hold either way.
func (s *server) retire(p *parts) {
	s.retireMu.Lock()
	defer s.retireMu.Unlock()
	if s.retiring == nil {
		s.retiring = map[*parts]*time.Timer{}
	}
	s.retiring[p] = time.AfterFunc(p.cfg.Server.CheckTimeout+retireDrain, func() {
		s.retireMu.Lock()
		delete(s.retiring, p)
		s.retireMu.Unlock()
		p.close()
	})
}

// closeRetired closes at once the replaced generations still draining (on
// shutdown, once no check runs any more).
func (s *server) closeRetired() {
	s.retireMu.Lock()
	ps := s.retiring
	s.retiring = nil
	s.retireMu.Unlock()
	for p, t := range ps {
		t.Stop()
		p.close()
	}
}

type readiness struct {
	Ready   bool              `json:"ready"`
	Serving bool              `json:"serving"` // the gRPC health status
	Checks  map[string]string `json:"checks"`
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: extauthz serve --config FILE")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "extauthz: %s\n", err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Log.Level))
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	// go-redis logs connection failures through a global logger on stderr;
	// route them into the JSON log at debug level (outages are already
	// reported by extauthz_redis_errors_total, readiness and Warn lines).
	redis.SetLogger(redisLogger{logger.With("component", "go-redis")})
	for _, w := range cfg.Warnings() {
		logger.Warn("config warning", "warning", w)
	}
	if err := serve(ctx, *path, cfg, logger, level); err != nil {
		logger.Error("server failed", "err", err)
		return 1
	}
	return 0
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// serve runs until ctx is done (SIGTERM/SIGINT), then stops gracefully.
func serve(ctx context.Context, path string, cfg *config.Config, logger *slog.Logger, level *slog.LevelVar) error {
	m := newMetrics()
	p, err := build(cfg, nil, logger, m)
	if err != nil {
		return err
	}
	s := &server{path: path, logger: logger, level: level, metrics: m, health: health.NewServer()}
	s.cur.Store(p)
	s.authz = authz.NewServer(p.engine, cfg.ServerOptions(), logger, m.authz)
	s.state.Store(&readiness{Checks: map[string]string{}})
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)

	// The front end's codec sends shared allowed responses and the prebuilt
	// denials from bytes encoded once (docs/PERFORMANCE.md); every other
	// message goes through the standard proto codec.
	front := envoyauthz.New(s.authz)
	gs := grpc.NewServer(
		grpc.ForceServerCodecV2(front.Codec()),
		grpc.MaxRecvMsgSize(cfg.Server.GRPCMaxRecvBytes),
		grpc.MaxHeaderListSize(uint32(cfg.Server.MaxHeaderBytes)),
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// Envoy keeps one long-lived HTTP/2 connection per worker; ping
			// idle connections so dead peers are noticed, never close them for
			// age.
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	authv3.RegisterAuthorizationServer(gs, front)
	var tlsCfg *serverTLS
	if cfg.Listen.TLS.Enabled() {
		if tlsCfg, err = newServerTLS(cfg.Listen.TLS, logger); err != nil {
			p.close()
			return fmt.Errorf("listen.tls: %w", err)
		}
	}
	healthpb.RegisterHealthServer(gs, s.health)
	if cfg.Server.GRPCReflection {
		reflection.Register(gs)
	}

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	listen := func(addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, err
		}
		listeners = append(listeners, l)
		return l, nil
	}
	gl, err := listen(cfg.Listen.GRPC)
	if err != nil {
		p.close()
		return fmt.Errorf("listen.grpc: %w", err)
	}
	if tlsCfg != nil {
		// TLS on the raw listener serves gRPC (ALPN h2) and lets mTLS
		// refuse a client before any gRPC frame is read.
		gl = tls.NewListener(gl, tlsCfg.config([]string{"h2"}))
	}
	var hs, as *http.Server
	var hl, al net.Listener
	if cfg.Listen.HTTP != "" {
		if hl, err = listen(cfg.Listen.HTTP); err != nil {
			p.close()
			return fmt.Errorf("listen.http: %w", err)
		}
		if tlsCfg != nil {
			hl = tls.NewListener(hl, tlsCfg.config([]string{"http/1.1"}))
		}
		hs = &http.Server{
			Handler:           forwardauth.New(s.authz),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	if cfg.Listen.Admin != "" {
		if al, err = listen(cfg.Listen.Admin); err != nil {
			p.close()
			return fmt.Errorf("listen.admin: %w", err)
		}
		as = &http.Server{
			Handler:           s.adminHandler(cfg.Server.Pprof),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	api, err := s.newAPIServer(cfg, listen, tlsCfg)
	if err != nil {
		closeAll()
		p.close()
		return err
	}

	errc := make(chan error, 4)
	go func() { errc <- gs.Serve(gl) }()
	if hs != nil {
		go func() { errc <- hs.Serve(hl) }()
	}
	if as != nil {
		go func() { errc <- as.Serve(al) }()
	}
	api.serve(logger, errc)
	logger.Info("extauthz serving",
		"grpc", gl.Addr().String(), "http", addrOf(hl), "admin", addrOf(al), "tls", tlsCfg != nil,
		"mtls", cfg.Listen.TLS.ClientCAFile != "",
		"jwt_providers", len(cfg.JWT.Providers), "routes", len(cfg.Routes))

	healthCtx, stopHealth := context.WithCancel(context.Background())
	defer stopHealth()
	go s.healthLoop(healthCtx)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var poll <-chan time.Time
	var lastSum string
	if iv := cfg.Server.ConfigPollInterval; iv > 0 {
		lastSum = fileSum(path)
		t := time.NewTicker(iv)
		defer t.Stop()
		poll = t.C
	}

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			s.reload("sighup")
			lastSum = fileSum(path)
		case <-poll:
			// A ConfigMap update swaps the file under us; reload when the
			// content really changed.
			if sum := fileSum(path); sum != "" && sum != lastSum {
				lastSum = sum
				s.reload("file_change")
			}
		case err := <-errc:
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				serveErr = err
				break loop
			}
		}
	}

	// Graceful stop: report not ready first so load balancers and Envoy
	// health checks move away, then stop accepting and let in-flight checks
	// finish.
	logger.Info("shutting down", "delay", cfg.Server.ShutdownDelay)
	s.stopping.Store(true)
	s.health.Shutdown()
	s.refreshReadiness(context.Background())
	if d := s.cur.Load().cfg.Server.ShutdownDelay; d > 0 {
		time.Sleep(d)
	}
	timeout := s.cur.Load().cfg.Server.ShutdownTimeout
	stopCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	if hs != nil {
		_ = hs.Shutdown(stopCtx)
	}
	api.shutdown(stopCtx)
	select {
	case <-done:
	case <-stopCtx.Done():
		gs.Stop()
	}
	if as != nil {
		_ = as.Shutdown(stopCtx)
	}
	s.closeRetired()
	s.cur.Load().close()
	logger.Info("stopped")
	return serveErr
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// reload builds a complete new generation from the file and swaps it in. An
// invalid file leaves the current generation serving.
func (s *server) reload(trigger string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	cfg, err := config.Load(s.path)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload rejected, keeping the running config", "trigger", trigger, "err", err)
		return
	}
	if !reflect.DeepEqual(cfg.Listen, cur.cfg.Listen) {
		s.logger.Warn("listen addresses changed: they take effect after a restart", "trigger", trigger)
	}
	next, err := build(cfg, cur, s.logger, s.metrics)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload failed, keeping the running config", "trigger", trigger, "err", err)
		return
	}
	s.cur.Store(next)
	s.authz.Swap(next.engine, cfg.ServerOptions())
	s.level.Set(parseLevel(cfg.Log.Level))
	// The previous generation lets go of its parts once the checks still
	// running on it have ended: those next reuses keep running under next's
	// hold, the others stop.
	s.retire(cur)
	for _, w := range cfg.Warnings() {
		s.logger.Warn("config warning", "warning", w)
	}
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.logger.Info("config reloaded", "trigger", trigger, "routes", len(cfg.Routes), "jwt_providers", len(cfg.JWT.Providers))
	s.refreshReadiness(context.Background())
}

// healthLoop keeps the gRPC health status and /readyz in step with the
// parts' readiness.
func (s *server) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.refreshReadiness(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *server) refreshReadiness(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	serving, ok, detail := s.cur.Load().ready(pctx)
	cancel()
	if s.stopping.Load() {
		serving, ok = false, false
		detail["shutdown"] = "shutting down"
	}
	prev := s.state.Swap(&readiness{Ready: ok, Serving: serving, Checks: detail})
	if prev != nil && (prev.Ready != ok || prev.Serving != serving) {
		s.logger.Info("readiness changed", "ready", ok, "serving", serving, "checks", detail)
	}
	if s.stopping.Load() {
		return // health.Shutdown already set NOT_SERVING for good
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
}

func (s *server) adminHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.state.Load()
		w.Header().Set("content-type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// redisLogger adapts go-redis's internal logging to slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}

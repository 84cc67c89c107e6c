package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
)

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
	s := newServer(path, logger, level, m, p)
	fe, err := s.openFrontEnds(cfg)
	if err != nil {
		p.close()
		return err
	}
	errc := fe.serve(logger, cfg)

	healthCtx, stopHealth := context.WithCancel(context.Background())
	defer stopHealth()
	go s.healthLoop(healthCtx)

	// SIGHUP stays caught until serve returns: one during the shutdown
	// must not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	serveErr := s.watch(ctx, cfg, hup, errc)
	s.shutdown(cfg, fe)
	return serveErr
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

// newServer returns the server of the first generation p, reporting
// NOT_SERVING until the first readiness check.
func newServer(path string, logger *slog.Logger, level *slog.LevelVar, m *metrics, p *parts) *server {
	s := &server{path: path, logger: logger, level: level, metrics: m, health: health.NewServer()}
	s.cur.Store(p)
	s.authz = authz.NewServer(p.engine, p.cfg.ServerOptions(), logger, m.authz)
	s.state.Store(&readiness{Checks: map[string]string{}})
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// shutdown stops gracefully: report not ready first so load balancers and
// Envoy health checks move away, then stop accepting and let in-flight
// checks finish, then close every generation.
func (s *server) shutdown(cfg *config.Config, fe *frontEnds) {
	s.logger.Info("shutting down", "delay", cfg.Server.ShutdownDelay)
	s.stopping.Store(true)
	s.health.Shutdown()
	s.refreshReadiness(context.Background())
	if d := s.cur.Load().cfg.Server.ShutdownDelay; d > 0 {
		time.Sleep(d)
	}
	fe.shutdown(s.cur.Load().cfg.Server.ShutdownTimeout)
	s.closeRetired()
	s.cur.Load().close()
	s.logger.Info("stopped")
}

// redisLogger adapts go-redis's internal logging to slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}

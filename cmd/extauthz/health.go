package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/ratelimit"
)

// readiness is what /readyz answers, refreshed by healthLoop.
type readiness struct {
	Ready   bool              `json:"ready"`
	Serving bool              `json:"serving"` // the gRPC health status
	Checks  map[string]string `json:"checks"`
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

package main

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
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

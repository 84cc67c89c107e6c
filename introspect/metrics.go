package introspect

import "github.com/prometheus/client_golang/prometheus"

// Metrics count introspection requests and cache lookups. Create them once
// per process with NewMetrics; they survive config reloads.
type Metrics struct {
	active, inactive, failed prometheus.Counter
	hit, miss                prometheus.Counter
	duration                 prometheus.Observer
	rateLimited, busy        prometheus.Counter
	inFlight                 prometheus.Gauge
}

// NewMetrics registers extauthz_introspection_requests_total{result}
// (active, inactive, error), extauthz_introspection_cache_lookups_total{result}
// (hit, miss), extauthz_introspection_duration_seconds,
// extauthz_introspection_throttled_total{reason} (rate_limited,
// concurrency_limited) and extauthz_introspection_in_flight on reg, every
// series starting at zero.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_introspection_requests_total",
		Help: "Requests to the token introspection endpoint, by result (active, inactive, error).",
	}, []string{"result"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_introspection_cache_lookups_total",
		Help: "Introspection cache lookups, by result (hit, miss).",
	}, []string{"result"})
	dur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "extauthz_introspection_duration_seconds",
		Help:    "Time of one request to the token introspection endpoint.",
		Buckets: []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
	})
	throttled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_introspection_throttled_total",
		Help: "Cache misses refused (503) without a request to the introspection endpoint, by reason (rate_limited: over max_requests_per_second; concurrency_limited: max_concurrent requests in flight).",
	}, []string{"reason"})
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "extauthz_introspection_in_flight",
		Help: "Requests to the introspection endpoint in flight (at most max_concurrent).",
	})
	reg.MustRegister(req, cache, dur, throttled, inFlight)
	return &Metrics{
		active:      req.WithLabelValues("active"),
		inactive:    req.WithLabelValues("inactive"),
		failed:      req.WithLabelValues("error"),
		hit:         cache.WithLabelValues("hit"),
		miss:        cache.WithLabelValues("miss"),
		duration:    dur,
		rateLimited: throttled.WithLabelValues("rate_limited"),
		busy:        throttled.WithLabelValues("concurrency_limited"),
		inFlight:    inFlight,
	}
}

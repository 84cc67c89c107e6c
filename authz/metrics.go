package authz

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the decision metrics. Create them once per process with
// NewMetrics and hand them to every Server; they survive config reloads.
type Metrics struct {
	requests [numTransports][numMethods][numCodes]prometheus.Counter
	duration [numTransports][numCodes]prometheus.Observer
}

// durationBuckets are the check-duration histogram buckets, in seconds: from
// 0.25 ms, where a cached check lands, to 1 s, beyond any sane Envoy timeout.
var durationBuckets = []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// NewMetrics registers extauthz_check_requests_total{transport,method,outcome}
// and extauthz_check_duration_seconds{transport,outcome} on reg, with every
// label combination initialised to zero.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_check_requests_total",
		Help: "Authorization checks answered, by transport (grpc, http), authentication method (jwt, api_key, mtls, opaque, none) and outcome (allowed or the error code sent to the client).",
	}, []string{"transport", "method", "outcome"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "extauthz_check_duration_seconds",
		Help:    "Time to answer an authorization check, from request decoded to response built, by transport and outcome.",
		Buckets: durationBuckets,
	}, []string{"transport", "outcome"})
	reg.MustRegister(req, dur)
	m := &Metrics{}
	for t := Transport(0); t < numTransports; t++ {
		for c := Code(0); c < numCodes; c++ {
			m.duration[t][c] = dur.WithLabelValues(t.String(), c.String())
			for meth := AuthMethod(0); meth < numMethods; meth++ {
				m.requests[t][meth][c] = req.WithLabelValues(t.String(), meth.String(), c.String())
			}
		}
	}
	return m
}

func (m *Metrics) observe(t Transport, meth AuthMethod, c Code, seconds float64) {
	if t >= numTransports || meth >= numMethods || c >= numCodes {
		return
	}
	m.requests[t][meth][c].Inc()
	m.duration[t][c].Observe(seconds)
}

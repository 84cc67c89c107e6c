package ratelimit

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Results: the result label of extauthz_ratelimit_decisions_total.
const (
	resAllowed      = iota // counted and within the limit
	resLimited             // counted and over the limit
	resErrorAllowed        // Redis failed; on_error: allow let it through
	resErrorDenied         // Redis failed; on_error: deny refused it
	numResults
)

var resultNames = [numResults]string{"allowed", "limited", "error_allowed", "error_denied"}

// otherRouteLabel counts rules whose route was never announced with
// AddRoutes.
const otherRouteLabel = "other"

type routeCounters [numResults]prometheus.Counter

// Metrics are the rate-limit series. Create them once per process with
// NewMetrics and hand them to every Limiter; on a config reload, announce the
// new configuration's routes with AddRoutes.
type Metrics struct {
	decisions *prometheus.CounterVec

	mu     sync.Mutex                                // serialises AddRoutes
	routes atomic.Pointer[map[string]*routeCounters] // copy on write
	other  *routeCounters
}

// NewMetrics registers extauthz_ratelimit_decisions_total{route,result} on
// reg (nil: nowhere) and creates, at zero, the series of every route in
// routes, of default_route (checks that matched no route) and of other
// (routes never announced). result is allowed, limited, error_allowed or
// error_denied.
func NewMetrics(reg prometheus.Registerer, routes []string) *Metrics {
	m := &Metrics{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_ratelimit_decisions_total",
		Help: "Rate-limit decisions by route and result (allowed, limited, error_allowed and error_denied when Redis failed and on_error decided).",
	}, []string{"route", "result"})}
	if reg != nil {
		reg.MustRegister(m.decisions)
	}
	m.other = m.newCounters(otherRouteLabel)
	empty := map[string]*routeCounters{}
	m.routes.Store(&empty)
	m.AddRoutes(append([]string{DefaultRouteLabel}, routes...))
	return m
}

func (m *Metrics) newCounters(label string) *routeCounters {
	var c routeCounters
	for r := range c {
		c[r] = m.decisions.WithLabelValues(label, resultNames[r])
	}
	return &c
}

// AddRoutes creates the series of routes that have none yet. Series of routes
// that are gone stay (counters never go back).
func (m *Metrics) AddRoutes(routes []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.routes.Load()
	next := make(map[string]*routeCounters, len(cur)+len(routes))
	for k, v := range cur {
		next[k] = v
	}
	for _, r := range routes {
		if r == "" {
			r = DefaultRouteLabel
		}
		if _, ok := next[r]; !ok {
			next[r] = m.newCounters(r)
		}
	}
	m.routes.Store(&next)
}

func (m *Metrics) count(route string, res int) {
	if m == nil {
		return
	}
	if route == "" {
		route = DefaultRouteLabel
	}
	c, ok := (*m.routes.Load())[route]
	if !ok {
		c = m.other
	}
	c[res].Inc()
}

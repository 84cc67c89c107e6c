package keysapi

import "github.com/prometheus/client_golang/prometheus"

// The key lifecycle events, the values of the event label.
const (
	EventCreated   = "created"
	EventExchanged = "exchanged"
	EventRevoked   = "revoked"
	// EventMintLimited is a create or exchange refused by
	// api.mint_rate_limit (429).
	EventMintLimited = "mint_limited"
)

var events = []string{EventCreated, EventExchanged, EventRevoked, EventMintLimited}

// Metrics counts key lifecycle events. Create it once per process.
type Metrics struct {
	events *prometheus.CounterVec
}

// NewMetrics registers extauthz_apikey_events_total{event} on reg, with
// every event at zero.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_apikey_events_total",
		Help: "API key lifecycle events through the key API: created, exchanged (token exchange), revoked, mint_limited (refused by api.mint_rate_limit).",
	}, []string{"event"})}
	for _, e := range events {
		m.events.WithLabelValues(e)
	}
	reg.MustRegister(m.events)
	return m
}

func (m *Metrics) count(event string) {
	if m != nil {
		m.events.WithLabelValues(event).Inc()
	}
}

func (m *Metrics) add(event string, n int) {
	if m != nil && n > 0 {
		m.events.WithLabelValues(event).Add(float64(n))
	}
}

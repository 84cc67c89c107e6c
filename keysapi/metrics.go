package keysapi

import "github.com/prometheus/client_golang/prometheus"

// The key lifecycle events, the values of the event label.
const (
	EventCreated   = "created"
	EventExchanged = "exchanged"
	EventRevoked   = "revoked"
)

var events = []string{EventCreated, EventExchanged, EventRevoked}

// Metrics counts key lifecycle events. Create it once per process.
type Metrics struct {
	events *prometheus.CounterVec
}

// NewMetrics registers extauthz_apikey_events_total{event} on reg, with
// every event at zero.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_apikey_events_total",
		Help: "API key lifecycle events through the key API: created, exchanged (token exchange), revoked.",
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

package jwks

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Refresh results, the values of the result label.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// Metrics holds the jwks series. Create it once per process with NewMetrics
// and pass it to every New (config reloads reuse it).
type Metrics struct {
	refreshes   *prometheus.CounterVec
	keys        *prometheus.GaugeVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter

	mu   sync.Mutex
	refs map[string]int // provider name -> live Verifiers using it
}

// NewMetrics creates the jwks series and registers them on reg:
// extauthz_jwks_refresh_total{provider,result},
// extauthz_jwks_keys{provider}, extauthz_token_cache_hits_total and
// extauthz_token_cache_misses_total. Provider label values are the
// configured provider names; a Verifier creates its providers' series at
// zero in New and the last Verifier using a name deletes them in Close.
// The cache counters move only while the cache is enabled; a miss is any
// token not served from the cache, valid or not.
// It panics if the series are already registered on reg (call it once).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_jwks_refresh_total",
			Help: "Fetches of a provider's JWK Set (URL, discovery or file), by result.",
		}, []string{"provider", "result"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "extauthz_jwks_keys",
			Help: "Usable signature keys currently loaded for a provider.",
		}, []string{"provider"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "extauthz_token_cache_hits_total",
			Help: "Token verifications answered from the verified-token cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "extauthz_token_cache_misses_total",
			Help: "Token verifications not found in the verified-token cache.",
		}),
		refs: map[string]int{},
	}
	reg.MustRegister(m.refreshes, m.keys, m.cacheHits, m.cacheMisses)
	return m
}

// acquire creates the series of the named providers at zero (unless another
// Verifier already uses the name).
func (m *Metrics) acquire(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if m.refs[n] == 0 {
			m.refreshes.WithLabelValues(n, resultSuccess)
			m.refreshes.WithLabelValues(n, resultFailure)
			m.keys.WithLabelValues(n).Set(0)
		}
		m.refs[n]++
	}
}

// release deletes the series of the named providers when no Verifier uses
// them any more, so a provider removed by a reload leaves no stale series.
func (m *Metrics) release(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		m.refs[n]--
		if m.refs[n] > 0 {
			continue
		}
		delete(m.refs, n)
		m.refreshes.DeleteLabelValues(n, resultSuccess)
		m.refreshes.DeleteLabelValues(n, resultFailure)
		m.keys.DeleteLabelValues(n)
	}
}

// providerMetrics are one provider's pre-resolved series.
type providerMetrics struct {
	success prometheus.Counter
	failure prometheus.Counter
	keys    prometheus.Gauge
}

func (m *Metrics) forProvider(name string) providerMetrics {
	return providerMetrics{
		success: m.refreshes.WithLabelValues(name, resultSuccess),
		failure: m.refreshes.WithLabelValues(name, resultFailure),
		keys:    m.keys.WithLabelValues(name),
	}
}

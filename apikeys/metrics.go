package apikeys

import "github.com/prometheus/client_golang/prometheus"

// Label values of extauthz_apikey_lookups_total.
const (
	// sources: where the answer came from.
	srcCache  = iota // in-process cache (positive or negative)
	srcRedis         // a Redis HGETALL
	srcMemory        // the embedded store
	srcLocal         // decided from the key's shape alone (malformed)
	numSources
)

const (
	resFound = iota
	resNotFound
	resRevoked
	resExpired
	resMalformed
	resError
	resCorrupt
	numResults
)

var (
	sourceNames = [numSources]string{"cache", "redis", "memory", "local"}
	resultNames = [numResults]string{"found", "not_found", "revoked", "expired", "malformed", "error", "corrupt"}
)

// possible lists the (source, result) pairs that can occur; exactly these
// series are created at startup.
var possible = [numSources][]int{
	srcCache:  {resFound, resNotFound, resRevoked, resExpired, resCorrupt},
	srcRedis:  {resFound, resNotFound, resRevoked, resExpired, resError, resCorrupt},
	srcMemory: {resFound, resNotFound, resRevoked, resExpired},
	srcLocal:  {resMalformed},
}

// Metrics are the apikeys series. Create them once per process with
// NewMetrics and pass them to every Store (they survive config reloads).
type Metrics struct {
	lookups     [numSources][numResults]prometheus.Counter
	redisErrors prometheus.Counter
}

// NewMetrics creates and registers on reg:
//
//   - extauthz_apikey_lookups_total{source,result}: API-key lookups by where
//     the answer came from (cache, redis, memory, or local for keys refused
//     by their shape) and the result (found, not_found, revoked, expired,
//     malformed, error, or corrupt for a stored record that cannot be
//     decoded, see ErrCorrupt). Every possible pair starts at zero.
//   - extauthz_redis_errors_total: failed Redis calls of the key store
//     (lookups, admin operations, PING, pub/sub), timeouts included.
//
// A nil reg registers nothing. Registering twice on the same registry panics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_apikey_lookups_total",
		Help: "API-key lookups by source of the answer (cache, redis, memory, local) and result.",
	}, []string{"source", "result"})
	redisErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "extauthz_redis_errors_total",
		Help: "Failed Redis calls made by the API-key store, timeouts included.",
	})
	m := &Metrics{redisErrors: redisErrors}
	for src, results := range possible {
		for _, res := range results {
			m.lookups[src][res] = lookups.WithLabelValues(sourceNames[src], resultNames[res])
		}
	}
	if reg != nil {
		reg.MustRegister(lookups, redisErrors)
	}
	return m
}

func (m *Metrics) lookup(src, res int) {
	if c := m.lookups[src][res]; c != nil {
		c.Inc()
	}
}

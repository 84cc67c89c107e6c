package authz

import (
	"sync"
	"time"
)

// DefaultDenialLogRate is the default number of identical denials logged per
// second (log.denials_per_second).
const DefaultDenialLogRate = 10

// maxSampleKeys bounds the sampler's memory. The key's parts come from fixed
// lists and the config (outcome, reason, route, method) plus a presented
// key's public id, so the bound is only reached by a flood of distinct
// revoked keys; those then share one budget.
const maxSampleKeys = 4096

// sampleKey identifies "the same denial": what an anonymous client can repeat.
type sampleKey struct {
	transport Transport
	method    AuthMethod
	code      Code
	reason    Reason
	route     string
	keyID     string // a revoked or expired key's public id, if any
}

type sampleCount struct {
	logged     int // lines logged in the current window
	suppressed int // lines not logged since the last one logged
}

// denialSampler logs at most rate lines per second per sampleKey and counts
// the rest, reported as "suppressed" on the next line logged for that key.
// Metrics are not sampled. A nil sampler, or rate 0, logs every denial.
type denialSampler struct {
	rate int

	mu     sync.Mutex
	window time.Time // start of the current one-second window
	counts map[sampleKey]*sampleCount
}

func newDenialSampler(rate int) *denialSampler {
	if rate <= 0 {
		return nil
	}
	return &denialSampler{rate: rate, counts: make(map[sampleKey]*sampleCount)}
}

// allow reports whether a denial with key k is logged now and, if so, how
// many identical ones were suppressed since the last one logged.
func (ds *denialSampler) allow(k sampleKey, now time.Time) (ok bool, suppressed int) {
	if ds == nil {
		return true, 0
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if now.Sub(ds.window) >= time.Second {
		ds.window = now
		for key, c := range ds.counts {
			if c.suppressed == 0 {
				delete(ds.counts, key) // keeps the map to the active keys
			} else {
				c.logged = 0
			}
		}
	}
	c := ds.counts[k]
	if c == nil {
		if len(ds.counts) >= maxSampleKeys {
			k = sampleKey{route: "(overflow)"}
			c = ds.counts[k]
		}
		if c == nil {
			c = &sampleCount{}
			ds.counts[k] = c
		}
	}
	if c.logged >= ds.rate {
		c.suppressed++
		return false, 0
	}
	c.logged++
	suppressed, c.suppressed = c.suppressed, 0
	return true, suppressed
}

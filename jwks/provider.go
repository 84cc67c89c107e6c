package jwks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// provider is one configured issuer: its checks and its refreshing keys.
type provider struct {
	name      string
	issuer    string
	audiences []string
	algs      map[string]bool
	subject   claimPath
	groups    claimPath
	headers   []headerMapping // sorted by header name
	// tokenTypes are the accepted typ values, normalised; empty: any.
	tokenTypes []string

	log     *slog.Logger
	metrics providerMetrics
	src     source
	isFile  bool
	hmac    bool // an HMAC provider: src yields the secret, not a JWK Set
	opts    *options

	refreshInterval time.Duration

	keys atomic.Pointer[keySet] // nil until the first successful load

	// limiter bounds refreshes triggered by tokens whose key is unknown.
	limiter *rate.Limiter
	kick    chan struct{} // asks the refresh goroutine to refresh now

	mu       sync.Mutex
	pending  bool          // a kick was sent and the refresh has not started
	inflight bool          // a refresh is running
	done     chan struct{} // closed when the current or next refresh ends
	closed   bool          // the refresh goroutine has stopped

	// Owned by the refresh goroutine (and New, before it starts).
	lastDoc [sha256.Size]byte // hash of the last document loaded
	lastOK  bool              // whether the last fetch succeeded
}

// selectKey returns the key for a token with the given alg and kid. When no
// key fits, it waits (at most until ctx is done) for a refresh, which it
// triggers itself if the unknown-kid limiter allows; so a rotated key works
// at once, and a flood of unknown kids costs at most one fetch per limiter
// period. It never waits for the limiter itself.
func (p *provider) selectKey(ctx context.Context, alg, kid string) (*key, error) {
	ks := p.keys.Load()
	if ks != nil {
		k, err := ks.find(alg, kid)
		if err != errKeyNotFound {
			return k, err
		}
	}
	if p.awaitRefresh(ctx) {
		ks = p.keys.Load()
	}
	if ks == nil {
		return nil, ErrNoKeys
	}
	return ks.find(alg, kid)
}

// awaitRefresh waits for a refresh to end: the running or already requested
// one, or a new one if the limiter allows it. It reports false at once when
// no refresh may run, and when ctx ends first.
func (p *provider) awaitRefresh(ctx context.Context) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	if !p.inflight && !p.pending {
		if !p.limiter.Allow() {
			p.mu.Unlock()
			return false
		}
		p.pending = true
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// run refreshes the keys until ctx ends: every refresh_interval after a
// success (every file poll for files), with capped exponential backoff after
// a failure, and at once when kicked. firstDone is called after the first
// attempt.
func (p *provider) run(ctx context.Context, firstDone func()) {
	defer p.stop()
	backoff := p.opts.retryMin
	// With Go 1.23+ timer semantics Reset needs no draining, and a stopped
	// timer delivers no stale value.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	force := false
	failures := 0
	for {
		ok := p.refresh(ctx, force)
		if firstDone != nil {
			firstDone()
			firstDone = nil
		}
		if ok && failures > 0 {
			p.log.LogAttrs(ctx, slog.LevelInfo, "jwks refresh recovered", slog.Int("failed_attempts", failures))
		}
		if ok {
			failures = 0
		} else {
			failures++
		}
		var wait time.Duration
		switch {
		case p.isFile:
			wait = p.opts.filePoll
		case ok:
			wait = jitter(p.refreshInterval)
			backoff = p.opts.retryMin
		default:
			wait = jitter(backoff)
			backoff = min(2*backoff, p.opts.retryMax, p.refreshInterval)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			force = false
		case <-p.kick:
			timer.Stop()
			force = true
		}
	}
}

// jitter spreads refreshes of many replicas: it returns d minus up to 10%.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// stopped reports whether the refresh goroutine has ended.
func (p *provider) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *provider) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	close(p.done)
}

// refresh fetches and installs the keys once; it reports success. On
// failure the keys loaded before stay in use.
func (p *provider) refresh(ctx context.Context, force bool) bool {
	p.mu.Lock()
	p.pending, p.inflight = false, true
	select {
	case <-p.kick: // this refresh serves the pending request
		force = true
	default:
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inflight = false
		close(p.done)
		p.done = make(chan struct{})
		p.mu.Unlock()
	}()

	doc, unchanged, err := p.src.fetch(ctx, force)
	if unchanged {
		return p.lastOK
	}
	p.lastOK = false
	if err == nil {
		err = p.install(doc)
	}
	if err != nil {
		if ctx.Err() != nil {
			return false // shutting down
		}
		p.metrics.failure.Inc()
		kept := 0
		if ks := p.keys.Load(); ks != nil {
			kept = len(ks.all)
		}
		p.log.LogAttrs(ctx, slog.LevelWarn, "jwks refresh failed",
			slog.String("source", p.src.describe()), slog.Int("keys_kept", kept), slog.Any("err", err))
		return false
	}
	p.metrics.success.Inc()
	p.lastOK = true
	return true
}

// install parses doc and swaps in its keys.
func (p *provider) install(doc []byte) error {
	sum := sha256.Sum256(doc)
	old := p.keys.Load()
	if old != nil && bytes.Equal(sum[:], p.lastDoc[:]) {
		return nil
	}
	if p.hmac {
		return p.installSecret(doc, old)
	}
	keys, skipped, err := parseJWKS(doc)
	for _, s := range skipped {
		p.log.LogAttrs(context.Background(), slog.LevelWarn, "jwks key ignored",
			slog.String("kid", s.kid), slog.String("reason", s.reason))
	}
	if err != nil {
		return err
	}
	next, removed := newKeySet(old, keys)
	p.keys.Store(next)
	p.lastDoc = sum
	for _, k := range removed {
		k.removed.Store(true)
	}
	p.metrics.keys.Set(float64(len(next.all)))
	var added, gone []string
	for _, k := range next.all {
		if old == nil || !containsKey(old.all, k) {
			added = append(added, k.kid)
		}
	}
	for _, k := range removed {
		gone = append(gone, k.kid)
	}
	if len(added) > 0 || len(gone) > 0 {
		p.log.LogAttrs(context.Background(), slog.LevelInfo, "jwks keys updated",
			slog.Int("keys", len(next.all)), slog.Any("added_kids", added), slog.Any("removed_kids", gone))
	}
	return nil
}

// installSecret swaps in a new HMAC secret (doc, already checked by the
// source). Tokens cached under the old secret are dropped at once.
func (p *provider) installSecret(doc []byte, old *keySet) error {
	sum := sha256.Sum256(doc)
	next, removed := newKeySet(old, []*key{{pub: hmacSecret(bytes.Clone(doc))}})
	p.keys.Store(next)
	p.lastDoc = sum
	for _, k := range removed {
		k.removed.Store(true)
	}
	p.metrics.keys.Set(1)
	if old != nil {
		p.log.LogAttrs(context.Background(), slog.LevelInfo, "hmac secret updated")
	}
	return nil
}

func containsKey(keys []*key, k *key) bool {
	for _, o := range keys {
		if o == k {
			return true
		}
	}
	return false
}

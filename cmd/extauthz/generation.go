package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
)

// parts are what one configuration builds: a generation. The engine is the
// generation's own; the verifier, key store, rate limiter and introspection
// client are long-lived parts shared with the generations before and after
// it whose configuration section is the same. Each long-lived part has its
// own lifetime (see lifetime): it is never bound to the context or the life
// of the generation that built it, every generation using it holds a
// reference, and it stops when the last of them is closed.
type parts struct {
	cfg      *config.Config
	verifier *jwks.Verifier // nil without providers
	store    *apikeys.Store
	limiter  *ratelimit.Limiter // nil without rate limits
	engine   *authz.Engine
	// intro validates opaque tokens (nil without an introspection section).
	intro *introspect.Client
	// held are the lifetimes of the long-lived parts above (nil for an
	// absent part); this generation holds one reference on each.
	held      [numShared]*lifetime
	closeOnce sync.Once
}

// The long-lived parts, indexes of parts.held.
const (
	sharedJWKS = iota
	sharedKeys
	sharedLimiter
	sharedIntro
	numShared
)

// lifetime is the life of one long-lived part: the number of generations
// holding it, and how to stop it when none is left.
type lifetime struct {
	refs atomic.Int64
	stop func()
}

// newLifetime returns the lifetime of a new part, held by one generation.
func newLifetime(stop func()) *lifetime {
	l := &lifetime{stop: stop}
	l.refs.Store(1)
	return l
}

// acquire adds a generation holding the part. Only a holder may call it,
// so the part is never stopped at that moment.
func (l *lifetime) acquire() *lifetime {
	if l.refs.Add(1) <= 1 {
		panic("extauthz: acquire of a stopped part")
	}
	return l
}

// release drops a generation's hold and stops the part when it was the last.
func (l *lifetime) release() {
	switch n := l.refs.Add(-1); {
	case n == 0:
		l.stop()
	case n < 0:
		panic("extauthz: release of a stopped part")
	}
}

// limiterSettings is the part of the configuration a Limiter is built from:
// when it is unchanged, a reload keeps the Limiter (and its connections).
// The policy (limits, key, roles) lives in the Engine.
type limiterSettings struct {
	Redis   *ratelimit.RedisConfig
	OnError string
	Timeout time.Duration
}

func limiterSettingsOf(rc *ratelimit.Config) limiterSettings {
	return limiterSettings{Redis: rc.Redis, OnError: rc.OnError, Timeout: rc.Timeout}
}

// build makes the parts for cfg, reusing the verifier, key store, rate
// limiter and introspection client of prev when their configuration did
// not change (so a reload neither refetches every JWKS, drops the embedded
// store's keys, nor reconnects to the rate-limit Redis). A reused part gets
// one more holder; prev keeps its own hold until it is closed.
func build(cfg *config.Config, prev *parts, logger *slog.Logger, m *metrics) (*parts, error) {
	// ctx bounds the construction only: no part's goroutines run under it.
	ctx := context.Background()
	p := &parts{cfg: cfg}
	fail := func(err error) (*parts, error) {
		p.close()
		return nil, err
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.JWT, cfg.JWT) {
		p.verifier = prev.verifier
		p.reuse(prev, sharedJWKS)
	} else if len(cfg.JWT.Providers) > 0 {
		v, err := jwks.New(ctx, cfg.JWT, jwks.Deps{Logger: logger.With("component", "jwks"), Metrics: m.jwks})
		if err != nil {
			return fail(fmt.Errorf("jwt: %w", err))
		}
		p.verifier, p.held[sharedJWKS] = v, newLifetime(v.Close)
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.APIKeys, cfg.APIKeys) {
		p.store = prev.store
		p.reuse(prev, sharedKeys)
	} else {
		s, err := apikeys.New(ctx, cfg.APIKeys, apikeys.Deps{Logger: logger.With("component", "apikeys"), Metrics: m.apikeys, Password: os.Getenv("REDIS_PASSWORD")})
		if err != nil {
			return fail(fmt.Errorf("api_keys: %w", err))
		}
		p.store, p.held[sharedKeys] = s, newLifetime(func() { _ = s.Close() })
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Introspection, cfg.Introspection) {
		p.intro = prev.intro
		p.reuse(prev, sharedIntro)
	} else if cfg.Introspection != nil {
		c, err := introspect.New(ctx, *cfg.Introspection, introspect.Deps{Logger: logger.With("component", "introspect"), Metrics: m.intro})
		if err != nil {
			return fail(fmt.Errorf("introspection: %w", err))
		}
		p.intro, p.held[sharedIntro] = c, newLifetime(c.Close)
	}
	if rc := cfg.RateLimitConfig(); rc != nil {
		if prev != nil && prev.limiter != nil && reflect.DeepEqual(limiterSettingsOf(prev.cfg.RateLimitConfig()), limiterSettingsOf(rc)) {
			p.limiter = prev.limiter
			p.reuse(prev, sharedLimiter)
		} else {
			l, err := ratelimit.New(ctx, *rc, ratelimit.Deps{Logger: logger, Metrics: m.ratelimit, Password: os.Getenv("REDIS_PASSWORD")})
			if err != nil {
				return fail(fmt.Errorf("rate_limits: %w", err))
			}
			p.limiter, p.held[sharedLimiter] = l, newLifetime(func() { _ = l.Close() })
		}
	}
	e, err := p.newEngine(m)
	if err != nil {
		return fail(err)
	}
	p.engine = e
	return p, nil
}

// newEngine builds the generation's engine over its parts.
func (p *parts) newEngine(m *metrics) (*authz.Engine, error) {
	mapper, err := rolemap.New(p.cfg.RoleMapping, p.cfg.Roles)
	if err != nil {
		return nil, err
	}
	deps := authz.Deps{Mapper: mapper, Keys: p.store, LLMMetrics: m.llm}
	if p.verifier != nil {
		deps.Verifier = p.verifier
	}
	if p.limiter != nil {
		deps.Limiter = p.limiter
	}
	if p.intro != nil {
		deps.Introspector = p.intro
	}
	e, err := authz.NewEngine(p.cfg.Authz(), deps)
	if err != nil {
		return nil, err
	}
	m.ratelimit.AddRoutes(e.RateLimitRoutes())
	return e, nil
}

// reuse makes p a holder of prev's long-lived part i (if prev has one).
func (p *parts) reuse(prev *parts, i int) {
	if l := prev.held[i]; l != nil {
		p.held[i] = l.acquire()
	}
}

// close ends this generation: it releases its hold on each long-lived part,
// stopping those no other generation holds. It is idempotent.
func (p *parts) close() {
	p.closeOnce.Do(func() {
		for _, l := range p.held {
			if l != nil {
				l.release()
			}
		}
	})
}

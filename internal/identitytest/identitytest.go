// Package identitytest builds the real identity backends that tests above
// the leaves (authz, keysapi, cmd/extauthz) check requests against: a
// jwks.Verifier trusting jwkstest IdPs, returned once their keys are loaded
// (NewVerifier), and an apikeys.Store, on a fresh redis-server when asked
// (NewStore, RedisConfig). Everything is closed in t.Cleanup.
//
// These helpers cannot live in jwkstest and apikeystest: the jwks and
// apikeys packages' own in-package tests import those, and a helper there
// that imports jwks or apikeys would be an import cycle.
package identitytest

import (
	"context"
	"testing"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// Audience is the audience of the providers Provider returns.
const Audience = "llm-gateway"

// loadTimeout bounds the wait for an IdP's keys: generous, because a busy
// machine slows the first fetch, and the wait ends as soon as they load.
const loadTimeout = 10 * time.Second

// Provider returns the provider config named name that trusts idp's
// issuer and JWKS for Audience, with the defaults applied.
func Provider(name string, idp *jwkstest.Server) jwks.ProviderConfig {
	p := jwks.ProviderConfig{Name: name, Issuer: idp.Issuer(), Audiences: []string{Audience}, JWKSURL: idp.JWKSURL()}
	p.ApplyDefaults()
	return p
}

// NewVerifier returns the Verifier of jwks.Default with providers,
// closed in t.Cleanup, once it verifies a token signed by each of idps (a
// provider whose IdP is not among them, such as one that is down, is not
// waited for). It fails the test if a key does not load within 10s.
func NewVerifier(t testing.TB, deps jwks.Deps, providers []jwks.ProviderConfig, idps ...*jwkstest.Server) *jwks.Verifier {
	t.Helper()
	cfg := jwks.Default()
	cfg.Providers = providers
	v, err := jwks.New(context.Background(), cfg, deps)
	if err != nil {
		t.Fatalf("jwks.New: %v", err)
	}
	t.Cleanup(v.Close)
	for _, idp := range idps {
		waitKeys(t, v, idp, audienceOf(t, providers, idp))
	}
	return v
}

// audienceOf returns the first audience of the provider trusting idp.
func audienceOf(t testing.TB, providers []jwks.ProviderConfig, idp *jwkstest.Server) string {
	t.Helper()
	for _, p := range providers {
		if p.Issuer == idp.Issuer() && len(p.Audiences) > 0 {
			return p.Audiences[0]
		}
	}
	t.Fatalf("no provider trusts the IdP %s", idp.Issuer())
	return ""
}

// waitKeys polls until v verifies a token of idp, for up to loadTimeout.
func waitKeys(t testing.TB, v *jwks.Verifier, idp *jwkstest.Server, aud string) {
	t.Helper()
	deadline := time.Now().Add(loadTimeout)
	for {
		_, err := v.Verify(context.Background(), idp.Sign(idp.Claims("probe", aud)))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the keys of %s did not load within %s: %v", idp.Issuer(), loadTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisConfig returns apikeys.Default on a fresh redis-server
// (apikeystest.StartRedis) with a 1s timeout.
func RedisConfig(t testing.TB) apikeys.Config {
	t.Helper()
	cfg := apikeys.Default()
	cfg.Redis = &apikeys.RedisConfig{Addrs: []string{apikeystest.StartRedis(t)}, Timeout: time.Second}
	return cfg
}

// NewStore returns the Store of cfg, closed in t.Cleanup.
func NewStore(t testing.TB, cfg apikeys.Config, deps apikeys.Deps) *apikeys.Store {
	t.Helper()
	s, err := apikeys.New(context.Background(), cfg, deps)
	if err != nil {
		t.Fatalf("apikeys.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

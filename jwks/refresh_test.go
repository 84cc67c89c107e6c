package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

func refreshCount(v *Verifier, provider, result string) int {
	return int(testutil.ToFloat64(v.metrics.refreshes.WithLabelValues(provider, result)))
}

func TestVerifier_UnknownKIDTriggersRateLimitedRefetch(t *testing.T) {
	idp := jwkstest.NewServer(t)
	o := testOptions()
	o.unknownKIDPeriod = time.Hour // one refetch for the whole test
	v := newEnv().start(t, configWith(urlProvider("corp", idp)), o)
	before := idp.Requests()

	// A rotated key is usable at once, without waiting for refresh_interval.
	idp.Rotate()
	if _, err := v.Verify(context.Background(), idp.Sign(claims(idp))); err != nil {
		t.Fatalf("Verify with the rotated key: %v", err)
	}
	if got := idp.Requests() - before; got != 1 {
		t.Fatalf("rotation caused %d fetches, want 1", got)
	}

	// A flood of unknown kids causes no further fetch within the limiter
	// period, and no Verify waits for the limiter.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				tok, err := idp.Key("RS256").Sign(with(claims(idp)), map[string]any{"kid": fmt.Sprintf("flood-%d-%d", g, i)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKID) {
					errs <- fmt.Errorf("Verify = %v, want ErrUnknownKID", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := idp.Requests() - before; got != 1 {
		t.Errorf("400 unknown kids caused %d fetches in total, want 1", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the flood took %s; unknown kids must not wait for the limiter", d)
	}
}

func TestVerifier_UnknownKIDRefetchAllowedAgainAfterThePeriod(t *testing.T) {
	idp := jwkstest.NewServer(t)
	o := testOptions()
	o.unknownKIDPeriod = time.Second
	v := newEnv().start(t, configWith(urlProvider("corp", idp)), o)
	ctx := context.Background()
	// Keys and tokens are made before the clock matters: generating keys on
	// a loaded machine could otherwise outlast the limiter period.
	k1, k2 := jwkstest.MustKey(t, "RS256"), jwkstest.MustKey(t, "RS256")
	first := idp.Sign(claims(idp), jwkstest.WithKey(k1))
	second := idp.Sign(claims(idp), jwkstest.WithKey(k2))

	idp.SetKeys(k1)
	if _, err := v.Verify(ctx, first); err != nil {
		t.Fatalf("first rotation: %v", err)
	}
	idp.SetKeys(k2)
	fetches := idp.Requests()
	if _, err := v.Verify(ctx, second); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("second rotation within the period: Verify = %v, want ErrUnknownKID", err)
	}
	if idp.Requests() != fetches {
		t.Fatal("a refetch happened within the limiter period")
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := v.Verify(ctx, second); err != nil {
		t.Fatalf("second rotation after the period: %v", err)
	}
}

func TestVerifier_ConcurrentTokensWithANewKIDShareOneFetch(t *testing.T) {
	idp := jwkstest.NewServer(t)
	o := testOptions()
	o.unknownKIDPeriod = time.Hour
	v := newEnv().start(t, configWith(urlProvider("corp", idp)), o)
	before := idp.Requests()

	idp.Rotate()
	idp.SetDelay(100 * time.Millisecond)
	tok := idp.Sign(claims(idp))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Verify during rotation: %v", err)
	}
	if got := idp.Requests() - before; got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
}

func TestVerifier_UnknownKIDWaitIsBoundedByContext(t *testing.T) {
	idp := jwkstest.NewServer(t)
	p := urlProvider("corp", idp)
	p.FetchTimeout = 2 * time.Second
	v := startVerifier(t, configWith(p))

	idp.SetMode(jwkstest.Hang)
	tok := idp.Sign(claims(idp), jwkstest.WithKID("rotated"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, tok)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("Verify = %v, want ErrUnknownKID", err)
	}
	// 1s: loose for a busy machine, half the 2s fetch_timeout.
	if elapsed > time.Second {
		t.Errorf("Verify took %s with a 100ms deadline", elapsed)
	}

	// Without a deadline the wait is bounded by fetch_timeout.
	start = time.Now()
	_, err = v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("Verify = %v, want ErrUnknownKID", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Verify took %s without deadline, want at most about fetch_timeout (2s)", elapsed)
	}
}

func TestVerifier_KeepsLastGoodKeysWhenJWKSFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode jwkstest.Mode
	}{
		{"status 500", jwkstest.Fail500},
		{"garbage body", jwkstest.Garbage},
		{"empty key set", jwkstest.Empty},
		{"endpoint hangs", jwkstest.Hang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := jwkstest.NewServer(t)
			p := urlProvider("corp", idp)
			p.FetchTimeout = 200 * time.Millisecond
			cfg := configWith(p)
			cfg.Cache.Disabled = true // every Verify checks the signature
			o := testOptions()
			o.unknownKIDPeriod = time.Millisecond
			v := newEnv().start(t, cfg, o)
			tok := idp.Sign(claims(idp))
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("Verify before the outage: %v", err)
			}

			idp.SetMode(tc.mode)
			// An unknown kid forces a refetch, which fails.
			if _, err := v.Verify(context.Background(), idp.Sign(claims(idp), jwkstest.WithKID("x"))); !errors.Is(err, ErrUnknownKID) {
				t.Fatalf("Verify = %v, want ErrUnknownKID", err)
			}
			waitFor(t, "a failed refresh", 2*time.Second, func() bool { return refreshCount(v, "corp", resultFailure) > 0 })
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("Verify during the outage: %v", err)
			}
			if !v.Ready() {
				t.Error("Ready() = false during the outage")
			}
			if n := testutil.ToFloat64(v.metrics.keys.WithLabelValues("corp")); n != 3 {
				t.Errorf("extauthz_jwks_keys = %v during the outage, want 3", n)
			}
		})
	}
}

func TestVerifier_NotReadyUntilJWKSLoads(t *testing.T) {
	idp := jwkstest.NewServer(t)
	idp.SetMode(jwkstest.Fail500)
	start := time.Now()
	env := newEnv()
	v := env.start(t, configWith(urlProvider("corp", idp)), nil)
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %s with a failing JWKS endpoint", d)
	}
	if v.Ready() {
		t.Fatal("Ready() = true before any key was loaded")
	}
	tok := idp.Sign(claims(idp))
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Verify = %v, want ErrNoKeys", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Fatalf("ErrNoKeys result %v wraps ErrInvalid", err)
	}

	idp.SetMode(jwkstest.Serve)
	waitFor(t, "Ready", 3*time.Second, v.Ready)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify after the endpoint came up: %v", err)
	}
	logs := env.logs.String()
	for _, want := range []string{`"msg":"jwks refresh failed"`, `unexpected status 500`, `"msg":"jwks refresh recovered"`, `"msg":"jwks keys updated"`, `"provider":"corp"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestNew_DoesNotFailOrBlockWhenJWKSIsDown(t *testing.T) {
	closed := jwkstest.NewServer(t)
	closed.Close()
	hanging := jwkstest.NewServer(t)
	hanging.SetMode(jwkstest.Hang)

	for _, tc := range []struct {
		name string
		p    ProviderConfig
		max  time.Duration
	}{
		{"connection refused", urlProvider("corp", closed), time.Second},
		{"endpoint hangs: New waits at most fetch_timeout", urlProvider("corp", hanging), 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.FetchTimeout = 500 * time.Millisecond
			start := time.Now()
			v := startVerifier(t, configWith(tc.p))
			if d := time.Since(start); d > tc.max {
				t.Errorf("New took %s, want at most %s", d, tc.max)
			}
			if v.Ready() {
				t.Error("Ready() = true")
			}
		})
	}
}

func TestVerifier_KeyRotationByPeriodicRefresh(t *testing.T) {
	idp := jwkstest.NewServer(t)
	p := urlProvider("corp", idp)
	p.RefreshInterval = time.Second
	cfg := configWith(p)
	cfg.Cache.Disabled = true
	v := startVerifier(t, cfg)
	old := idp.Sign(claims(idp))
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}

	idp.Rotate()
	fresh := idp.Sign(claims(idp))
	waitFor(t, "the periodic refresh", 3*time.Second, func() bool { return refreshCount(v, "corp", resultSuccess) >= 2 })
	if _, err := v.Verify(context.Background(), old); !errors.Is(err, ErrUnknownKID) {
		t.Errorf("token of the removed key: Verify = %v, want ErrUnknownKID", err)
	}
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
}

func TestVerifier_CachedTokenRefusedAfterItsKeyIsRemoved(t *testing.T) {
	idp := jwkstest.NewServer(t)
	env := newEnv()
	o := testOptions()
	o.unknownKIDPeriod = time.Millisecond
	v := env.start(t, configWith(urlProvider("corp", idp)), o)
	ctx := context.Background()
	old := idp.Sign(claims(idp))
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	if hits := testutil.ToFloat64(v.metrics.cacheHits); hits != 1 {
		t.Fatalf("cache hits = %v, want 1", hits)
	}

	// A refresh that returns the same keys keeps the entry.
	if _, err := v.Verify(ctx, idp.Sign(claims(idp), jwkstest.WithKID("unknown"))); !errors.Is(err, ErrUnknownKID) {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if hits := testutil.ToFloat64(v.metrics.cacheHits); hits != 2 {
		t.Fatalf("cache hits = %v after an unchanged refresh, want 2", hits)
	}

	// Once a refresh shows the key gone, the cached token is refused.
	idp.Rotate()
	if _, err := v.Verify(ctx, idp.Sign(claims(idp))); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if _, err := v.Verify(ctx, old); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("cached token of the removed key: Verify = %v, want ErrUnknownKID", err)
	}
	if hits := testutil.ToFloat64(v.metrics.cacheHits); hits != 2 {
		t.Errorf("cache hits = %v, the removed key's token was served from the cache", hits)
	}
}

func TestVerifier_Discovery(t *testing.T) {
	discovery := func(s *jwkstest.Server) ProviderConfig {
		p := urlProvider("corp", s)
		p.JWKSURL = ""
		p.Discovery = true
		return p
	}

	t.Run("keys come from the discovered jwks_uri", func(t *testing.T) {
		idp := jwkstest.NewServer(t)
		v := startVerifier(t, configWith(discovery(idp)))
		if !v.Ready() {
			t.Fatal("not ready")
		}
		if _, err := v.Verify(context.Background(), idp.Sign(claims(idp))); err != nil {
			t.Fatal(err)
		}
		if idp.DiscoveryRequests() != 1 || idp.Requests() != 1 {
			t.Errorf("discovery requests = %d, JWKS requests = %d, want 1 and 1", idp.DiscoveryRequests(), idp.Requests())
		}
	})

	t.Run("discovery retried in the background until it works", func(t *testing.T) {
		idp := jwkstest.NewServer(t)
		idp.SetMode(jwkstest.Fail500)
		v := startVerifier(t, configWith(discovery(idp)))
		if v.Ready() {
			t.Fatal("ready while discovery fails")
		}
		idp.SetMode(jwkstest.Serve)
		waitFor(t, "Ready", 3*time.Second, v.Ready)
		if _, err := v.Verify(context.Background(), idp.Sign(claims(idp))); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a document naming another issuer is refused", func(t *testing.T) {
		idp := jwkstest.NewServer(t)
		idp.SetDiscoveryIssuer("https://evil.test")
		env := newEnv()
		v := env.start(t, configWith(discovery(idp)), nil)
		if v.Ready() {
			t.Fatal("ready with a mismatched discovery issuer")
		}
		if idp.Requests() != 0 {
			t.Errorf("JWKS fetched %d times from a mismatched discovery document", idp.Requests())
		}
		if !strings.Contains(env.logs.String(), "names issuer") {
			t.Errorf("logs do not explain the mismatch:\n%s", env.logs.String())
		}
		idp.SetDiscoveryIssuer("")
		waitFor(t, "Ready", 3*time.Second, v.Ready)
	})
}

func TestVerifier_JWKSFile(t *testing.T) {
	dir := t.TempDir()
	files, err := jwkstest.WriteKeyFiles(dir, "RS256")
	if err != nil {
		t.Fatal(err)
	}
	p := ProviderConfig{Name: "dev", Issuer: "https://dev.local", Audiences: []string{testAudience}, JWKSFile: files.JWKSPath}
	cfg := configWith(p)
	cfg.Cache.Disabled = true
	v := startVerifier(t, cfg)
	if !v.Ready() {
		t.Fatal("not ready with a jwks_file")
	}
	sign := func(k *jwkstest.Key) string {
		tok, err := k.Sign(jwt.MapClaims{"iss": "https://dev.local", "sub": "alice", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := sign(files.Key)
	if _, err := v.Verify(context.Background(), first); err != nil {
		t.Fatalf("Verify with the file's key: %v", err)
	}

	// Rewriting the file with a new key is picked up by the mtime poll.
	next := jwkstest.MustKey(t, "ES256")
	if err := jwkstest.WriteJWKSFile(files.JWKSPath, next); err != nil {
		t.Fatal(err)
	}
	second := sign(next)
	waitFor(t, "the new key from the rewritten file", 3*time.Second, func() bool {
		_, err := v.Verify(context.Background(), second)
		return err == nil
	})
	if _, err := v.Verify(context.Background(), first); !errors.Is(err, ErrUnknownKID) {
		t.Errorf("token of the removed key: Verify = %v, want ErrUnknownKID", err)
	}

	// A broken rewrite keeps the last good keys.
	failures := refreshCount(v, "dev", resultFailure)
	if err := os.WriteFile(files.JWKSPath, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", 3*time.Second, func() bool { return refreshCount(v, "dev", resultFailure) > failures })
	if _, err := v.Verify(context.Background(), second); err != nil {
		t.Errorf("Verify after a broken rewrite: %v", err)
	}
}

func TestNew_FailsOnBadJWKSFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "absent.json"), "no such file"},
		{"not JSON", write("bad.json", "{"), "decode jwk set"},
		{"only a symmetric key", write("oct.json", `{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"}]}`), "no usable signature key"},
		{"only an encryption key", write("enc.json", encryptionJWKS(t)), "no usable signature key"},
		{"empty key set", write("empty.json", `{"keys":[]}`), "no usable signature key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configWith(ProviderConfig{Name: "dev", Issuer: "https://dev.local", Audiences: []string{"a"}, JWKSFile: tc.path})
			_, err := New(context.Background(), cfg, newEnv().deps)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `provider "dev"`) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// encryptionJWKS is a JWK Set whose only key is an RSA key for encryption.
func encryptionJWKS(t *testing.T) string {
	jwk := jwkstest.MustKey(t, "RS256").JWK()
	jwk["use"] = "enc"
	delete(jwk, "alg")
	b, err := json.Marshal(map[string]any{"keys": []any{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

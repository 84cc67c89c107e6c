package jwks

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

type cacheCounts struct{ hits, misses float64 }

func counts(v *Verifier) cacheCounts {
	return cacheCounts{testutil.ToFloat64(v.metrics.cacheHits), testutil.ToFloat64(v.metrics.cacheMisses)}
}

func TestVerifier_CacheHitReturnsTheSameClaims(t *testing.T) {
	idp := jwkstest.NewServer(t)
	v := startVerifier(t, configWith(urlProvider("corp", idp)))
	tok := idp.Sign(claims(idp))
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("a cache hit returned different Claims")
	}
	if got, want := counts(v), (cacheCounts{hits: 1, misses: 1}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

func TestVerifier_CacheEntryLifetime(t *testing.T) {
	idp := jwkstest.NewServer(t)
	cfg := configWith(urlProvider("corp", idp))
	cfg.Cache.MaxTTL = time.Minute
	t0 := time.Now().Truncate(time.Second)
	var now atomic.Int64
	now.Store(t0.UnixNano())
	o := testOptions()
	o.now = func() time.Time { return time.Unix(0, now.Load()) }
	v := newEnv().start(t, cfg, o)
	at := func(d time.Duration) { now.Store(t0.Add(d).UnixNano()) }
	ctx := context.Background()

	longLived := idp.Sign(with(claims(idp), "iat", t0.Unix(), "exp", t0.Add(time.Hour).Unix()))
	shortLived := idp.Sign(with(claims(idp), "iat", t0.Unix(), "exp", t0.Add(20*time.Second).Unix()))

	steps := []struct {
		name    string
		at      time.Duration
		token   string
		wantErr error
		want    cacheCounts // cumulative
	}{
		{"first use is a miss", 0, longLived, nil, cacheCounts{0, 1}},
		{"within max_ttl is a hit", 59 * time.Second, longLived, nil, cacheCounts{1, 1}},
		{"after max_ttl is a miss, verified again", 61 * time.Second, longLived, nil, cacheCounts{1, 2}},
		{"short-lived token: first use", 0, shortLived, nil, cacheCounts{1, 3}},
		{"short-lived token before exp is a hit", 19 * time.Second, shortLived, nil, cacheCounts{2, 3}},
		{"after exp the entry is gone (leeway is applied by a full check)", 21 * time.Second, shortLived, nil, cacheCounts{2, 4}},
		{"expired beyond the leeway is refused", 51 * time.Second, shortLived, ErrExpired, cacheCounts{2, 5}},
	}
	for _, s := range steps {
		at(s.at)
		_, err := v.Verify(ctx, s.token)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: Verify = %v, want %v", s.name, err, s.wantErr)
		}
		if got := counts(v); got != s.want {
			t.Fatalf("%s: counts = %+v, want %+v", s.name, got, s.want)
		}
	}
}

func TestVerifier_CacheBoundedByEntries(t *testing.T) {
	idp := jwkstest.NewServer(t, jwkstest.WithAlgorithms("EdDSA"))
	cfg := configWith(urlProvider("corp", idp))
	cfg.Cache.MaxEntries = 10
	v := startVerifier(t, cfg)
	for i := 0; i < 25; i++ {
		if _, err := v.Verify(context.Background(), idp.Sign(with(claims(idp), "jti", fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n != 10 {
		t.Errorf("cache holds %d entries, want 10", n)
	}
}

func TestVerifier_CacheSkipsLargeIdentities(t *testing.T) {
	idp := jwkstest.NewServer(t, jwkstest.WithAlgorithms("EdDSA"))
	cfg := configWith(urlProvider("corp", idp))
	cfg.MaxTokenBytes = 64 << 10
	v := startVerifier(t, cfg)
	groups := make([]string, 60)
	for i := range groups {
		groups[i] = fmt.Sprintf("group-%02d-%s", i, strings.Repeat("x", 80))
	}
	tok := idp.Sign(with(claims(idp), "groups", groups))
	for i := 0; i < 2; i++ {
		c, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Groups) != 60 {
			t.Fatalf("got %d groups", len(c.Groups))
		}
	}
	if got := counts(v); got.hits != 0 {
		t.Errorf("a token with %d bytes of groups was cached", 60*90)
	}
	if n := v.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries, want 0", n)
	}
}

func TestVerifier_CacheDisabled(t *testing.T) {
	idp := jwkstest.NewServer(t)
	cfg := configWith(urlProvider("corp", idp))
	cfg.Cache.Disabled = true
	cfg.Cache.MaxEntries = 0
	v := startVerifier(t, cfg)
	tok := idp.Sign(claims(idp))
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := counts(v); got != (cacheCounts{}) {
		t.Errorf("counts = %+v with the cache disabled", got)
	}
}

// TestVerifier_CacheFloodOfInvalidTokens sends 200k distinct invalid tokens
// and checks that the cache neither grows nor loses a valid entry, and that
// the heap stays bounded.
func TestVerifier_CacheFloodOfInvalidTokens(t *testing.T) {
	idp := jwkstest.NewServer(t, jwkstest.WithAlgorithms("RS256", "EdDSA"))
	o := testOptions()
	o.unknownKIDPeriod = time.Hour
	cfg := configWith(urlProvider("corp", idp))
	v := newEnv().start(t, cfg, o)
	ctx := context.Background()

	valid := idp.Sign(claims(idp))
	if _, err := v.Verify(ctx, valid); err != nil {
		t.Fatal(err)
	}
	seg := segments(idp.Sign(claims(idp), jwkstest.WithAlg("EdDSA")))
	rs := segments(valid)
	enc := func(s string) string { return b64.EncodeToString([]byte(s)) }

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	kinds := map[string]int{}
	for i := 0; i < n; i++ {
		var tok string
		var want error
		switch {
		case i%1000 == 1: // bad RS256 signature: payload changed
			tok, want = rs[0]+"."+enc(fmt.Sprintf(`{"iss":%q,"sub":"y%d","aud":%q,"exp":4102444800}`, idp.URL, i, testAudience))+"."+rs[2], ErrSignature
		case i%100 == 1: // bad EdDSA signature: payload changed
			tok, want = seg[0]+"."+enc(fmt.Sprintf(`{"iss":%q,"sub":"x%d","aud":%q,"exp":4102444800}`, idp.URL, i, testAudience))+"."+seg[2], ErrSignature
		case i%4 == 0: // garbage
			tok, want = fmt.Sprintf("garbage.%d.x", i), ErrMalformed
		case i%4 == 1: // unknown issuer
			tok, want = rs[0]+"."+enc(fmt.Sprintf(`{"iss":"https://evil.test/%d"}`, i))+"."+rs[2], ErrUnknownIssuer
		case i%4 == 2: // unknown kid
			tok, want = enc(fmt.Sprintf(`{"alg":"RS256","kid":"k%d"}`, i))+"."+rs[1]+"."+rs[2], ErrUnknownKID
		default: // alg none
			tok, want = enc(fmt.Sprintf(`{"alg":"none","n":%d}`, i))+"."+rs[1]+".", ErrAlgorithm
		}
		if _, err := v.Verify(ctx, tok); !errors.Is(err, want) {
			t.Fatalf("token %d: Verify = %v, want %v", i, err, want)
		}
		kinds[fmt.Sprint(want)]++
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if n := v.cache.len(); n != 1 {
		t.Errorf("cache holds %d entries after the flood, want 1", n)
	}
	hits := counts(v).hits
	if _, err := v.Verify(ctx, valid); err != nil {
		t.Fatal(err)
	}
	if counts(v).hits != hits+1 {
		t.Error("the valid token was not served from the cache after the flood")
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if growth > 4<<20 {
		t.Errorf("heap grew by %d bytes over the flood, want < 4 MiB", growth)
	}
	if got := idp.Requests(); got > 2 {
		t.Errorf("the flood caused %d JWKS fetches in total, want at most 2", got)
	}
	t.Logf("heap growth %d bytes over %d invalid tokens (%v)", growth, n, kinds)
}

package envoyauthz_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
)

// TestEngine_HeapBoundedUnderCredentialFlood sends 200,000 distinct invalid
// tokens and 200,000 distinct well-formed unknown API keys (each a real
// Redis lookup) through the Engine. Nothing of a refused token is kept, and
// the API-key negative cache holds at most api_keys.cache_size entries, so
// the heap in use after the flood (after GC) is about what it was before.
func TestEngine_HeapBoundedUnderCredentialFlood(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	url := apikeystest.StartRedis(t)
	keys := apikeys.Default()
	// The test is about memory and outcomes, not latency: a generous Redis
	// timeout keeps a loaded machine from turning a lookup into a 503.
	keys.Redis = &apikeys.RedisConfig{Addrs: []string{url}, Timeout: 10 * time.Second}
	keys.CacheSize = 1000
	keys.NegativeCacheTTL = time.Hour // entries leave by the size bound only
	d := newDrill(t, keys)
	e := d.server.Engine()
	ctx := context.Background()

	valid := sign(t, d.idp, jwt.MapClaims{"groups": []string{"eng"}})
	seg := strings.Split(valid, ".")
	enc := base64.RawURLEncoding.EncodeToString
	token := func(i int) string {
		switch i % 5 {
		case 0: // garbage of JWT shape
			return fmt.Sprintf("garbage%d.x.y", i)
		case 1: // unknown issuer
			return seg[0] + "." + enc(fmt.Appendf(nil, `{"iss":"https://evil.test/%d","exp":4102444800}`, i)) + "." + seg[2]
		case 2: // unknown kid
			return enc(fmt.Appendf(nil, `{"alg":"RS256","kid":"k%d"}`, i)) + "." + seg[1] + "." + seg[2]
		case 3: // alg none
			return enc(fmt.Appendf(nil, `{"alg":"none","n":%d}`, i)) + "." + seg[1] + "."
		default: // tampered payload: a signature check that fails
			return seg[0] + "." + enc(fmt.Appendf(nil, `{"iss":%q,"sub":"x%d","aud":"llm-gateway","exp":4102444800}`, d.idp.Issuer(), i)) + "." + seg[2]
		}
	}
	check := func(h map[string]string, want authz.Code) error {
		r := &authz.Request{Method: "GET", Host: "llm.example.com", Path: "/v1/models", Headers: h}
		if got := e.Decide(ctx, r); got.Code != want {
			return fmt.Errorf("Decide = %v (%s), want %v", got.Code, got.Reason, want)
		}
		return nil
	}
	// flood runs count checks of each kind from base on, over 4 goroutines.
	flood := func(base, count int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(base), uint64(w)))
				for i := base + w; i < base+count; i += 4 {
					if err := check(map[string]string{"authorization": "Bearer " + token(i)}, authz.InvalidToken); err != nil {
						errs <- fmt.Errorf("token %d: %w", i, err)
						return
					}
					if err := check(map[string]string{"x-api-key": wellFormedKey("ek", r)}, authz.InvalidAPIKey); err != nil {
						errs <- fmt.Errorf("key %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	heapInuse := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}

	flood(0, 5000) // warm up pools and fill the negative cache to its bound
	if err := check(map[string]string{"authorization": "Bearer " + valid}, authz.Allowed); err != nil {
		t.Fatal(err)
	}
	before := heapInuse()
	start := time.Now()
	flood(1_000_000, n)
	took := time.Since(start)
	after := heapInuse()

	growth := int64(after) - int64(before)
	t.Logf("%d tokens and %d keys in %v; heap in use %d -> %d KiB (%+d KiB)", n, n, took.Round(time.Millisecond), before>>10, after>>10, growth>>10)
	// The bounded caches are full before the flood; 4 MiB is slack for
	// runtime and pool noise. One retained entry per key would be about
	// 200k * 100 bytes = 20 MB.
	if growth > 4<<20 {
		t.Errorf("heap in use grew by %d KiB over the flood, want < 4 MiB", growth>>10)
	}
	if err := check(map[string]string{"authorization": "Bearer " + valid}, authz.Allowed); err != nil {
		t.Errorf("valid token after the flood: %v", err)
	}
	if c := d.counter(t, "extauthz_apikey_lookups_total", map[string]string{"source": "redis", "result": "not_found"}); c < float64(n) {
		t.Errorf("Redis answered %v not_found lookups, want at least %d: the keys did not reach Redis", c, n)
	}
}

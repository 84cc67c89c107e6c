package jwks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/extauthz/extauthz/internal/logtest"
	"github.com/extauthz/extauthz/jwks/jwkstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testAudience = "llm-gateway"

// testOptions shortens the background timings so tests run fast.
func testOptions() *options {
	o := defaultOptions()
	o.retryMin = 20 * time.Millisecond
	o.retryMax = 200 * time.Millisecond
	o.filePoll = 20 * time.Millisecond
	return o
}

type testEnv struct {
	reg  *prometheus.Registry
	deps Deps
	logs *logtest.Buffer
}

func newEnv() *testEnv {
	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	return &testEnv{
		reg:  reg,
		logs: logs,
		deps: Deps{
			Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Metrics: NewMetrics(reg),
		},
	}
}

// start builds a Verifier for cfg with o (testOptions when nil) and closes
// it when the test ends.
func (e *testEnv) start(t testing.TB, cfg Config, o *options) *Verifier {
	t.Helper()
	if o == nil {
		o = testOptions()
	}
	v, err := newVerifier(context.Background(), cfg, e.deps, o)
	if err != nil {
		t.Fatalf("newVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func startVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	return newEnv().start(t, cfg, nil)
}

// urlProvider is a provider for the keys of s.
func urlProvider(name string, s *jwkstest.Server) ProviderConfig {
	return ProviderConfig{
		Name:      name,
		Issuer:    s.Issuer(),
		Audiences: []string{testAudience},
		JWKSURL:   s.JWKSURL(),
	}
}

func configWith(ps ...ProviderConfig) Config {
	c := Default()
	c.Providers = ps
	return c
}

// claims returns valid claims of s for subject alice.
func claims(s *jwkstest.Server) jwt.MapClaims { return s.Claims("alice", testAudience) }

// with returns a copy of c with the given changes; a nil value deletes.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// signRaw signs an arbitrary header and payload with k, for tokens that
// jwt.MapClaims cannot express.
func signRaw(t testing.TB, k *jwkstest.Key, header map[string]any, payload []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	input := enc(hb) + "." + enc(payload)
	sig, err := jwt.GetSigningMethod(header["alg"].(string)).Sign(input, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

// unsigned builds header.payload.sig from raw parts without signing.
func unsigned(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc(sig)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func segments(tok string) []string { return strings.Split(tok, ".") }

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

package forwardauth_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/authztest"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/rolemap"
)

// routeLogCounter counts decision log lines by route.
type routeLogCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *routeLogCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *routeLogCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *routeLogCounter) WithGroup(string) slog.Handler            { return c }
func (c *routeLogCounter) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "route" {
			c.mu.Lock()
			c.counts[a.Value.String()]++
			c.mu.Unlock()
			return false
		}
		return true
	})
	return nil
}

func (c *routeLogCounter) count(route string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[route]
}

// publicEngine answers every path under prefix with an allow on the public
// route name.
func publicEngine(t *testing.T, name, prefix string) *authz.Engine {
	t.Helper()
	mapper, err := rolemap.New(authztest.Mapping, authztest.Roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{
		Routes:       []authz.Route{{Name: name, Match: authz.Match{PathPrefix: prefix}, Public: true}},
		DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.DefaultHeaders(),
		APIKeyPrefix: "ek",
	}, authz.Deps{Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestServer_CheckSeesOneGeneration: a reload publishes the Engine and the
// server settings (check_timeout, http_path_prefix, log.allow_sample_rate)
// together, and one check reads them once, so it never sees the settings of
// one configuration with the Engine of another. Two generations, swapped
// back and forth while checks run, are each consistent only with
// themselves; a check that mixes them gets an answer neither gives.
func TestServer_CheckSeesOneGeneration(t *testing.T) {
	const runFor = time.Second
	// Generation A strips /pa from HTTP paths and allows /x (route a);
	// generation B strips /pb and allows /pa/x (route b). GET /pa/x is
	// allowed by either; settings of one with the Engine of the other deny
	// it (no route).
	engA := publicEngine(t, "a", "/x")
	engB := publicEngine(t, "b", "/pa/x")
	// A logs every allow, B none: an allow on route a that is not logged,
	// or a log line for route b, is a mix.
	optsA := authz.ServerOptions{HTTPPathPrefix: "/pa", HTTPForwardedHeaders: authz.ForwardedNone, AllowSampleRate: 1}
	optsB := authz.ServerOptions{HTTPPathPrefix: "/pb", HTTPForwardedHeaders: authz.ForwardedNone, AllowSampleRate: 0}

	tests := []struct {
		name string
		// check runs one check and reports whether it saw one generation.
		check func(s *authz.Server, logs *routeLogCounter, allowedA *atomic.Int64) bool
		// final reports a mix found after the run (from the log counts).
		final func(logs *routeLogCounter, allowedA int64) string
	}{
		{
			name: "http path prefix and routes",
			check: func(s *authz.Server, _ *routeLogCounter, _ *atomic.Int64) bool {
				w := httptest.NewRecorder()
				forwardauth.New(s).ServeHTTP(w, httptest.NewRequest("GET", "/pa/x", nil))
				return w.Code == http.StatusOK
			},
		},
		{
			name: "allow log sample rate and routes",
			check: func(s *authz.Server, _ *routeLogCounter, allowedA *atomic.Int64) bool {
				// /x is allowed by A only, /pa/x by B only.
				path := "/x"
				if rand.IntN(2) == 1 {
					path = "/pa/x"
				}
				d := s.DecideOn(context.Background(), s.Current(), authz.TransportGRPC, &authz.Request{Method: "GET", Host: "llm.test", Path: path}, "")
				if d.Route == "a" {
					allowedA.Add(1)
				}
				return true
			},
			final: func(logs *routeLogCounter, allowedA int64) string {
				if n := logs.count("b"); n > 0 {
					return "decisions on route b were logged with generation A's sample rate"
				}
				if n := logs.count("a"); int64(n) != allowedA {
					return "allowed decisions on route a were not logged: generation B's sample rate"
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &routeLogCounter{counts: map[string]int{}}
			s := authz.NewServer(engA, optsA, slog.New(logs), authz.NewMetrics(prometheus.NewRegistry()))
			var (
				stop     atomic.Bool
				mixed    atomic.Int64
				checks   atomic.Int64
				allowedA atomic.Int64
				wg       sync.WaitGroup
			)
			wg.Add(1)
			go func() { // the reloads
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					if i%2 == 0 {
						s.Swap(engB, optsB)
					} else {
						s.Swap(engA, optsA)
					}
					runtime.Gosched()
				}
			}()
			for range max(2, runtime.GOMAXPROCS(0)) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						if !tt.check(s, logs, &allowedA) {
							mixed.Add(1)
						}
						checks.Add(1)
					}
				}()
			}
			time.Sleep(runFor)
			stop.Store(true)
			wg.Wait()
			if n := mixed.Load(); n > 0 {
				t.Errorf("%d of %d checks saw the settings of one generation with the engine of another", n, checks.Load())
			}
			if tt.final != nil {
				if msg := tt.final(logs, allowedA.Load()); msg != "" {
					t.Errorf("%s (%d checks)", msg, checks.Load())
				}
			}
		})
	}
}

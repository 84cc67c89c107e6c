package jwkstest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Paths served by Server.
const (
	JWKSPath      = "/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Mode selects how Server answers the JWKS and discovery endpoints.
type Mode int

// The modes of Server.
const (
	// Serve answers with the current key set (the default).
	Serve Mode = iota
	// Fail500 answers 500 Internal Server Error.
	Fail500
	// Garbage answers 200 with a body that is not JSON.
	Garbage
	// Empty answers 200 with a JWK Set without keys.
	Empty
	// Hang never answers: the handler waits until the client gives up or
	// the server is closed.
	Hang
)

// DefaultAlgorithms are the algorithms of the keys NewServer creates.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// Server serves a JWK Set at JWKSPath and an OpenID discovery document at
// DiscoveryPath over httptest, with fresh keys. Its issuer is its URL. It is
// closed when the test ends. Its methods are safe for concurrent use; its
// handlers never call t.Fatal.
type Server struct {
	// URL is the base URL (http://127.0.0.1:port), also the issuer.
	URL string

	t    testing.TB
	srv  *httptest.Server
	stop chan struct{}
	once sync.Once

	mu              sync.Mutex
	algs            []string
	keys            []*Key
	mode            Mode
	delay           time.Duration
	requests        int
	discovery       int
	discoveryIssuer string
}

// Option configures NewServer.
type Option func(*Server)

// WithAlgorithms makes NewServer (and Rotate) create one key per alg instead
// of DefaultAlgorithms.
func WithAlgorithms(algs ...string) Option {
	return func(s *Server) { s.algs = slices.Clone(algs) }
}

// NewServer starts a Server with one fresh key per algorithm (RSA 2048,
// P-256 and Ed25519 by default), each with a unique kid and its alg.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, algs: slices.Clone(DefaultAlgorithms), stop: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.keys = s.newKeys()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

func (s *Server) newKeys() []*Key {
	s.t.Helper()
	keys := make([]*Key, 0, len(s.algs))
	for _, alg := range s.algs {
		keys = append(keys, MustKey(s.t, alg))
	}
	return keys
}

// Close shuts the server down (later fetches fail to connect). It is
// idempotent and runs automatically when the test ends.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.stop)
		s.srv.Close()
	})
}

// Issuer returns the issuer of the server's tokens: its URL.
func (s *Server) Issuer() string { return s.URL }

// JWKSURL returns the URL of the JWK Set.
func (s *Server) JWKSURL() string { return s.URL + JWKSPath }

// Keys returns the keys currently served.
func (s *Server) Keys() []*Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Key(nil), s.keys...)
}

// Key returns the current key published for alg, or nil.
func (s *Server) Key(alg string) *Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.Alg == alg {
			return k
		}
	}
	return nil
}

// Rotate replaces every key with a fresh one of the same algorithm; the old
// keys are no longer served.
func (s *Server) Rotate() {
	s.t.Helper()
	keys := s.newKeys()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// SetKeys makes the server publish exactly keys (for staged rotations and
// kid collisions).
func (s *Server) SetKeys(keys ...*Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append([]*Key(nil), keys...)
}

// SetMode changes how the server answers.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// SetDelay delays every answer by d (0 for none).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetDiscoveryIssuer makes the discovery document name issuer instead of
// the server's URL (to test issuer mismatch).
func (s *Server) SetDiscoveryIssuer(issuer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discoveryIssuer = issuer
}

// Requests returns how many JWK Set requests the server received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// DiscoveryRequests returns how many discovery requests the server received.
func (s *Server) DiscoveryRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.discovery
}

// Claims returns valid claims for this server's issuer: iss, sub, aud, iat
// now and exp in one hour.
func (s *Server) Claims(sub, aud string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": s.URL,
		"sub": sub,
		"aud": aud,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// SignOption changes how Sign builds a token.
type SignOption func(*signConfig)

type signConfig struct {
	alg    string
	key    *Key
	header map[string]any
}

// WithAlg signs with the current key for alg (default RS256, or the first
// key's alg when the server has no RS256 key).
func WithAlg(alg string) SignOption { return func(c *signConfig) { c.alg = alg } }

// WithKey signs with k (for example a key the server does not publish),
// with alg k.Alg unless WithAlg is given, and kid k.KID.
func WithKey(k *Key) SignOption { return func(c *signConfig) { c.key = k } }

// WithKID sets the kid header.
func WithKID(kid string) SignOption { return WithHeader("kid", kid) }

// WithoutKID omits the kid header.
func WithoutKID() SignOption { return WithHeader("kid", nil) }

// WithHeader sets a header parameter (nil deletes it).
func WithHeader(name string, value any) SignOption {
	return func(c *signConfig) {
		if c.header == nil {
			c.header = map[string]any{}
		}
		c.header[name] = value
	}
}

// Sign returns a token with claims signed by one of the server's current
// keys (see the options). It fails the test on error, so call it from the
// test goroutine.
func (s *Server) Sign(claims jwt.MapClaims, opts ...SignOption) string {
	s.t.Helper()
	var c signConfig
	for _, o := range opts {
		o(&c)
	}
	k := c.key
	alg := c.alg
	if k == nil {
		if alg == "" {
			alg = "RS256"
			if s.Key(alg) == nil {
				alg = s.Keys()[0].Alg
			}
		}
		if k = s.Key(alg); k == nil {
			s.t.Fatalf("jwkstest: the server has no %s key", alg)
		}
	}
	if alg == "" {
		alg = k.Alg
	}
	tok, err := k.sign(alg, claims, c.header)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	return tok
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	switch r.URL.Path {
	case JWKSPath:
		s.requests++
	case DiscoveryPath:
		s.discovery++
	default:
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	mode, delay, keys, issuer := s.mode, s.delay, s.keys, s.discoveryIssuer
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		}
	}
	switch mode {
	case Fail500:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("<html>this is not a JWK Set</html>"))
		return
	case Empty:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == DiscoveryPath {
		if issuer == "" {
			issuer = s.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                issuer,
			"jwks_uri":                              s.JWKSURL(),
			"id_token_signing_alg_values_supported": s.algs,
		})
		return
	}
	_, _ = w.Write(JWKS(keys...))
}

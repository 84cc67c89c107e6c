package introspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/secretfile"
)

// The errors of Introspect. Each is wrapped with detail that never holds the
// token or the client secret.
var (
	// ErrInactive: the endpoint says the token is not active, or it is
	// expired, not yet valid, meant for another audience, has no subject, or
	// is longer than max_token_bytes. The caller answers 401.
	ErrInactive = errors.New("introspect: token is not active")
	// ErrUnavailable: no trustworthy answer (endpoint down, slow, refusing
	// the client credentials, a non-200 status or a malformed body). The
	// caller answers 503; it is never an allow.
	ErrUnavailable = errors.New("introspect: endpoint unavailable")
	// ErrRateLimited: the miss would exceed max_requests_per_second, so the
	// endpoint was not asked. Always wrapped together with ErrUnavailable
	// (503), never an allow.
	ErrRateLimited = errors.New("introspect: request rate to the endpoint exceeded")
	// ErrBusy: max_concurrent requests were in flight for longer than the
	// caller could wait, so the endpoint was not asked. Always wrapped
	// together with ErrUnavailable (503).
	ErrBusy = errors.New("introspect: too many requests to the endpoint in flight")
)

// Result is what an active token's introspection yields. The cache hands the
// same *Result to every caller of the same token until it expires: treat it
// as read-only.
type Result struct {
	Subject   string
	Groups    []string
	ExpiresAt time.Time // zero when the response has no exp
	ClientID  string
	Scope     string
}

// Deps are the Client's collaborators. Metrics may be nil (nothing
// counted); HTTPClient may be nil (one is built from the Config, with
// ca_file).
type Deps struct {
	Logger     *slog.Logger
	Metrics    *Metrics
	HTTPClient *http.Client
}

// Client introspects tokens and caches the answers. It is safe for
// concurrent use.
type Client struct {
	cfg     Config
	http    *http.Client
	logger  *slog.Logger
	metrics *Metrics
	cache   *lru.Cache[[32]byte, entry]
	// negative holds the inactive answers, apart from cache, so that
	// garbage cannot evict active answers.
	negative *lru.Cache[[32]byte, entry]
	// limiter (max_requests_per_second) and slots (max_concurrent) bound
	// the requests to the endpoint, whoever sends the tokens.
	limiter *rate.Limiter
	slots   chan struct{}
	now     func() time.Time

	secret     atomic.Pointer[string]
	lastReread atomic.Int64 // unix nanoseconds of the last secret re-read
	lastWarn   atomic.Int64 // unix nanoseconds of the last credentials warning

	mu       sync.Mutex
	inflight map[[32]byte]*call
}

type entry struct {
	res   *Result
	err   error // nil or an ErrInactive
	until time.Time
}

// call is one request to the endpoint that concurrent callers for the same
// token share.
type call struct {
	done chan struct{}
	res  *Result
	err  error
}

// New builds a Client. The configuration must have passed Validate
// (config.Load does that); New does not check it again. It applies the
// defaults, reads the client secret and ca_file, and fails when either
// cannot be read. It starts no goroutine.
func New(_ context.Context, cfg Config, deps Deps) (*Client, error) {
	cfg.ApplyDefaults()
	if deps.Logger == nil {
		return nil, errors.New("introspect: a logger is required")
	}
	c := &Client{cfg: cfg, logger: deps.Logger, metrics: deps.Metrics, http: deps.HTTPClient, now: time.Now, inflight: map[[32]byte]*call{},
		limiter: rate.NewLimiter(rate.Limit(cfg.MaxRequestsPerSecond), cfg.MaxRequestsBurst),
		slots:   make(chan struct{}, cfg.MaxConcurrent)}
	if c.metrics == nil {
		c.metrics = NewMetrics(prometheus.NewRegistry())
	}
	secret, err := readSecret(cfg.ClientSecretFile)
	if err != nil {
		return nil, err
	}
	c.secret.Store(&secret)
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		tr.MaxIdleConnsPerHost = 64
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("introspect: ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("introspect: ca_file: no PEM certificate in the file")
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		c.http = &http.Client{
			Transport: tr,
			// A redirect would carry the client credentials elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.cache, err = lru.New[[32]byte, entry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("introspect: cache: %w", err)
	}
	c.negative, err = lru.New[[32]byte, entry](cfg.NegativeCacheSize)
	if err != nil {
		return nil, fmt.Errorf("introspect: negative cache: %w", err)
	}
	return c, nil
}

func readSecret(path string) (string, error) {
	b, err := secretfile.Read("client_secret_file", path)
	if err != nil {
		return "", fmt.Errorf("introspect: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("introspect: client_secret_file %s: the file is empty", path)
	}
	return s, nil
}

// Close releases idle connections to the endpoint.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Introspect returns the identity of an active token, from the cache or the
// endpoint. Errors wrap ErrInactive or ErrUnavailable (with ErrRateLimited,
// ErrBusy or the context's error when that is why).
//
// Whoever sends the tokens, the endpoint sees at most one request per token
// at a time (concurrent misses share it), none for a token answered inactive
// within negative_cache_ttl, at most max_concurrent at once and at most
// max_requests_per_second (with max_requests_burst). A miss beyond those
// bounds is refused with ErrUnavailable, never sent and never an allow.
func (c *Client) Introspect(ctx context.Context, token string) (*Result, error) {
	if token == "" || len(token) > c.cfg.MaxTokenBytes {
		return nil, fmt.Errorf("%w: empty or longer than max_token_bytes", ErrInactive)
	}
	key := sha256.Sum256([]byte(token))
	now := c.now()
	for _, cache := range [...]*lru.Cache[[32]byte, entry]{c.cache, c.negative} {
		if e, ok := cache.Get(key); ok {
			if now.Before(e.until) {
				c.metrics.hit.Inc()
				return e.res, e.err
			}
			cache.Remove(key)
		}
	}
	c.metrics.miss.Inc()

	c.mu.Lock()
	cl, shared := c.inflight[key]
	if !shared {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
	}
	c.mu.Unlock()
	if !shared {
		if err := c.acquire(ctx); err != nil {
			// The callers sharing this call are refused with it.
			cl.err = err
			c.finish(key, cl)
			return nil, err
		}
		// The request outlives a caller that gives up, so that the callers
		// sharing it still get the answer; Timeout bounds it, and the slot
		// it holds until then bounds how many such requests pile up.
		go func() {
			defer c.release()
			cl.res, cl.err = c.fetch(context.WithoutCancel(ctx), token, key)
			c.finish(key, cl)
		}()
	}
	select {
	case <-cl.done:
		return cl.res, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// finish hands the outcome of cl to the callers sharing it.
func (c *Client) finish(key [32]byte, cl *call) {
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
	close(cl.done)
}

// acquire takes a request from the rate limit and then a concurrency slot,
// waiting for the slot at most Timeout (or until ctx ends). It refuses at
// once when the rate is exceeded: a flood is answered without queueing.
func (c *Client) acquire(ctx context.Context) error {
	if !c.limiter.Allow() {
		c.metrics.rateLimited.Inc()
		return fmt.Errorf("%w: %w (max_requests_per_second)", ErrUnavailable, ErrRateLimited)
	}
	select {
	case c.slots <- struct{}{}:
		c.metrics.inFlight.Inc()
		return nil
	default:
	}
	wait := time.NewTimer(c.cfg.Timeout)
	defer wait.Stop()
	select {
	case c.slots <- struct{}{}:
		c.metrics.inFlight.Inc()
		return nil
	case <-ctx.Done():
		c.metrics.busy.Inc()
		return fmt.Errorf("%w: %w (max_concurrent): %w", ErrUnavailable, ErrBusy, ctx.Err())
	case <-wait.C:
		c.metrics.busy.Inc()
		return fmt.Errorf("%w: %w (max_concurrent)", ErrUnavailable, ErrBusy)
	}
}

// release frees the slot acquire took.
func (c *Client) release() {
	c.metrics.inFlight.Dec()
	<-c.slots
}

// fetch asks the endpoint and caches a definite answer.
func (c *Client) fetch(ctx context.Context, token string, key [32]byte) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res, err := c.request(ctx, token)
	c.metrics.duration.Observe(time.Since(start).Seconds())
	now := c.now()
	switch {
	case err == nil:
		c.metrics.active.Inc()
		until := now.Add(c.cfg.CacheTTL)
		if !res.ExpiresAt.IsZero() && res.ExpiresAt.Before(until) {
			until = res.ExpiresAt
		}
		c.cache.Add(key, entry{res: res, until: until})
	case errors.Is(err, ErrInactive):
		c.metrics.inactive.Inc()
		c.negative.Add(key, entry{err: err, until: now.Add(c.cfg.NegativeCacheTTL)})
	default:
		c.metrics.failed.Inc()
	}
	return res, err
}

func (c *Client) request(ctx context.Context, token string) (*Result, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: new request: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: form-encode the credentials before Basic.
	req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(*c.secret.Load()))
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL is the endpoint's; the token travels only in the body.
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read response: %w", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		c.credentialsRefused(resp.StatusCode)
		return nil, fmt.Errorf("%w: the endpoint refused the client credentials (status %d)", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: status %d", ErrUnavailable, resp.StatusCode)
	case len(body) > MaxResponseBytes:
		return nil, fmt.Errorf("%w: response larger than %d bytes", ErrUnavailable, MaxResponseBytes)
	}
	return c.parse(body)
}

// credentialsRefused warns (at most every 10s) that the endpoint refused
// the client credentials, and re-reads the secret file (at most every 5s)
// in case it was rotated.
func (c *Client) credentialsRefused(status int) {
	now := time.Now().UnixNano()
	if last := c.lastWarn.Load(); now-last >= int64(10*time.Second) && c.lastWarn.CompareAndSwap(last, now) {
		c.logger.LogAttrs(context.Background(), slog.LevelWarn, "introspection endpoint refused the client credentials: check client_id and client_secret_file",
			slog.Int("status", status), slog.String("client_id", c.cfg.ClientID))
	}
	if last := c.lastReread.Load(); now-last >= int64(5*time.Second) && c.lastReread.CompareAndSwap(last, now) {
		if s, err := readSecret(c.cfg.ClientSecretFile); err == nil {
			c.secret.Store(&s)
		}
	}
}

// parse reads a response strictly: one JSON object without duplicate
// members or trailing data, whose active member is the boolean true.
func (c *Client) parse(body []byte) (*Result, error) {
	members, err := parseObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed response: %w", ErrUnavailable, err)
	}
	switch string(members["active"]) {
	case "true":
	case "false":
		return nil, fmt.Errorf("%w: active is false", ErrInactive)
	default:
		return nil, fmt.Errorf("%w: malformed response: active is not a boolean", ErrUnavailable)
	}
	now := c.now()
	res := &Result{}
	if raw, ok := members["exp"]; ok {
		t, err := numericDate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed response: exp: %w", ErrUnavailable, err)
		}
		if !now.Before(t) {
			return nil, fmt.Errorf("%w: expired", ErrInactive)
		}
		res.ExpiresAt = t
	}
	if raw, ok := members["nbf"]; ok {
		t, err := numericDate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed response: nbf: %w", ErrUnavailable, err)
		}
		if now.Before(t) {
			return nil, fmt.Errorf("%w: not yet valid", ErrInactive)
		}
	}
	if len(c.cfg.Audiences) > 0 && !audienceMatches(members["aud"], c.cfg.Audiences) {
		return nil, fmt.Errorf("%w: audience not accepted", ErrInactive)
	}
	if err := accessTokenType(members); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInactive, err)
	}
	res.Subject = stringMember(members, c.cfg.SubjectClaim)
	if res.Subject == "" {
		return nil, fmt.Errorf("%w: no %s in the response", ErrInactive, c.cfg.SubjectClaim)
	}
	// The same rules as a JWT's subject: what is authorized is what the
	// upstream reads.
	if err := jwks.ValidSubject(res.Subject); err != nil {
		return nil, fmt.Errorf("%w: %s %w", ErrInactive, c.cfg.SubjectClaim, err)
	}
	res.ClientID = stringMember(members, "client_id")
	res.Scope = stringMember(members, "scope")
	res.Groups = groups(members[c.cfg.GroupsClaim], c.cfg.GroupsClaim == "scope")
	return res, nil
}

// The members that name a token's type, each with the values (compared
// case-insensitively) that an access token may carry. A member that is
// present with any other value, or not as a string, makes the token
// inactive: a refresh token, ID token or DPoP-bound token that the endpoint
// answers active must not pass as a bearer access token.
//   - token_type (RFC 7662, RFC 6749 section 7.1, RFC 8693): Keycloak, Hydra,
//     Okta answer "Bearer" for access tokens; RFC 9449 answers "DPoP" for a
//     sender-constrained token, which extauthz cannot check.
//   - token_use (Ory Hydra, AWS Cognito): "access_token" / "access";
//     Hydra answers "refresh_token", Cognito "id".
//   - typ (Keycloak): "Bearer" for access tokens; "Refresh", "Offline",
//     "ID" otherwise.
var accessTokenTypes = []struct {
	member string
	values []string
}{
	{"token_type", []string{"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}},
	{"token_use", []string{"access_token", "access"}},
	{"typ", []string{"bearer", "at+jwt", "application/at+jwt"}},
}

// accessTokenType refuses a response whose type members say it is not an
// access token (see accessTokenTypes); absent members are accepted.
func accessTokenType(members map[string]json.RawMessage) error {
	for _, t := range accessTokenTypes {
		raw, ok := members[t.member]
		if !ok {
			continue
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return fmt.Errorf("%s is not a string", t.member)
		}
		if !slices.ContainsFunc(t.values, func(a string) bool { return strings.EqualFold(a, v) }) {
			return fmt.Errorf("%s is not an access token type", t.member)
		}
	}
	return nil
}

// parseObject decodes a single JSON object into its members, refusing
// duplicate names and trailing data.
func parseObject(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("member name is not a string")
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	return members, nil
}

// numericDate reads an exp or nbf member as a JWT's (jwks.NumericDate).
func numericDate(raw json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, errors.New("not a number")
	}
	t, ok := jwks.NumericDate(f)
	if !ok {
		return time.Time{}, errors.New("out of range")
	}
	return t, nil
}

func stringMember(m map[string]json.RawMessage, name string) string {
	var s string
	if raw, ok := m[name]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// audienceMatches reports whether aud (a string or an array of strings)
// holds one of want.
func audienceMatches(raw json.RawMessage, want []string) bool {
	if raw == nil {
		return false
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return slices.Contains(want, one)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if slices.Contains(want, a) {
				return true
			}
		}
	}
	return false
}

// groups reads a groups member: an array of strings (other items are
// skipped) or one string, which with split is a space-separated list
// (scope).
func groups(raw json.RawMessage, split bool) []string {
	if raw == nil {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if split {
			return strings.Fields(one)
		}
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil && s != "" {
			out = append(out, s)
		}
	}
	return out
}

package jwks

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Deps are the dependencies of a Verifier.
type Deps struct {
	// Logger receives refresh failures and key changes. Required.
	Logger *slog.Logger
	// Metrics is the process-wide Metrics from NewMetrics. Required.
	Metrics *Metrics
	// HTTPClient, when set, is used for every JWKS and discovery request
	// instead of a client built from each provider's ca_file. Requests are
	// still bounded by fetch_timeout.
	HTTPClient *http.Client
}

// Verifier verifies JWTs against the keys of the configured providers and
// keeps those keys fresh in the background. It is safe for concurrent use.
type Verifier struct {
	log           *slog.Logger
	metrics       *Metrics
	leeway        time.Duration
	maxTokenBytes int
	byIssuer      map[string]*provider
	providers     []*provider
	algs          map[string]bool // union of the JWKS providers' allow-lists (never HS*)
	hasHMAC       bool            // some provider is an HMAC provider
	cache         *tokenCache     // nil when disabled
	opts          *options

	names      []string
	transports []*http.Transport
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// options are internal knobs; tests shorten the timings.
type options struct {
	now func() time.Time
	// unknownKIDPeriod is the limiter period of refreshes triggered by
	// unknown kids; 0 means min(10s, refresh_interval).
	unknownKIDPeriod time.Duration
	retryMin         time.Duration // first retry after a failed fetch
	retryMax         time.Duration // longest retry interval (capped by refresh_interval)
	filePoll         time.Duration // how often jwks_file is checked for changes
}

func defaultOptions() *options {
	return &options{
		now:      time.Now,
		retryMin: time.Second,
		retryMax: 30 * time.Second,
		filePoll: time.Second,
	}
}

// defaultUnknownKIDPeriod is the limiter period of refreshes triggered by
// tokens with an unknown kid.
const defaultUnknownKIDPeriod = 10 * time.Second

// New builds a Verifier for cfg (after applying provider defaults; see
// ProviderConfig.ApplyDefaults) and starts one refresh goroutine per
// provider. ctx bounds the construction only: the refresh goroutines belong
// to the Verifier and run until Close, whatever becomes of ctx, so a Verifier shared by several
// configuration generations keeps its keys fresh after the generation that
// built it is gone.
//
// New fetches every provider's keys once, in parallel, and waits for those
// first attempts at most fetch_timeout (twice that for discovery), so a new
// Verifier is normally Ready. An unreachable JWKS endpoint is not an error:
// the provider retries in the background (1s doubling up to 30s) and Verify
// returns ErrNoKeys for its tokens until keys arrive. A jwks_file that is
// missing or holds no usable key is an error, as is an unreadable ca_file or
// an HMAC secret file that cannot be read. cfg must have passed
// Config.Validate (config.Load does that): New does not check it again.
func New(ctx context.Context, cfg Config, deps Deps) (*Verifier, error) {
	return newVerifier(ctx, cfg, deps, defaultOptions())
}

func newVerifier(ctx context.Context, cfg Config, deps Deps, o *options) (*Verifier, error) {
	if deps.Logger == nil {
		return nil, errors.New("jwks: deps.Logger is required")
	}
	if deps.Metrics == nil {
		return nil, errors.New("jwks: deps.Metrics is required")
	}
	cfg.Providers = slices.Clone(cfg.Providers)
	for i := range cfg.Providers {
		cfg.Providers[i].ApplyDefaults()
	}

	v := &Verifier{
		log:           deps.Logger,
		metrics:       deps.Metrics,
		leeway:        cfg.Leeway,
		maxTokenBytes: cfg.MaxTokenBytes,
		byIssuer:      make(map[string]*provider, len(cfg.Providers)),
		algs:          map[string]bool{},
		opts:          o,
	}
	if !cfg.Cache.Disabled {
		c, err := newTokenCache(cfg.Cache)
		if err != nil {
			return nil, fmt.Errorf("jwks: cache: %w", err)
		}
		v.cache = c
	}
	for _, pc := range cfg.Providers {
		v.names = append(v.names, pc.Name)
	}
	v.metrics.acquire(v.names)

	for _, pc := range cfg.Providers {
		p, err := v.newProvider(ctx, pc, deps.HTTPClient)
		if err != nil {
			v.release()
			return nil, fmt.Errorf("jwks: provider %q: %w", pc.Name, err)
		}
		v.providers = append(v.providers, p)
		v.byIssuer[p.issuer] = p
		if p.hmac {
			v.hasHMAC = true
			continue
		}
		for a := range p.algs {
			v.algs[a] = true
		}
	}

	// The refresh goroutines' lifetime is the Verifier's own: only Close
	// stops them (ctx keeps its values, not its cancellation).
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	var first sync.WaitGroup
	wait := time.Duration(0)
	for i, p := range v.providers {
		pc := cfg.Providers[i]
		firstDone := func() {}
		if !p.isFile {
			first.Add(1)
			firstDone = first.Done
			w := pc.FetchTimeout
			if pc.Discovery {
				w *= 2
			}
			wait = max(wait, w)
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			p.run(runCtx, firstDone)
		}()
	}
	if wait > 0 {
		allDone := make(chan struct{})
		go func() { first.Wait(); close(allDone) }()
		t := time.NewTimer(wait + 100*time.Millisecond)
		select {
		case <-allDone:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return v, nil
}

func (v *Verifier) newProvider(ctx context.Context, pc ProviderConfig, client *http.Client) (*provider, error) {
	p := &provider{
		name:            pc.Name,
		issuer:          pc.Issuer,
		audiences:       slices.Clone(pc.Audiences),
		algs:            map[string]bool{},
		subject:         newClaimPath(pc.SubjectClaim),
		groups:          newClaimPath(pc.GroupsClaim),
		log:             v.log.With(slog.String("provider", pc.Name)),
		metrics:         v.metrics.forProvider(pc.Name),
		opts:            v.opts,
		refreshInterval: pc.RefreshInterval,
		hmac:            pc.HMACSecretFile != "",
		tokenTypes:      normalTokenTypes(pc.TokenTypes),
		kick:            make(chan struct{}, 1),
		done:            make(chan struct{}),
	}
	for _, a := range pc.Algorithms {
		p.algs[a] = true
	}
	for _, claim := range sortedKeys(pc.ClaimsToHeaders) {
		p.headers = append(p.headers, headerMapping{claim: newClaimPath(claim), header: pc.ClaimsToHeaders[claim]})
	}
	slices.SortFunc(p.headers, func(a, b headerMapping) int { return strings.Compare(a.header, b.header) })
	period := v.opts.unknownKIDPeriod
	if period == 0 {
		period = min(defaultUnknownKIDPeriod, pc.RefreshInterval)
	}
	p.limiter = rate.NewLimiter(rate.Every(period), 1)

	if p.hmac {
		src := &secretSource{path: pc.HMACSecretFile}
		p.src, p.isFile = src, true
		doc, _, err := src.fetch(ctx, true)
		if err == nil {
			err = p.install(doc)
		}
		if err != nil {
			return nil, fmt.Errorf("hmac_secret_file: %w", err)
		}
		p.metrics.success.Inc()
		p.lastOK = true
		return p, nil
	}
	if pc.JWKSFile != "" {
		src := &fileSource{path: pc.JWKSFile}
		p.src, p.isFile = src, true
		doc, _, err := src.fetch(ctx, true)
		if err == nil {
			err = p.install(doc)
		}
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		p.metrics.success.Inc()
		p.lastOK = true
		return p, nil
	}
	if client == nil {
		c, tr, err := newHTTPClient(pc.CAFile)
		if err != nil {
			return nil, err
		}
		client = c
		v.transports = append(v.transports, tr)
	}
	f := fetcher{client: client, timeout: pc.FetchTimeout}
	if pc.Discovery {
		p.src = &discoverySource{f: f, issuer: pc.Issuer}
	} else {
		p.src = &urlSource{f: f, url: pc.JWKSURL}
	}
	return p, nil
}

// Ready reports whether every provider has loaded at least one key and is
// still refreshing its keys (false after Close: keys that can no longer
// change must not look ready).
func (v *Verifier) Ready() bool {
	for _, p := range v.providers {
		if p.keys.Load() == nil || p.stopped() {
			return false
		}
	}
	return true
}

// Close stops the refresh goroutines and waits for them. It is idempotent.
// Verify keeps working with the keys loaded before.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
		v.release()
	})
}

func (v *Verifier) release() {
	for _, tr := range v.transports {
		tr.CloseIdleConnections()
	}
	v.metrics.release(v.names)
}

// Verify checks token (the compact JWS, without "Bearer ") and returns the
// verified identity. Rejections of the token wrap ErrInvalid (and one of the
// finer errors); ErrNoKeys means the token's provider has no keys yet. ctx
// bounds only the wait for a key refresh when the token's kid is unknown.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > v.maxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(token), v.maxTokenBytes)
	}
	now := v.opts.now()
	if v.cache == nil {
		c, _, err := v.verify(ctx, token, now)
		return c, err
	}
	h := sha256.Sum256(stringBytes(token))
	if c := v.cache.get(&h, now); c != nil {
		v.metrics.cacheHits.Inc()
		return c, nil
	}
	v.metrics.cacheMisses.Inc()
	c, k, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	v.cache.add(&h, c, k, now)
	return c, nil
}

// stringBytes returns the bytes of s without copying. The result must not
// be modified.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// verify runs every check on token and returns the Claims and the key that
// verified the signature.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Claims, *key, error) {
	j, err := parseJWS(token)
	if err != nil {
		return nil, nil, err
	}
	// The global algorithm check: only the JWKS providers' algorithms, plus
	// HMAC when an HMAC provider exists. Whether HMAC is acceptable for this
	// token is decided once its iss has selected a provider: only an HMAC
	// provider allows HS*, and it allows nothing else.
	if !v.algs[j.alg] && !(v.hasHMAC && isHMACAlg(j.alg)) {
		return nil, nil, algError(j.alg)
	}
	claims, err := decodeClaims(j.payload)
	if err != nil {
		return nil, nil, err
	}
	issv, _ := claims.get("iss")
	if issv == nil || issv.kind != jsonString {
		return nil, nil, fmt.Errorf("%w: iss is required and must be a string", ErrMissingClaim)
	}
	iss := issv.str
	p := v.byIssuer[iss]
	if p == nil {
		return nil, nil, fmt.Errorf("%w: %.100q", ErrUnknownIssuer, iss)
	}
	if len(p.tokenTypes) > 0 && !slices.Contains(p.tokenTypes, normalTokenType(j.typ)) {
		return nil, nil, fmt.Errorf("%w: typ %.40q is not one of the provider's token_types", ErrMalformed, j.typ)
	}
	k, err := p.checkSignature(ctx, j)
	if err != nil {
		return nil, nil, err
	}
	c, err := p.checkClaims(claims, now, v.leeway)
	if err != nil {
		return nil, nil, err
	}
	return c, k, nil
}

func isHMACAlg(alg string) bool {
	return alg == "HS256" || alg == "HS384" || alg == "HS512"
}

func algError(alg string) error {
	if alg == "none" || strings.HasPrefix(alg, "HS") {
		return fmt.Errorf("%w: %.20q is never accepted with JWKS", ErrAlgorithm, alg)
	}
	return fmt.Errorf("%w: %.20q is not allowed", ErrAlgorithm, alg)
}

func keyError(err error, provider, kid string) error {
	switch {
	case errors.Is(err, ErrNoKeys):
		return fmt.Errorf("%w: provider %q", ErrNoKeys, provider)
	case errors.Is(err, errKeyMismatch):
		return fmt.Errorf("%w: %w (kid %.64q)", ErrAlgorithm, err, kid)
	case kid == "":
		return fmt.Errorf("%w: %w", ErrUnknownKID, err)
	default:
		return fmt.Errorf("%w: kid %.64q not in the key set of provider %q", ErrUnknownKID, kid, provider)
	}
}

// jws is a decoded compact JWS.
type jws struct {
	alg          string
	kid          string // "" when absent
	typ          string // "" when absent
	signingInput string // header.payload, as sent
	payload      []byte
	sig          []byte
}

var b64 = base64.RawURLEncoding.Strict()

// parseJWS splits and decodes a compact JWS: three base64url segments
// (canonical, unpadded), a JSON object header with a string alg, an
// optional string kid and typ, and no crit. An empty signature is left for the
// algorithm check (alg none) or the signature check to refuse. Other header parameters (jku, x5u, jwk,
// x5c, ...) are ignored: keys come only from the configuration.
func parseJWS(token string) (jws, error) {
	h, rest, ok1 := strings.Cut(token, ".")
	pl, sg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sg, '.') >= 0 {
		return jws{}, fmt.Errorf("%w: not three dot-separated segments", ErrMalformed)
	}
	if h == "" {
		return jws{}, fmt.Errorf("%w: empty header", ErrMalformed)
	}
	buf := make([]byte, b64.DecodedLen(len(h))+b64.DecodedLen(len(pl))+b64.DecodedLen(len(sg)))
	hb, buf, err := decodeSegment(buf, h)
	if err != nil {
		return jws{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	payload, buf, err := decodeSegment(buf, pl)
	if err != nil {
		return jws{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	sig, _, err := decodeSegment(buf, sg)
	if err != nil {
		return jws{}, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	header, err := parseJSONObject(hb)
	if err != nil {
		return jws{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	av, _ := header.get("alg")
	if av == nil || av.kind != jsonString {
		return jws{}, fmt.Errorf("%w: header alg is missing or not a string", ErrMalformed)
	}
	alg := av.str
	var kid string
	if kv, present := header.get("kid"); present {
		if kv.kind != jsonString {
			return jws{}, fmt.Errorf("%w: header kid is not a string", ErrMalformed)
		}
		kid = kv.str
	}
	var typ string
	if tv, present := header.get("typ"); present {
		if tv.kind != jsonString {
			return jws{}, fmt.Errorf("%w: header typ is not a string", ErrMalformed)
		}
		typ = tv.str
	}
	if _, present := header.get("crit"); present {
		return jws{}, fmt.Errorf("%w: header crit names extensions this verifier does not support", ErrMalformed)
	}
	return jws{
		alg:          alg,
		kid:          kid,
		typ:          typ,
		signingInput: token[:len(h)+1+len(pl)],
		payload:      payload,
		sig:          sig,
	}, nil
}

func decodeSegment(buf []byte, seg string) (out, rest []byte, err error) {
	n, err := b64.Decode(buf, stringBytes(seg))
	if err != nil {
		return nil, nil, err
	}
	return buf[:n:n], buf[n:], nil
}

// decodeClaims decodes the payload as one JSON object.
func decodeClaims(payload []byte) (*jsonValue, error) {
	v, err := parseJSONObject(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	return &v, nil
}

// signingMethods are the verifiers of the supported algorithms. RSASSA-PSS
// requires the salt length to equal the hash length (RFC 7518 section 3.5);
// golang-jwt's default PS methods accept any salt length.
var signingMethods = map[string]jwt.SigningMethod{
	"RS256": jwt.SigningMethodRS256,
	"RS384": jwt.SigningMethodRS384,
	"RS512": jwt.SigningMethodRS512,
	"PS256": strictPSS(jwt.SigningMethodPS256),
	"PS384": strictPSS(jwt.SigningMethodPS384),
	"PS512": strictPSS(jwt.SigningMethodPS512),
	"ES256": jwt.SigningMethodES256,
	"ES384": jwt.SigningMethodES384,
	"ES512": jwt.SigningMethodES512,
	"EdDSA": jwt.SigningMethodEdDSA,
	// HMAC: only ever with an hmacSecret key, which only an HMAC
	// provider holds (see keyFits). golang-jwt compares in constant time.
	"HS256": jwt.SigningMethodHS256,
	"HS384": jwt.SigningMethodHS384,
	"HS512": jwt.SigningMethodHS512,
}

func strictPSS(m *jwt.SigningMethodRSAPSS) *jwt.SigningMethodRSAPSS {
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
	return &jwt.SigningMethodRSAPSS{SigningMethodRSA: m.SigningMethodRSA, Options: opts, VerifyOptions: opts}
}

// checkSignature is the signature layer: it checks j.alg against the
// provider's allow-list, selects the key (see selectKey) and verifies the
// signature with it.
func (p *provider) checkSignature(ctx context.Context, j jws) (*key, error) {
	if isHMACAlg(j.alg) != p.hmac {
		if p.hmac {
			return nil, fmt.Errorf("%w: %.20q is refused by HMAC provider %q (HS256, HS384 and HS512 only)", ErrAlgorithm, j.alg, p.name)
		}
		return nil, fmt.Errorf("%w: %.20q is never accepted with JWKS (provider %q)", ErrAlgorithm, j.alg, p.name)
	}
	if !p.algs[j.alg] {
		return nil, fmt.Errorf("%w: %.20q is not in the allow-list of provider %q", ErrAlgorithm, j.alg, p.name)
	}
	kid := j.kid
	if p.hmac {
		kid = "" // one secret per provider: the kid names nothing
	}
	k, err := p.selectKey(ctx, j.alg, kid)
	if err != nil {
		return nil, keyError(err, p.name, j.kid)
	}
	if err := verifySignature(j, k); err != nil {
		return nil, err
	}
	return k, nil
}

// verifySignature checks j's signature with k. The caller has checked that
// k fits j.alg.
func verifySignature(j jws, k *key) error {
	m := signingMethods[j.alg]
	if m == nil || !k.compatible(j.alg) {
		return algError(j.alg)
	}
	pub := k.pub
	if s, ok := pub.(hmacSecret); ok {
		pub = []byte(s)
	}
	if err := m.Verify(j.signingInput, j.sig, pub); err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return nil
}

func normalTokenTypes(in []string) []string {
	out := make([]string, 0, len(in))
	for _, t := range in {
		out = append(out, normalTokenType(t))
	}
	return out
}

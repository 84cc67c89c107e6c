package jwks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// source yields a provider's JWK Set document. Its methods are called only
// from the provider's refresh goroutine.
type source interface {
	// fetch returns the current document. unchanged reports that the
	// document is known to be the one returned before (a file whose
	// modification time and size did not change) and force is false.
	fetch(ctx context.Context, force bool) (doc []byte, unchanged bool, err error)
	// describe names the source for logs (a URL or a path).
	describe() string
}

// fetcher performs bounded GET requests.
type fetcher struct {
	client  *http.Client
	timeout time.Duration
}

func (f fetcher) get(ctx context.Context, u, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "extauthz")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("get %s: unexpected status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("get %s: body larger than %d bytes", u, maxJWKSBytes)
	}
	return body, nil
}

const acceptJWKS = "application/jwk-set+json, application/json"

// urlSource fetches a JWK Set over HTTP(S).
type urlSource struct {
	f   fetcher
	url string
}

func (s *urlSource) fetch(ctx context.Context, _ bool) ([]byte, bool, error) {
	doc, err := s.f.get(ctx, s.url, acceptJWKS)
	return doc, false, err
}

func (s *urlSource) describe() string { return s.url }

// discoverySource finds jwks_uri in the issuer's OpenID configuration, then
// fetches the JWK Set from it. A failed JWK Set fetch makes the next fetch
// discover again.
type discoverySource struct {
	f       fetcher
	issuer  string
	jwksURI string
}

func (s *discoverySource) fetch(ctx context.Context, _ bool) ([]byte, bool, error) {
	if s.jwksURI == "" {
		uri, err := s.discover(ctx)
		if err != nil {
			return nil, false, err
		}
		s.jwksURI = uri
	}
	doc, err := s.f.get(ctx, s.jwksURI, acceptJWKS)
	if err != nil {
		s.jwksURI = ""
		return nil, false, err
	}
	return doc, false, nil
}

func (s *discoverySource) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(s.issuer, "/") + "/.well-known/openid-configuration"
	body, err := s.f.get(ctx, u, "application/json")
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery: decode %s: %w", u, err)
	}
	// OpenID Connect Discovery 1.0 section 4.3: the issuer in the document
	// must be identical to the issuer it was fetched for.
	if doc.Issuer != s.issuer {
		return "", fmt.Errorf("discovery: %s names issuer %.200q, not the configured one", u, doc.Issuer)
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri %.200q: %w", doc.JWKSURI, err)
	}
	return doc.JWKSURI, nil
}

func (s *discoverySource) describe() string { return s.issuer }

// fileSource reads a JWK Set file, again whenever its modification time or
// size changes (or when forced).
type fileSource struct {
	path    string
	modTime time.Time
	size    int64
	read    bool
}

func (s *fileSource) fetch(_ context.Context, force bool) ([]byte, bool, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("stat jwks file: %w", err)
	}
	if s.read && !force && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return nil, true, nil
	}
	// Remember the attempt even if it fails, so a broken file is reported
	// once, not at every poll, and is read again when it changes.
	s.modTime, s.size, s.read = fi.ModTime(), fi.Size(), true
	if fi.Size() > maxJWKSBytes {
		return nil, false, fmt.Errorf("jwks file %s is larger than %d bytes", s.path, maxJWKSBytes)
	}
	doc, err := os.ReadFile(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("read jwks file: %w", err)
	}
	return doc, false, nil
}

func (s *fileSource) describe() string { return s.path }

// newHTTPClient builds the client of one provider: TLS 1.2 or later, the
// roots of caFile when set, and redirects only to URLs that checkFetchURL
// accepts.
func newHTTPClient(caFile string) (*http.Client, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	c := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if err := checkFetchURL(req.URL.String()); err != nil {
				return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), err)
			}
			return nil
		},
	}
	return c, tr, nil
}

// secretSource reads an HMAC secret file (see readHMACSecret), again
// whenever its modification time or size changes (or when forced).
type secretSource struct {
	path    string
	modTime time.Time
	size    int64
	read    bool
}

func (s *secretSource) fetch(_ context.Context, force bool) ([]byte, bool, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("stat hmac secret file: %w", err)
	}
	if s.read && !force && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return nil, true, nil
	}
	s.modTime, s.size, s.read = fi.ModTime(), fi.Size(), true
	secret, err := readHMACSecret(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("hmac_secret_file: %w", err)
	}
	return secret, false, nil
}

func (s *secretSource) describe() string { return s.path }

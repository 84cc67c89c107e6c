package main

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The development identity provider of examples/dev: tokens are signed with
// its private key and verified against its jwks.json.
const (
	devIssuer   = "https://issuer.dev.local"
	devAudience = "llm-gateway"
)

// signer mints development JWTs.
type signer struct {
	key crypto.Signer
	kid string
}

// loadSigner reads the development private key and the kid of the first key
// of the matching JWK Set.
func loadSigner(pemPath, jwksPath string) (*signer, error) {
	b, err := os.ReadFile(pemPath)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", pemPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pemPath, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", pemPath)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	b, err = os.ReadFile(jwksPath)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		return nil, fmt.Errorf("%s: no key (%v)", jwksPath, err)
	}
	return &signer{key: s, kid: set.Keys[0].KID}, nil
}

// token mints an RS256 token for sub with groups, valid for two hours, with
// the claims a typical identity provider adds.
func (s *signer) token(sub string, groups []string) (string, error) {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": devIssuer, "aud": devAudience, "sub": sub,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
		"email": sub + "@example.com", "name": "Load Test " + sub,
		"scope": "openid profile email", "jti": fmt.Sprintf("%x", now.UnixNano()),
	}
	if groups != nil {
		c["groups"] = groups
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = s.kid
	return t.SignedString(s.key)
}

// tokens mints n tokens for distinct subjects in the eng group, on every
// CPU (RSA signing costs about 1ms each).
func (s *signer) tokens(n, parallel int) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += parallel {
				t, err := s.token(fmt.Sprintf("user-%05d", i), []string{"eng"})
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = t
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// badSignature returns tok with a signature that decodes but does not
// verify.
func badSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	for j := range sig[:8] {
		if sig[j] == 'A' {
			sig[j] = 'B'
		} else {
			sig[j] = 'A'
		}
	}
	return tok[:i+1] + string(sig)
}

// checkRequest is the CheckRequest Envoy's ext_authz filter sends for a
// chat completion: peer addresses, the request time, pseudo-headers and the
// usual client headers, plus the credential header (if any).
func checkRequest(n int, credHeader, cred string) *authv3.CheckRequest {
	h := map[string]string{
		":authority":        "llm.example.com",
		":method":           "POST",
		":path":             "/v1/chat/completions",
		":scheme":           "https",
		"content-type":      "application/json",
		"content-length":    "512",
		"user-agent":        "OpenAI/Python 1.40.0",
		"accept":            "application/json",
		"x-forwarded-proto": "https",
		"x-request-id":      fmt.Sprintf("6f1c1f3e-7a55-4f0e-9d3b-%012d", n),
	}
	if credHeader != "" {
		h[credHeader] = cred
	}
	addr := func(ip string, port uint32) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      addr("10.1.2.3", 50000+uint32(n%10000)),
		Destination: addr("10.4.5.6", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: fmt.Sprint(1000000 + n), Method: "POST", Host: "llm.example.com", Path: "/v1/chat/completions",
				Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
			},
		},
	}}
}

// newRequest encodes req for the load generator.
func newRequest(req *authv3.CheckRequest, allow bool) request {
	b, err := proto.Marshal(req)
	if err != nil {
		panic(fmt.Sprintf("encode CheckRequest: %v", err)) // a programming error
	}
	return request{req: req, allow: allow, wire: b}
}

// variant is one extauthz configuration the scenarios run against.
type variant struct {
	name         string
	sampleRate   float64 // log.allow_sample_rate
	cacheEntries int     // jwt.cache.max_entries
}

// scenario is one row pair of the table.
type scenario struct {
	name    string
	about   string
	variant string
	reqs    []request
}

// configYAML is an extauthz configuration for the load test: the policy of
// examples/dev, one RS256 provider on the dev JWK Set, no HTTP listener,
// pprof on the admin port, and the decision log on stdout (a file).
func configYAML(v variant, grpcAddr, adminAddr, jwksPath, keysSection string) string {
	return fmt.Sprintf(`# written by extauthz loadtest (variant %s)
listen:
  grpc: %s
  http: ""        # off
  admin: %s
server:
  check_timeout: 300ms
  pprof: true
log:
  level: info
  allow_sample_rate: %g
jwt:
  leeway: 30s
  cache:
    max_entries: %d
  providers:
    - name: dev
      issuer: %s
      audiences: [%s]
      jwks_file: %s
      algorithms: [RS256]
      claims_to_headers:
        email: x-auth-email
%s
roles:
  viewer: [models:list]
  developer: [models:list, chat:invoke]
  admin: ["*"]
role_mapping:
  rules:
    - groups: [eng, ml-team]
      roles: [developer]
    - groups: [platform-admins]
      roles: [admin]
  default_roles: [viewer]
routes:
  - name: health
    match: {path_prefix: /healthz}
    public: true
  - name: chat
    match: {path_prefix: /v1/chat/completions, methods: [POST]}
    require: {permissions: [chat:invoke]}
  - name: models
    match: {path_prefix: /v1/models, methods: [GET]}
    require: {any_role: [viewer, developer, admin]}
default_route: deny
headers:
  prefix: x-auth-
  strip_credentials: true
`, v.name, grpcAddr, adminAddr, v.sampleRate, v.cacheEntries, devIssuer, devAudience, jwksPath, keysSection)
}

// keysYAML is the api_keys section: Redis on a unix socket, or the embedded
// store persisted to file.
func keysYAML(redisSocket, file string) string {
	if redisSocket != "" {
		return fmt.Sprintf("api_keys:\n  prefix: ek\n  redis:\n    addrs: [\"unix://%s\"]\n", redisSocket)
	}
	return fmt.Sprintf("api_keys:\n  prefix: ek\n  file: %s\n", file)
}

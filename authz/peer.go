package authz

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// PeerIdentityConfig is the `peer_identity` section: it turns the mTLS peer
// that Envoy or Istio reports (attributes.source.principal, or the URI SAN
// of attributes.source.certificate) into an identity with method mtls, for
// callers that present no credential. An explicit credential (bearer or
// x-api-key) always wins over the peer. Envoy must have verified the peer's
// certificate (require_client_certificate with a validation_context, or
// Istio mesh mTLS): extauthz trusts what Envoy reports. HTTP mode carries no
// peer attributes and never yields an mtls identity.
type PeerIdentityConfig struct {
	// Enabled turns peer identities on.
	Enabled bool `yaml:"enabled"`
	// Rules are tried in order; the first whose Principal matches decides.
	// No match: no peer identity.
	Rules []PeerRule `yaml:"rules"`
}

// PeerRule maps the principals matching Principal to roles and groups.
type PeerRule struct {
	// Principal is an exact principal (a SPIFFE ID such as
	// spiffe://cluster.local/ns/agents/sa/summarizer), or a prefix ending in
	// "*" (spiffe://cluster.local/ns/agents/*) that matches any suffix.
	Principal string `yaml:"principal"`
	// Roles are given to the peer directly.
	Roles []string `yaml:"roles"`
	// Groups are the peer's groups; role_mapping rules apply to them.
	Groups []string `yaml:"groups"`
}

// maxPrincipalBytes bounds a principal, in configuration and in requests.
const maxPrincipalBytes = 2048

// Validate reports every problem of the section at path (peer_identity),
// each as path, rule and fix, joined with errors.Join. knownRole reports
// whether a role is defined under roles.
func (cfg PeerIdentityConfig) Validate(path string, knownRole func(string) bool) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if cfg.Enabled && len(cfg.Rules) == 0 {
		add(".rules", "peer_identity is enabled but has no rules, so no peer can ever be identified: add a rule such as {principal: \"spiffe://cluster.local/ns/agents/*\", roles: [agent]} or set enabled: false")
	}
	var earlier []int // indexes of the valid rules before this one
	for i, r := range cfg.Rules {
		pre := fmt.Sprintf(".rules[%d]", i)
		if err := checkPrincipalPattern(r.Principal); err != nil {
			add(pre+".principal", "%v", err)
		} else {
			if j, ok := shadowedBy(cfg.Rules, earlier, r.Principal); ok {
				add(pre+".principal", "%q is already matched by %s.rules[%d] (%q), and the first matching rule wins, so this rule never applies: move it up or remove it", r.Principal, path, j, cfg.Rules[j].Principal)
			}
			earlier = append(earlier, i)
		}
		for j, role := range r.Roles {
			if !knownRole(role) {
				add(fmt.Sprintf("%s.roles[%d]", pre, j), "role %q is not defined under roles: define it or fix the spelling", role)
			}
		}
		for j, g := range r.Groups {
			if g == "" || !safeListItem(g) {
				add(fmt.Sprintf("%s.groups[%d]", pre, j), "%q must be non-empty and hold no comma or control character (groups travel comma-separated in x-auth-groups)", g)
			}
		}
	}
	return errors.Join(errs...)
}

// shadowedBy returns the first of the rules at indexes earlier that matches
// every principal pattern p matches.
func shadowedBy(rules []PeerRule, earlier []int, p string) (int, bool) {
	pat, wild := strings.CutSuffix(p, "*")
	for _, j := range earlier {
		e, ewild := strings.CutSuffix(rules[j].Principal, "*")
		if ewild && strings.HasPrefix(pat, e) || !ewild && !wild && pat == e {
			return j, true
		}
	}
	return 0, false
}

func checkPrincipalPattern(p string) error {
	prefix, wild := strings.CutSuffix(p, "*")
	switch {
	case p == "":
		return errors.New("must be set to a principal, e.g. spiffe://cluster.local/ns/agents/sa/summarizer, or a prefix ending in *")
	case len(p) > maxPrincipalBytes:
		return fmt.Errorf("is longer than %d bytes", maxPrincipalBytes)
	case strings.Contains(prefix, "*"):
		return fmt.Errorf("%q: * is allowed only as the last character (it matches any suffix)", p)
	case wild && !strings.Contains(prefix, "://"):
		return fmt.Errorf("%q matches peers of every trust domain: name at least the scheme and trust domain, e.g. spiffe://cluster.local/ns/agents/*", p)
	case wild && strings.HasSuffix(prefix, "://"):
		return fmt.Errorf("%q matches peers of every trust domain: name the trust domain, e.g. spiffe://cluster.local/*", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= 0x20 || c == 0x7f {
			return fmt.Errorf("%q must not contain spaces or control characters", p)
		}
	}
	return nil
}

// peerRule is a compiled PeerRule.
type peerRule struct {
	pattern string // without the trailing *
	prefix  bool
	roles   []string
	groups  []string
}

func compilePeerRules(cfg PeerIdentityConfig) []peerRule {
	if !cfg.Enabled {
		return nil
	}
	out := make([]peerRule, 0, len(cfg.Rules))
	for _, r := range cfg.Rules {
		pat, wild := strings.CutSuffix(r.Principal, "*")
		out = append(out, peerRule{pattern: pat, prefix: wild, roles: r.Roles, groups: r.Groups})
	}
	return out
}

// matchPeer returns the first rule matching principal, or nil.
func matchPeer(rules []peerRule, principal string) *peerRule {
	for i := range rules {
		r := &rules[i]
		if r.prefix && strings.HasPrefix(principal, r.pattern) || !r.prefix && principal == r.pattern {
			return r
		}
	}
	return nil
}

// validPrincipal reports whether a principal from a request may be used: not
// empty, bounded, printable ASCII without spaces (so it can travel in a
// header and a log line as is).
func validPrincipal(p string) bool {
	if p == "" || len(p) > maxPrincipalBytes {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// maxPeerCertificateBytes bounds the URL-encoded PEM certificate read from
// attributes.source.certificate.
const maxPeerCertificateBytes = 64 << 10

// certificatePrincipal returns the URI SAN of the leaf certificate in cert,
// the URL-encoded PEM that Envoy sends with include_peer_certificate. It
// reports false unless the certificate parses and carries exactly one URI
// SAN (as a SPIFFE X.509-SVID does). Envoy has verified the certificate
// during the handshake; this only reads it.
func certificatePrincipal(cert string) (string, bool) {
	if cert == "" || len(cert) > maxPeerCertificateBytes {
		return "", false
	}
	// PathUnescape, not QueryUnescape: a "+" of the base64 body stays "+".
	raw, err := url.PathUnescape(cert)
	if err != nil {
		return "", false
	}
	block, _ := pem.Decode([]byte(raw))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || len(c.URIs) != 1 {
		return "", false
	}
	p := c.URIs[0].String()
	if !validPrincipal(p) {
		return "", false
	}
	return p, true
}

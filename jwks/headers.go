package jwks

import (
	"slices"
	"strings"
)

// The header names that may never carry a claim (nor be set by extauthz at
// all), by why. Names are compared lower-case with '_' read as '-', the way
// CGI, WSGI and Rack upstreams read them.
var (
	// hopByHopHeaders control the connection, not the message (RFC 9110
	// 7.6.1, RFC 9113 8.2.2); a proxy acts on them or drops them.
	hopByHopHeaders = []string{
		"connection", "expect", "http2-settings", "keep-alive", "proxy-connection",
		"te", "trailer", "trailers", "transfer-encoding", "upgrade",
	}
	// credentialHeaders carry or challenge for a credential.
	credentialHeaders = []string{
		"authorization", "cookie", "proxy-authenticate", "proxy-authorization",
		"set-cookie", "www-authenticate", "x-api-key",
	}
	// routingHeaders frame the message or tell a proxy or an upstream where
	// a request comes from and goes to.
	routingHeaders = []string{
		"forwarded", "host", "max-forwards", "via", "x-real-ip", "x-request-id",
	}
	// routingHeaderPrefixes are whole families of such headers.
	routingHeaderPrefixes = []string{"content-", "x-forwarded-", "x-original-"}
)

// ReservedHeader returns why a header name may not carry a claim, or ""
// when it may: hop-by-hop and connection-level headers, credentials,
// framing and routing headers (content-*, x-forwarded-*, x-original-*,
// host, forwarded, via, x-real-ip, x-request-id), pseudo-headers, Envoy's
// x-envoy-* and extauthz's own x-extauthz-*. Case and '_' for '-' do not
// matter.
func ReservedHeader(name string) string {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch {
	case strings.HasPrefix(n, ":"):
		return "is an HTTP/2 pseudo-header"
	case slices.Contains(hopByHopHeaders, n):
		return "is a hop-by-hop or connection-level header"
	case slices.Contains(credentialHeaders, n):
		return "carries a credential"
	case slices.Contains(routingHeaders, n) || slices.ContainsFunc(routingHeaderPrefixes, func(p string) bool { return strings.HasPrefix(n, p) }):
		return "controls message framing or routing, which the proxy and the upstream trust"
	case strings.HasPrefix(n, "x-envoy-"):
		return "belongs to Envoy"
	case strings.HasPrefix(n, "x-extauthz-"):
		return "belongs to extauthz's own protocol"
	}
	return ""
}

// claimHeaderExample suggests a header name for a claim path: x-auth- and
// its last segment, lower-case, in token characters other than '_'.
func claimHeaderExample(claim string) string {
	if i := strings.LastIndexByte(claim, '.'); i >= 0 {
		claim = claim[i+1:]
	}
	var b strings.Builder
	for _, c := range strings.ToLower(claim) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if s == "" {
		s = "claim"
	}
	return "x-auth-" + s
}

// ValidHeaderToken reports whether s is a non-empty lower-case HTTP token
// (RFC 9110 5.6.2): a-z, 0-9 and !#$%&'*+-.^_`|~. It does not check
// ReservedHeader.
func ValidHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

package authz

import (
	"slices"
	"strings"

	"github.com/extauthz/extauthz/jwks"
)

// identityHeaders returns the headers to set upstream for id.
func (e *Engine) identityHeaders(id *Identity) []Header {
	set := make([]Header, 0, 6+len(id.Extra))
	set = append(set, Header{e.names.subject, headerValue(id.Subject)})
	set = append(set, Header{e.names.method, id.Method.String()})
	if id.Issuer != "" {
		set = append(set, Header{e.names.issuer, headerValue(id.Issuer)})
	}
	if len(id.Groups) > 0 {
		set = append(set, Header{e.names.groups, joinSafe(id.Groups)})
	}
	if len(id.Roles) > 0 {
		set = append(set, Header{e.names.roles, joinSafe(id.Roles)})
	}
	if id.KeyID != "" {
		set = append(set, Header{e.names.keyID, headerValue(id.KeyID)})
	}
	for _, x := range id.Extra {
		set = append(set, Header{x.Name, headerValue(x.Value)})
	}
	return set
}

// removals lists the request headers that must not reach the upstream:
// every header under the identity prefix (and every claims_to_headers name)
// that set does not overwrite, and the credential headers when
// strip_credentials is on. Names are compared as an upstream may read them:
// case-insensitively and with '_' read as '-' (CGI, WSGI and Rack turn
// x_auth_subject and x-auth-subject into the same variable), so every such
// spelling is removed. It returns nil, without allocating, when there is
// nothing to remove.
func (e *Engine) removals(h map[string]string, set []Header) []string {
	var out []string
	for name := range h {
		if !e.identityHeader(name) {
			if e.strip && name != "authorization" && name != "x-api-key" &&
				(foldedEqual(name, "authorization") || foldedEqual(name, "x-api-key")) {
				out = append(out, name) // x_api_key, X-Api-Key
			}
			continue
		}
		// A header this decision sets is overwritten (Envoy matches
		// names case-insensitively); x_auth_subject is another header to
		// Envoy and is removed.
		if setsHeaderFold(set, name) {
			continue
		}
		out = append(out, name)
	}
	if e.strip {
		_, auth := h["authorization"]
		_, key := h["x-api-key"]
		if out == nil {
			// The common case: no client-sent identity header. Answer with
			// a shared list rather than allocate one per check.
			switch {
			case auth && key:
				return removeBoth
			case auth:
				return removeAuthorization
			case key:
				return removeAPIKey
			}
			return nil
		}
		if auth {
			out = append(out, "authorization")
		}
		if key {
			out = append(out, "x-api-key")
		}
	}
	if len(out) > 1 {
		slices.Sort(out)
	}
	return out
}

// identityHeader reports whether a request header name is, as an upstream
// may read it, under the identity prefix or a claims_to_headers name.
func (e *Engine) identityHeader(name string) bool {
	if hasFoldedPrefix(name, e.prefix) {
		return true
	}
	for _, c := range e.claimHeaders {
		if foldedEqual(name, c) {
			return true
		}
	}
	return false
}

// foldHeaderByte reads a header-name byte as the most lenient upstream does:
// lower case, and '_' as '-'.
func foldHeaderByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// hasFoldedPrefix reports whether name starts with prefix, both read with
// foldHeaderByte. It does not allocate.
func hasFoldedPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldHeaderByte(name[i]) != foldHeaderByte(prefix[i]) {
			return false
		}
	}
	return true
}

// foldedEqual reports whether a and b are the same header name read with
// foldHeaderByte.
func foldedEqual(a, b string) bool { return len(a) == len(b) && hasFoldedPrefix(a, b) }

// setsHeaderFold reports whether set holds name, compared
// case-insensitively (but '_' and '-' differ).
func setsHeaderFold(set []Header, name string) bool {
	for i := range set {
		if strings.EqualFold(set[i].Name, name) {
			return true
		}
	}
	return false
}

// The removal lists of the common case, when no client-sent identity header
// is to be removed, only the credential headers to strip. Every decision
// shares them: read-only.
var (
	removeAuthorization = []string{"authorization"}
	removeAPIKey        = []string{"x-api-key"}
	removeBoth          = []string{"authorization", "x-api-key"}
)

// RemovalKind says which shared removal list a Decision's Remove is, so a
// front end can share what it builds from it (the gRPC front end caches
// allowed responses by it).
type RemovalKind uint8

// The removal kinds: nothing to remove, one of the three shared lists of
// credential headers, or RemovalOther, a list built for one request that
// must not be shared.
const (
	RemovalNone RemovalKind = iota
	RemovalAuthorization
	RemovalAPIKey
	RemovalBoth
	RemovalOther
)

// RemovalOf returns which shared removal list rm (a Decision's Remove) is,
// or RemovalOther.
func RemovalOf(rm []string) RemovalKind {
	switch {
	case len(rm) == 0:
		return RemovalNone
	case &rm[0] == &removeAuthorization[0]:
		return RemovalAuthorization
	case &rm[0] == &removeAPIKey[0]:
		return RemovalAPIKey
	case &rm[0] == &removeBoth[0]:
		return RemovalBoth
	}
	return RemovalOther
}

func setsHeader(set []Header, name string) bool {
	for i := range set {
		if set[i].Name == name {
			return true
		}
	}
	return false
}

func convertHeaders(in []jwks.Header) []Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]Header, len(in))
	for i, h := range in {
		out[i] = Header{h.Name, h.Value}
	}
	return out
}

// sortedGroups returns the groups sorted and de-duplicated, without any group
// that could not travel safely in a comma-separated header (a comma or a
// control character would let one group pose as two).
func sortedGroups(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, g := range in {
		if g != "" && safeListItem(g) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func safeListItem(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

func joinSafe(items []string) string {
	if len(items) == 1 {
		return headerValue(items[0])
	}
	return headerValue(strings.Join(items, ","))
}

// headerValue removes control characters, which no header value may carry.
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if (r < 0x20 && r != '\t') || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

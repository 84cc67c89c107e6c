package authz

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// route is a Route compiled once per config: lower-cased host, methods as a
// small slice, and the require clause resolved.
type route struct {
	name       string
	hostExact  string // lower-case; "" when hostSuffix or no host match
	hostSuffix string // ".example.com" for "*.example.com"
	path       string
	pathPrefix string // without a trailing slash, except for "/"
	methods    []string
	ctxExt     map[string]string
	public     bool
	anyRole    []string
	perms      []string
	authOnly   bool
	llm        LLMRoute // zero when the route reads no body
}

func compileRoute(r Route) route {
	c := route{
		name:     r.Name,
		path:     r.Match.Path,
		methods:  r.Match.Methods,
		ctxExt:   r.Match.ContextExtensions,
		public:   r.Public,
		anyRole:  r.Require.AnyRole,
		perms:    r.Require.Permissions,
		authOnly: r.Require.Authenticated,
		llm:      r.LLM(),
	}
	// require.model or require.tools alone implies authenticated: true.
	if !c.authOnly && len(c.anyRole) == 0 && len(c.perms) == 0 && c.llm.Enabled() {
		c.authOnly = true
	}
	h := strings.ToLower(r.Match.Host)
	if strings.HasPrefix(h, "*.") {
		c.hostSuffix = h[1:]
	} else {
		c.hostExact = h
	}
	if p := r.Match.PathPrefix; p != "" {
		if p != "/" {
			p = strings.TrimSuffix(p, "/")
		}
		c.pathPrefix = p
	}
	return c
}

// matches reports whether the route fits a request whose host is already
// lower-cased without port and whose path is canonical (see canonicalPath).
// loose reads the path as the most lenient upstreams do: ASCII letters in
// any case (Express, ASP.NET) and an exact path with or without a trailing
// slash (Express, Flask, Django redirects).
func (r *route) matches(method, host, p string, ctxExt map[string]string, loose bool) bool {
	if r.hostExact != "" && host != r.hostExact {
		return false
	}
	if r.hostSuffix != "" && (!strings.HasSuffix(host, r.hostSuffix) || len(host) == len(r.hostSuffix)) {
		return false
	}
	if r.path != "" && p != r.path && (!loose || !looseEqual(p, r.path)) {
		return false
	}
	if r.pathPrefix != "" && !hasPathPrefix(p, r.pathPrefix) && (!loose || !looseHasPathPrefix(p, r.pathPrefix)) {
		return false
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if m == method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range r.ctxExt {
		if got, ok := ctxExt[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// hasPathPrefix reports whether p equals prefix or lies below it on a path
// segment boundary.
func hasPathPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// looseEqual reports whether p and path are equal when ASCII case and one
// trailing slash are ignored.
func looseEqual(p, path string) bool {
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return asciiEqualFold(p, path)
}

// looseHasPathPrefix is hasPathPrefix with ASCII case ignored.
func looseHasPathPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if len(p) < len(prefix) || !asciiEqualFold(p[:len(prefix)], prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// hasUpperASCII reports whether s holds an ASCII upper-case letter.
func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// canonicalPath returns the path that routes are matched against, or the
// reason the request is refused before any route is tried.
//
// A path means one thing everywhere, or nothing: it is matched as written,
// percent-decoded exactly once, and whatever upstreams, proxies and
// frameworks would read in different ways is refused instead of being
// resolved one way here while the upstream resolves it another:
//
//   - ReasonInvalidPath: the path cannot be decoded (a bad or truncated
//     escape, an encoded '%' (%25, a second decoding would see another
//     path), NUL or any other control character, raw or encoded, or bytes
//     that are not UTF-8, such as the overlong dots %c0%ae), or it is
//     empty.
//   - ReasonAmbiguousPath: the target is not in origin form (it does not
//     start with '/': "*", "http://host/x", "x"); it holds a '\' (a
//     separator to IIS and some frameworks, a plain byte to Go's ServeMux),
//     a raw '#' (a request-target has no fragment, RFC 9112), a ';' (a path
//     parameter to Tomcat and Spring: /healthz/..;/admin is /admin to them),
//     raw or encoded; an encoded '/', '\', '?' or '#' (%2F, %5C, %3F, %23:
//     a separator or delimiter to a hop that decodes before splitting); an
//     empty segment ("//": merged by nginx, a URL authority to others); or
//     a segment made only of dots (".", "..", "...", also %2e-encoded), which
//     upstreams resolve, or not, each in their own way; or characters that
//     Unicode normalisation (NFKC) changes, such as the fullwidth solidus
//     "／" or "ａｄｍｉｎ".
//
// The query (from the first raw '?') is ignored. The result starts with
// '/', holds no '%', and canonicalPath(result) returns it unchanged. A path
// without '%' and non-ASCII bytes is returned without allocating.
func canonicalPath(raw string) (string, Reason) {
	if raw == "" {
		return "", ReasonInvalidPath
	}
	if raw[0] != '/' {
		return "", ReasonAmbiguousPath
	}
	p := raw
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		if strings.IndexByte(raw[i:], '#') >= 0 {
			return "", ReasonAmbiguousPath
		}
		p = raw[:i]
	}
	decode := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return "", ReasonInvalidPath
		case c == '\\' || c == '#' || c == ';':
			return "", ReasonAmbiguousPath
		case c == '%' || c >= 0x80:
			decode = true
		}
	}
	if decode {
		buf := make([]byte, 0, len(p))
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c == '%' {
				if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
					return "", ReasonInvalidPath
				}
				c = unhex(p[i+1])<<4 | unhex(p[i+2])
				i += 2
				switch {
				case c == '%' || c < 0x20 || c == 0x7f:
					return "", ReasonInvalidPath
				case c == '/' || c == '\\' || c == '?' || c == '#' || c == ';':
					return "", ReasonAmbiguousPath
				}
			}
			buf = append(buf, c)
		}
		if !utf8.Valid(buf) {
			return "", ReasonInvalidPath
		}
		// A path an upstream would change by Unicode normalisation
		// (fullwidth "／", "．", "ａｄｍｉｎ", ligatures, decomposed
		// accents) reads as another path there.
		if !norm.NFKC.IsNormal(buf) {
			return "", ReasonAmbiguousPath
		}
		p = string(buf)
	}
	// Segments: none empty (but the last, a trailing slash), none only dots.
	for i := 1; i <= len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p) - i
		}
		seg := p[i : i+j]
		if (seg == "" && i+j < len(p)) || (seg != "" && strings.Trim(seg, ".") == "") {
			return "", ReasonAmbiguousPath
		}
		i += j + 1
	}
	return p, ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// validMethod reports whether m is an upper-case method token (RFC 9110
// section 9.1: a token; upper-case by convention). A method in another case
// is refused rather than upper-cased: upstreams disagree on whether
// "delete" is DELETE (Go's ServeMux patterns and most routers compare
// case-sensitively, some frameworks upper-case it), so no reading of it is
// safe to match a route with.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; ('a' <= c && c <= 'z') || !isTokenChar(c) {
			return false
		}
	}
	return true
}

// canonicalHost lower-cases host and removes a port and a trailing dot.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

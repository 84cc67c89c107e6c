package authz

import (
	"net/url"
	"path"
	"strings"
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
func (r *route) matches(method, host, p string, ctxExt map[string]string) bool {
	if r.hostExact != "" && host != r.hostExact {
		return false
	}
	if r.hostSuffix != "" && (!strings.HasSuffix(host, r.hostSuffix) || len(host) == len(r.hostSuffix)) {
		return false
	}
	if r.path != "" && p != r.path {
		return false
	}
	if r.pathPrefix != "" && !hasPathPrefix(p, r.pathPrefix) {
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

// canonicalPath returns the path that routes are matched against: the query
// and fragment removed, percent-encoding decoded, backslashes turned into
// slashes, and dot segments and repeated slashes resolved, so that
// /healthz/../v1/chat/completions or /v1%2Fchat/completions cannot reach a
// route under the cover of another. ok is false for a path that cannot be
// decoded or was percent-encoded twice; such a request matches no route. The common clean path is returned
// without allocating.
func canonicalPath(raw string) (p string, ok bool) {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" {
		return "/", true
	}
	if isCleanPath(raw) {
		return raw, true
	}
	if strings.IndexByte(raw, '%') >= 0 {
		dec, err := url.PathUnescape(raw)
		// A '%' left after one decoding means the path was encoded twice
		// (/healthz/%252e%252e/v1/chat): a hop that decodes again would see
		// another path than the one matched here, so it matches nothing.
		if err != nil || strings.IndexByte(dec, '%') >= 0 {
			return "", false
		}
		raw = dec
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return "", false
	}
	raw = strings.ReplaceAll(raw, `\`, "/")
	if !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	c := path.Clean(raw)
	if strings.HasSuffix(raw, "/") && c != "/" {
		c += "/"
	}
	return c, true
}

// isCleanPath reports whether p starts with '/', and holds no '%', '\', NUL,
// empty segment ("//") or dot segment.
func isCleanPath(p string) bool {
	if p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%', '\\', 0:
			return false
		case '/':
			if i+1 < len(p) {
				switch p[i+1] {
				case '/':
					return false
				case '.':
					// "/." followed by end, '/', or ".": a dot segment.
					rest := p[i+2:]
					if rest == "" || rest[0] == '/' || rest == "." || strings.HasPrefix(rest, "./") {
						return false
					}
				}
			}
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

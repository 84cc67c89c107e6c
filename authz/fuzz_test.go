package authz

import (
	"context"
	"strings"
	"testing"
)

// FuzzBearerHeader: credential extraction never panics, never returns a
// credential with surrounding optional white space (SP / HTAB, RFC 9110), and
// a value it returns is always a substring of the header. Other control
// characters are left in place, so such a credential is refused as malformed.
func FuzzBearerHeader(f *testing.F) {
	for _, s := range []string{
		"Bearer abc", "bearer abc", "BEARER\tabc", "Bearer", "Bearer ", "Bearerabc",
		"Basic dXNlcjpwYXNz", "", " ", "Bearer a.b.c", "Bearer ek_abc", "Bearer  x ", "\x00Bearer x",
	} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, authorization, apiKey string) {
		h := map[string]string{}
		if authorization != "" {
			h["authorization"] = authorization
		}
		if apiKey != "" {
			h["x-api-key"] = apiKey
		}
		cred, from := credential(h)
		switch from {
		case 0:
			if cred != "" {
				t.Fatalf("no source but credential %q", cred)
			}
		case fromAuthorization:
			if !strings.Contains(authorization, cred) || strings.Trim(cred, " \t") != cred {
				t.Fatalf("credential %q not a trimmed part of %q", cred, authorization)
			}
		case fromAPIKeyHeader:
			if cred == "" || !strings.Contains(apiKey, cred) {
				t.Fatalf("credential %q not part of x-api-key %q", cred, apiKey)
			}
		}
	})
}

// FuzzRouteMatch: matching never panics; the canonical path is idempotent
// and holds nothing another parser could read differently (no '\\', '#',
// ';', '?', '%' (so no %2F or %5C), control character, empty or dot-only
// segment), so no spelling of a path can match a route that its canonical
// form does not; a refused path is refused whatever the default route.
func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{
		"/healthz", "/healthz/../v1/chat/completions", "/healthz%2F..%2Fv1", "//v1//models", `\v1\models`,
		"/v1/models?x=/healthz", "/%2e%2e/%2e%2e/etc", "/a/./b/../c/", "", "?", "#", "/%zz", "/a%00",
		"/0000%23", `/admin/x\..\..\healthz`, "/healthz/..;/v1/models", "/admin/%2541",
	} {
		f.Add("GET", "llm.example.com", s)
	}
	f.Add("delete", "llm.example.com", "/v1/models")
	e := newTestEngine(f, func(c *Config) { c.DefaultRoute = DefaultRouteAuthenticated })
	f.Fuzz(func(t *testing.T, method, host, path string) {
		p, refused := canonicalPath(path)
		if refused == "" {
			p2, refused2 := canonicalPath(p)
			if refused2 != "" || p2 != p {
				t.Fatalf("canonicalPath not idempotent: %q -> %q -> %q (%s)", path, p, p2, refused2)
			}
			if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\#;?%") || strings.Contains(p, "//") {
				t.Fatalf("canonicalPath(%q) = %q holds a separator, delimiter or escape another parser may read differently", path, p)
			}
			for _, seg := range strings.Split(p[1:], "/") {
				if seg != "" && strings.Trim(seg, ".") == "" {
					t.Fatalf("canonicalPath(%q) = %q holds the dot segment %q", path, p, seg)
				}
			}
			for i := 0; i < len(p); i++ {
				if p[i] < 0x20 || p[i] == 0x7f {
					t.Fatalf("canonicalPath(%q) = %q holds a control character", path, p)
				}
			}
		}
		d1 := e.Decide(context.Background(), &Request{Method: method, Host: host, Path: path, Headers: map[string]string{}})
		if refused == "" {
			d2 := e.Decide(context.Background(), &Request{Method: method, Host: host, Path: p, Headers: map[string]string{}})
			if d1.Route != d2.Route || d1.Code != d2.Code {
				t.Fatalf("%q and its canonical form %q decide differently: %s/%v vs %s/%v", path, p, d1.Route, d1.Code, d2.Route, d2.Code)
			}
		} else if d1.Code != InvalidRequest || d1.Route != "" {
			t.Fatalf("refused path %q (%s) decided %v on route %q, want invalid_request before matching", path, refused, d1.Code, d1.Route)
		}
	})
}

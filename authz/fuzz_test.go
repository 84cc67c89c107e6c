package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
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

// FuzzHTTPHeaders: the HTTP front end never panics on hostile forwarding
// headers, never allows without a credential unless the route is public,
// and in each server.http_forwarded_headers mode reads exactly one family:
// a check carrying a method or URI header of another family, or lacking
// the trusted ones, is refused as invalid_request.
func FuzzHTTPHeaders(f *testing.F) {
	f.Add("POST", "/v1/chat/completions", "llm.example.com", "", "")
	f.Add("GET", "/healthz/../v1/models", "", "GET", "/v1/models")
	f.Add("", "", "", "", "")
	f.Add("GET", "http://evil/x", "a:b:c", "\x00", "%")
	f.Add("", "/healthz", "", "DELETE", "/admin/users")
	e := newTestEngine(f, nil)
	servers := map[string]http.Handler{}
	for _, mode := range []string{ForwardedForwarded, ForwardedOriginal, ForwardedNone} {
		s := NewServer(e, ServerOptions{AllowSampleRate: 0, HTTPPathPrefix: "/check", HTTPForwardedHeaders: mode}, discardLogger(), NewMetrics(newRegistry()))
		servers[mode] = s.HTTP()
	}
	f.Fuzz(func(t *testing.T, fwdMethod, fwdURI, fwdHost, origMethod, origURI string) {
		set := map[string]bool{}
		for mode, h := range servers {
			r := httptest.NewRequest("GET", "/check/v1/models", nil)
			for k, v := range map[string]string{"X-Forwarded-Method": fwdMethod, "X-Forwarded-Uri": fwdURI, "X-Forwarded-Host": fwdHost,
				"X-Original-Method": origMethod, "X-Original-Uri": origURI} {
				if v != "" && validHeaderValue(v) {
					r.Header.Set(k, v)
					set[k] = true
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code == http.StatusOK && w.Header().Get("X-Auth-Subject") != "" {
				t.Fatalf("%s: allowed with an identity but no credential was sent", mode)
			}
			if w.Code != http.StatusOK && w.Header().Get(ErrorHeader) == "" {
				t.Fatalf("%s: denial %d without %s", mode, w.Code, ErrorHeader)
			}
			fwd := set["X-Forwarded-Method"] || set["X-Forwarded-Uri"]
			orig := set["X-Original-Method"] || set["X-Original-Uri"]
			var mustRefuse bool
			switch mode {
			case ForwardedForwarded:
				mustRefuse = orig || !set["X-Forwarded-Method"] || !set["X-Forwarded-Uri"]
			case ForwardedOriginal:
				mustRefuse = fwd || !set["X-Original-Method"] || !set["X-Original-Uri"]
			case ForwardedNone:
				mustRefuse = fwd || orig
			}
			if mustRefuse && (w.Code != http.StatusBadRequest || w.Header().Get(ErrorHeader) != "invalid_request") {
				t.Fatalf("%s: forwarding headers %v answered %d %q, want 400 invalid_request", mode, set, w.Code, w.Header().Get(ErrorHeader))
			}
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

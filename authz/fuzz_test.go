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
// and free of dot segments, so no spelling of a path can match a route that
// its canonical form does not.
func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{
		"/healthz", "/healthz/../v1/chat/completions", "/healthz%2F..%2Fv1", "//v1//models", `\v1\models`,
		"/v1/models?x=/healthz", "/%2e%2e/%2e%2e/etc", "/a/./b/../c/", "", "?", "#", "/%zz", "/a%00",
	} {
		f.Add("GET", "llm.example.com", s)
	}
	e := newTestEngine(f, nil)
	f.Fuzz(func(t *testing.T, method, host, path string) {
		p, ok := canonicalPath(path)
		if ok {
			p2, ok2 := canonicalPath(p)
			if !ok2 || p2 != p {
				t.Fatalf("canonicalPath not idempotent: %q -> %q -> %q (%v)", path, p, p2, ok2)
			}
			if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") {
				t.Fatalf("canonicalPath(%q) = %q still has dot segments or empty segments", path, p)
			}
		}
		d1 := e.Decide(context.Background(), &Request{Method: method, Host: host, Path: path, Headers: map[string]string{}})
		if ok {
			d2 := e.Decide(context.Background(), &Request{Method: method, Host: host, Path: p, Headers: map[string]string{}})
			if d1.Route != d2.Route || d1.Code != d2.Code {
				t.Fatalf("%q and its canonical form %q decide differently: %s/%v vs %s/%v", path, p, d1.Route, d1.Code, d2.Route, d2.Code)
			}
		} else if d1.Route != "" {
			t.Fatalf("undecodable path %q matched route %q", path, d1.Route)
		}
	})
}

// FuzzHTTPHeaders: the HTTP front end never panics on hostile forwarding
// headers and never allows without a credential unless the route is public.
func FuzzHTTPHeaders(f *testing.F) {
	f.Add("POST", "/v1/chat/completions", "llm.example.com", "", "")
	f.Add("GET", "/healthz/../v1/models", "", "GET", "/v1/models")
	f.Add("", "", "", "", "")
	f.Add("GET", "http://evil/x", "a:b:c", "\x00", "%")
	e := newTestEngine(f, nil)
	s := NewServer(e, ServerOptions{AllowSampleRate: 0, HTTPPathPrefix: "/check"}, discardLogger(), NewMetrics(newRegistry()))
	h := s.HTTP()
	f.Fuzz(func(t *testing.T, fwdMethod, fwdURI, fwdHost, origMethod, origURI string) {
		r := httptest.NewRequest("GET", "/check/v1/models", nil)
		for k, v := range map[string]string{"X-Forwarded-Method": fwdMethod, "X-Forwarded-Uri": fwdURI, "X-Forwarded-Host": fwdHost,
			"X-Original-Method": origMethod, "X-Original-Uri": origURI} {
			if v != "" && validHeaderValue(v) {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK && w.Header().Get("X-Auth-Subject") != "" {
			t.Fatalf("allowed with an identity but no credential was sent")
		}
		if w.Code != http.StatusOK && w.Header().Get(ErrorHeader) == "" {
			t.Fatalf("denial %d without %s", w.Code, ErrorHeader)
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

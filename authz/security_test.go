package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDecide_HugeRequests: a request with 10,000 headers, or a header, path
// or credential of 1 MiB, is decided in bounded time and correctly: the
// identity comes from the credential alone, every forged identity header is
// removed, and an oversized credential is refused.
func TestDecide_HugeRequests(t *testing.T) {
	e := newTestEngine(t, nil)
	const n = 10_000
	mib := strings.Repeat("a", 1<<20)

	many := func(prefix string, extra ...string) map[string]string {
		h := make(map[string]string, n+len(extra)/2)
		for i := range n {
			h[fmt.Sprintf("%s%d", prefix, i)] = "v"
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	forged := make([]string, 0, n+1)
	forged = append(forged, "authorization")
	for i := range n {
		forged = append(forged, fmt.Sprintf("x-auth-forged-%d", i))
	}
	slices.Sort(forged)
	aliceSet := []string{"x-auth-subject", "x-auth-method", "x-auth-issuer", "x-auth-groups", "x-auth-roles", "x-auth-email"}

	tests := []struct {
		name       string
		req        *Request
		wantCode   Code
		wantRemove []string // checked when not nil
	}{
		{"10,000 unrelated headers and a valid JWT",
			&Request{Method: "POST", Host: "llm.example.com", Path: "/v1/chat/completions", Headers: many("x-h-", "authorization", "Bearer "+jwtAlice)},
			Allowed, []string{"authorization"}},
		{"10,000 forged identity headers and a valid JWT",
			&Request{Method: "POST", Host: "llm.example.com", Path: "/v1/chat/completions", Headers: many("x-auth-forged-", "authorization", "Bearer "+jwtAlice)},
			Allowed, forged},
		{"10,000 forged identity headers on a public route",
			&Request{Method: "GET", Host: "llm.example.com", Path: "/healthz", Headers: many("x-auth-forged-")},
			Allowed, forged[1:]},
		{"10,000 headers and no credential",
			&Request{Method: "POST", Host: "llm.example.com", Path: "/v1/chat/completions", Headers: many("x-h-")},
			MissingCredentials, nil},
		{"1 MiB unrelated header and a valid JWT",
			req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtAlice, "x-big", mib),
			Allowed, []string{"authorization"}},
		{"1 MiB forged subject and a valid JWT",
			req("POST", "/v1/chat/completions", "authorization", "Bearer "+jwtAlice, "x-auth-subject", mib),
			Allowed, []string{"authorization"}},
		{"1 MiB bearer token of JWT shape",
			req("POST", "/v1/chat/completions", "authorization", "Bearer "+mib+"."+mib[:10]+"."+mib[:10]),
			InvalidToken, nil},
		{"1 MiB bearer value of no known shape",
			req("POST", "/v1/chat/completions", "authorization", "Bearer "+mib),
			InvalidToken, nil},
		{"1 MiB x-api-key",
			req("POST", "/v1/chat/completions", "x-api-key", "ek_"+mib),
			InvalidAPIKey, nil},
		{"1 MiB authorization header that is not Bearer",
			req("POST", "/v1/chat/completions", "authorization", "Basic "+mib),
			MissingCredentials, nil},
		{"1 MiB path of dot segments climbing out of the public route",
			req("POST", "/healthz"+strings.Repeat("/x/..", 1<<20/5)+"/../v1/chat/completions"),
			InvalidRequest, nil},
		{"1 MiB percent-encoded path",
			req("GET", "/v1/models/"+strings.Repeat("%41", 1<<20/3), "authorization", "Bearer "+jwtBob),
			Allowed, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			d := e.Decide(context.Background(), tc.req)
			took := time.Since(start)
			if d.Code != tc.wantCode {
				t.Fatalf("Decide = %v (%s), want %v", d.Code, d.Reason, tc.wantCode)
			}
			if tc.wantRemove != nil && !slices.Equal(d.Remove, tc.wantRemove) {
				t.Errorf("Remove has %d entries (first %q), want %d", len(d.Remove), first(d.Remove), len(tc.wantRemove))
			}
			if d.Code == Allowed && d.Identity != nil {
				if got := d.Identity.Subject; got != "alice" && got != "bob" {
					t.Errorf("subject = %.20q…, want it from the credential", got)
				}
				for _, h := range d.Set {
					if len(h.Value) > 4096 {
						t.Errorf("header %s set to %d bytes", h.Name, len(h.Value))
					}
				}
				if tc.wantRemove != nil && d.Identity.Subject == "alice" {
					var names []string
					for _, h := range d.Set {
						names = append(names, h.Name)
					}
					if !slices.Equal(names, aliceSet) {
						t.Errorf("Set = %v, want %v", names, aliceSet)
					}
				}
			}
			// Linear work over a few MiB; -race and a busy machine included.
			if took > time.Second {
				t.Errorf("Decide took %v", took)
			}
			t.Logf("decided in %v", took)
		})
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestDecide_DoubleEncodedPathNeverRidesAPublicRoute: a path whose percent
// signs are themselves encoded (%25) must not be allowed by a public route
// when decoding it once more (as a double-decoding proxy or framework
// upstream would) reaches a protected route. FuzzRouteMatch found it
// (seed testdata/fuzz/FuzzRouteMatch/double-encoded-dots): canonicalPath
// decodes once, so "/healthz/%252e%252e/v1/models" is canonicalised to
// "/healthz/%2e%2e/v1/models", which is under the public /healthz, while
// that canonical form canonicalises again to the protected "/v1/models".
func TestDecide_DoubleEncodedPathNeverRidesAPublicRoute(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name   string
		method string
		path   string
	}{
		{"double-encoded dot segments", "POST", "/healthz/%252e%252e/v1/chat/completions"},
		{"double-encoded dot segments and slashes", "POST", "/healthz%252F%252e%252e%252Fv1%252Fchat%252Fcompletions"},
		{"double-encoded dots under a longer public path", "GET", "/healthz/live/%252e%252e/%252e%252e/v1/models"},
		{"triple-encoded dot segments", "POST", "/healthz/%25252e%25252e/v1/chat/completions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(context.Background(), req(tc.method, tc.path))
			if d.Code == Allowed {
				t.Errorf("Decide(%s %s) without credentials = allowed by route %q (%s); decoding the path again reaches a protected route",
					tc.method, tc.path, d.Route, d.Reason)
			}
		})
	}
	// Since issue 13 an encoded '%' is refused outright (invalid_path), as
	// is single-encoded traversal (ambiguous_path); ordinary characters
	// encoded once are decoded, so the request is judged by the route it
	// really targets.
	if d := e.Decide(context.Background(), req("POST", "/healthz/%252e%252e/v1/chat/completions")); d.Reason != ReasonInvalidPath {
		t.Errorf("double-encoded traversal: %v (%s), want invalid_path", d.Code, d.Reason)
	}
	if d := e.Decide(context.Background(), req("POST", "/healthz/%2e%2e/v1/chat/completions")); d.Reason != ReasonAmbiguousPath {
		t.Errorf("single-encoded traversal: %v (%s), want ambiguous_path", d.Code, d.Reason)
	}
	if d := e.Decide(context.Background(), req("POST", "/v1/chat/%63ompletions")); d.Code != MissingCredentials || d.Route != "chat" {
		t.Errorf("encoded letter: %v on route %q, want missing_credentials on chat", d.Code, d.Route)
	}
}

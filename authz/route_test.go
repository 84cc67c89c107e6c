package authz

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pathRoutes are the routes of issue 13's examples: a public health check,
// DELETE under /admin for admins only, anything else under /admin for any
// authenticated caller, and (with default_route: authenticated) everything
// else for any authenticated caller too. jwtBob is a viewer.
var pathRoutes = []Route{
	{Name: "health", Match: Match{PathPrefix: "/healthz"}, Public: true},
	{Name: "admin-delete", Match: Match{PathPrefix: "/admin", Methods: []string{"DELETE"}}, Require: Require{AnyRole: []string{"admin"}}},
	{Name: "admin-read", Match: Match{PathPrefix: "/admin"}, Require: Require{Authenticated: true}},
	{Name: "models", Match: Match{PathPrefix: "/v1/models", Methods: []string{"GET"}}, Require: Require{AnyRole: []string{"admin"}}},
	{Name: "settings", Match: Match{Path: "/settings"}, Require: Require{AnyRole: []string{"admin"}}},
}

func newPathEngine(t testing.TB) *Engine {
	t.Helper()
	return newTestEngine(t, func(c *Config) {
		c.Routes = pathRoutes
		c.DefaultRoute = DefaultRouteAuthenticated
	})
}

type outcome struct {
	Code   string
	Reason Reason
	Route  string
}

func outcomeOf(d Decision) outcome { return outcome{d.Code.String(), d.Reason, d.Route} }

// TestDecide_AmbiguousPathIsRefused: a path that upstreams would read in
// different ways (a backslash, an encoded separator or delimiter, a raw
// fragment, a path parameter, a dot or empty segment) is refused as
// invalid_request whatever the credential and the default route, instead
// of being matched under one reading while the upstream runs another
// (issue 13: /admin/x\..\..\healthz was decided as the public /healthz
// while Go's ServeMux upstream runs its /admin/ handler).
func TestDecide_AmbiguousPathIsRefused(t *testing.T) {
	e := newPathEngine(t)
	want := outcome{"invalid_request", ReasonAmbiguousPath, ""}
	tests := []struct {
		name, method, path string
	}{
		{"backslash traversal onto a public route", "DELETE", `/admin/x\..\..\healthz`},
		{"encoded backslash traversal onto a public route", "DELETE", "/admin/x%5C..%5C..%5Chealthz"},
		{"lower-case encoded backslash", "DELETE", "/admin/x%5c..%5c..%5chealthz"},
		{"plain backslash", "GET", `/v1\models`},
		{"raw fragment cutting the path", "DELETE", "/healthz#/../admin/users"},
		{"raw fragment after the query", "GET", "/healthz?x=1#y"},
		{"encoded fragment delimiter", "GET", "/0000%23"},
		{"encoded query delimiter", "DELETE", "/healthz%3F/../admin/users"},
		{"tomcat path parameter traversal", "DELETE", "/healthz/..;/admin/users"},
		{"path parameter", "GET", "/healthz;jsessionid=1"},
		{"encoded path parameter", "GET", "/healthz%3B/admin"},
		{"dot-dot segment", "DELETE", "/healthz/../admin/users"},
		{"encoded dot-dot segment", "DELETE", "/healthz/%2e%2e/admin/users"},
		{"upper-case encoded dot-dot segment", "DELETE", "/healthz/%2E%2E/admin/users"},
		{"dot segment", "DELETE", "/admin/./users"},
		{"trailing dot-dot", "GET", "/admin/users/.."},
		{"only dots", "GET", "/healthz/.../admin"},
		{"encoded slash", "DELETE", "/healthz%2F..%2Fadmin%2Fusers"},
		{"lower-case encoded slash", "GET", "/admin%2fusers"},
		{"empty segment", "DELETE", "/healthz//../admin"},
		{"leading double slash read as an authority", "GET", "//healthz/admin"},
		{"relative path", "GET", "healthz"},
		{"absolute-form target", "GET", "http://llm.example.com/healthz"},
		{"asterisk-form target", "OPTIONS", "*"},
		{"fullwidth solidus and dots", "DELETE", "/healthz／．．／admin/users"},
		{"encoded fullwidth solidus", "DELETE", "/healthz%EF%BC%8F..%EF%BC%8Fadmin"},
		{"fullwidth letters an upstream may fold to /admin", "DELETE", "/ａｄｍｉｎ/users"},
		{"one dot leader pair", "DELETE", "/healthz/․․/admin"},
		{"decomposed accent", "GET", "/healthz/é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, cred := range []string{"", "Bearer " + jwtBob} {
				r := req(tc.method, tc.path)
				if cred != "" {
					r.Headers["authorization"] = cred
				}
				if diff := cmp.Diff(want, outcomeOf(e.Decide(context.Background(), r))); diff != "" {
					t.Errorf("Decide(%s %q, credential %t) mismatch (-want +got):\n%s", tc.method, tc.path, cred != "", diff)
				}
			}
		})
	}
}

// TestDecide_UndecodablePathIsDenied: a path that cannot be decoded (bad
// escapes, an encoded '%' or NUL, control characters, invalid UTF-8) is
// refused before route matching, so that default_route: authenticated
// cannot allow it (issue 13: a viewer's DELETE /admin/%2541 reached the
// upstream's admin handler).
func TestDecide_UndecodablePathIsDenied(t *testing.T) {
	e := newPathEngine(t)
	want := outcome{"invalid_request", ReasonInvalidPath, ""}
	tests := []struct {
		name, method, path string
	}{
		{"encoded percent", "DELETE", "/admin/%2541"},
		{"encoded percent then NUL", "DELETE", "/admin/users%2500"},
		{"encoded NUL", "DELETE", "/admin/users%00"},
		{"bad escape", "DELETE", "/admin/%zz"},
		{"truncated escape", "DELETE", "/admin/users%4"},
		{"lone percent", "DELETE", "/admin/%"},
		{"encoded newline", "GET", "/healthz%0A"},
		{"encoded tab", "GET", "/heal%09thz"},
		{"raw control character", "GET", "/healthz\x7f"},
		{"overlong UTF-8 dots", "DELETE", "/healthz/%c0%ae%c0%ae/admin"},
		{"invalid UTF-8", "GET", "/healthz/\xff"},
		{"empty path", "GET", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req(tc.method, tc.path, "authorization", "Bearer "+jwtBob)
			if diff := cmp.Diff(want, outcomeOf(e.Decide(context.Background(), r))); diff != "" {
				t.Errorf("Decide(%s %q) mismatch (-want +got):\n%s", tc.method, tc.path, diff)
			}
		})
	}
}

// TestDecide_MethodMustBeAnUpperCaseToken: methods:[DELETE] cannot be
// skipped by spelling the method delete or Delete (issue 13): a method that
// is not an upper-case RFC 9110 token is refused before route matching,
// since upstreams disagree on whether "delete" is DELETE.
func TestDecide_MethodMustBeAnUpperCaseToken(t *testing.T) {
	e := newPathEngine(t)
	tests := []struct {
		name, method string
		want         outcome
	}{
		{"upper-case DELETE needs admin", "DELETE", outcome{"forbidden", ReasonInsufficientRole, "admin-delete"}},
		{"lower-case delete", "delete", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"mixed-case Delete", "Delete", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"method with a space", "DELETE X", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"method with a slash", "DELETE/", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"non-ASCII method", "DELETÉ", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"empty method", "", outcome{"invalid_request", ReasonInvalidMethod, ""}},
		{"extension method is a token", "PROPFIND", outcome{"allowed", ReasonAuthorized, "admin-read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req(tc.method, "/admin/users", "authorization", "Bearer "+jwtBob)
			if diff := cmp.Diff(tc.want, outcomeOf(e.Decide(context.Background(), r))); diff != "" {
				t.Errorf("Decide(%q /admin/users) mismatch (-want +got):\n%s", tc.method, diff)
			}
		})
	}
}

// TestDecide_LenientReadingOfAnotherRouteIsRefused: upstreams that compare
// paths without case (Express by default, ASP.NET) or ignore a trailing
// slash run the /admin handler for /ADMIN/users and the /settings handler
// for /settings/. When such a lenient reading selects another route than
// the path as written (here: none, so default_route: authenticated would
// let a viewer through), the path is refused as ambiguous; when both
// readings agree it is decided as usual.
func TestDecide_LenientReadingOfAnotherRouteIsRefused(t *testing.T) {
	e := newPathEngine(t)
	tests := []struct {
		name, method, path string
		want               outcome
	}{
		{"upper-case prefix", "DELETE", "/ADMIN/users", outcome{"invalid_request", ReasonAmbiguousPath, ""}},
		{"mixed-case prefix", "DELETE", "/Admin", outcome{"invalid_request", ReasonAmbiguousPath, ""}},
		{"upper-case public path", "GET", "/HEALTHZ", outcome{"invalid_request", ReasonAmbiguousPath, ""}},
		{"trailing slash on an exact path", "GET", "/settings/", outcome{"invalid_request", ReasonAmbiguousPath, ""}},
		{"upper-case exact path", "GET", "/Settings", outcome{"invalid_request", ReasonAmbiguousPath, ""}},
		{"exact path as written", "GET", "/settings", outcome{"forbidden", ReasonInsufficientRole, "settings"}},
		{"upper case under the same prefix", "GET", "/v1/models/Meta-Llama-3", outcome{"forbidden", ReasonInsufficientRole, "models"}},
		{"trailing slash under a prefix", "DELETE", "/admin/", outcome{"forbidden", ReasonInsufficientRole, "admin-delete"}},
		{"upper case matching no route either way", "GET", "/Other", outcome{"allowed", ReasonAuthorized, ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req(tc.method, tc.path, "authorization", "Bearer "+jwtBob)
			if diff := cmp.Diff(tc.want, outcomeOf(e.Decide(context.Background(), r))); diff != "" {
				t.Errorf("Decide(%s %q) mismatch (-want +got):\n%s", tc.method, tc.path, diff)
			}
		})
	}
}

// TestDecide_PlainPathsMatchAsWritten: the refusals above leave ordinary
// paths alone: percent-encoded ordinary characters are decoded once, the
// query is ignored (also when it holds what would be refused in the path),
// and a trailing slash is kept.
func TestDecide_PlainPathsMatchAsWritten(t *testing.T) {
	e := newPathEngine(t)
	tests := []struct {
		name, method, path string
		want               outcome
	}{
		{"public path", "GET", "/healthz", outcome{"allowed", ReasonPublicRoute, "health"}},
		{"public path with a query", "GET", "/healthz?next=/../admin%2F;x\\", outcome{"allowed", ReasonPublicRoute, "health"}},
		{"encoded letters", "GET", "/%68ealthz", outcome{"allowed", ReasonPublicRoute, "health"}},
		{"dots inside a segment", "GET", "/healthz/v1.2..3", outcome{"allowed", ReasonPublicRoute, "health"}},
		{"dot file", "GET", "/healthz/.well-known", outcome{"allowed", ReasonPublicRoute, "health"}},
		{"encoded space", "DELETE", "/admin/a%20b", outcome{"missing_credentials", ReasonNoCredentials, "admin-delete"}},
		{"UTF-8", "DELETE", "/admin/%C3%A9t%C3%A9", outcome{"missing_credentials", ReasonNoCredentials, "admin-delete"}},
		{"trailing slash", "DELETE", "/admin/", outcome{"missing_credentials", ReasonNoCredentials, "admin-delete"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, outcomeOf(e.Decide(context.Background(), req(tc.method, tc.path)))); diff != "" {
				t.Errorf("Decide(%s %q) mismatch (-want +got):\n%s", tc.method, tc.path, diff)
			}
		})
	}
}

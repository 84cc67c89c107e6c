package forwardauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/authztest"
	"github.com/extauthz/extauthz/forwardauth"
)

// TestServer_RepeatedDenialsAreSampled: 1000 identical anonymous denials in
// a second produce at most log.denials_per_second lines, the next line after
// the window says how many were left out, and the metrics count all 1000.
func TestServer_RepeatedDenialsAreSampled(t *testing.T) {
	tests := []struct {
		name      string
		rate      int
		wantLines int
	}{
		{"default rate", 0, authz.DefaultDenialLogRate},
		{"configured rate", 3, 3},
		{"sampling off", -1, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, reg := authztest.NewLogServer(t, authz.ServerOptions{DenialLogRate: tt.rate})
			start := time.Now()
			for range 1000 {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("x-forwarded-method", "GET")
				r.Header.Set("x-forwarded-uri", "/v1/models")
				forwardauth.New(s).ServeHTTP(httptest.NewRecorder(), r)
			}
			if time.Since(start) > 900*time.Millisecond {
				t.Skip("1000 checks took more than a second on this machine: the window rolled over")
			}
			if got := len(logs.Lines()); got != tt.wantLines {
				t.Errorf("1000 identical denials logged %d lines, want %d", got, tt.wantLines)
			}
			if got := authztest.CheckCount(t, reg, "http", "none", "missing_credentials"); got != 1000 {
				t.Errorf("extauthz_check_requests_total = %v, want 1000 (metrics are not sampled)", got)
			}
			if tt.rate < 0 {
				return
			}
			// After the window, the next line reports what was left out.
			time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("x-forwarded-method", "GET")
			r.Header.Set("x-forwarded-uri", "/v1/models")
			forwardauth.New(s).ServeHTTP(httptest.NewRecorder(), r)
			lines := logs.Lines()
			var last map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatal(err)
			}
			if got, want := last["suppressed"], float64(1000-tt.wantLines); got != want {
				t.Errorf("suppressed = %v, want %v", got, want)
			}
		})
	}
}

// TestHTTP_TrustsOneForwardingFamily: the forward-auth front end reads the
// original request from exactly one header family, and refuses a check
// that carries the other one, or lacks or repeats the trusted one (issue
// 13: behind nginx configured as its documentation shows, which sets only
// X-Original-URI and passes client headers through, a client's
// X-Forwarded-Uri: /healthz turned DELETE /admin/users into a public
// request).
func TestHTTP_TrustsOneForwardingFamily(t *testing.T) {
	e := authztest.NewPathEngine(t)
	type hdr struct{ name, value string }
	tests := []struct {
		name    string
		family  string // server.http_forwarded_headers; "" is the default
		method  string // of the check request
		target  string // of the check request
		headers []hdr
		status  int
		reason  authz.Reason // "" when allowed
	}{
		{"nginx documentation setup: client's x-forwarded-uri is refused", authz.ForwardedOriginal, "GET", "/_extauthz",
			[]hdr{{"X-Original-Uri", "/admin/users"}, {"X-Original-Method", "DELETE"}, {"X-Forwarded-Uri", "/healthz"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"original family: client's x-forwarded-method is refused", authz.ForwardedOriginal, "GET", "/_extauthz",
			[]hdr{{"X-Original-Uri", "/healthz"}, {"X-Original-Method", "GET"}, {"X-Forwarded-Method", "GET"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"original family decides the original request", authz.ForwardedOriginal, "GET", "/_extauthz",
			[]hdr{{"X-Original-Uri", "/healthz"}, {"X-Original-Method", "GET"}}, 200, ""},
		{"original family: x-forwarded-host of another hop is ignored", authz.ForwardedOriginal, "GET", "/_extauthz",
			[]hdr{{"X-Original-Uri", "/healthz"}, {"X-Original-Method", "GET"}, {"X-Forwarded-Host", "lb.example.com"}}, 200, ""},
		{"default family: client's x-original-uri is refused", "", "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/admin/users"}, {"X-Forwarded-Method", "DELETE"}, {"X-Original-Uri", "/healthz"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"default family: x-original-url is refused", "", "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Method", "GET"}, {"X-Original-Url", "http://a/admin"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"default family decides the forwarded request", "", "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Host", "llm.example.com"}}, 200, ""},
		{"forwarded family: missing uri is refused, not the check path", authz.ForwardedForwarded, "GET", "/healthz",
			[]hdr{{"X-Forwarded-Method", "DELETE"}}, 400, authz.ReasonMissingForwardingHeader},
		{"forwarded family: missing method is refused", authz.ForwardedForwarded, "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/healthz"}}, 400, authz.ReasonMissingForwardingHeader},
		{"forwarded family: repeated uri is refused", authz.ForwardedForwarded, "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/admin/users"}, {"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Method", "GET"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"original family: missing uri is refused", authz.ForwardedOriginal, "GET", "/healthz",
			[]hdr{{"X-Original-Method", "GET"}}, 400, authz.ReasonMissingForwardingHeader},
		{"none (Envoy http_service): the check request is the request", authz.ForwardedNone, "GET", "/check/healthz",
			nil, 200, ""},
		{"none: a forwarded uri is refused", authz.ForwardedNone, "DELETE", "/check/admin/users",
			[]hdr{{"X-Forwarded-Uri", "/healthz"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"none: an original uri is refused", authz.ForwardedNone, "DELETE", "/check/admin/users",
			[]hdr{{"X-Original-Uri", "/healthz"}}, 400, authz.ReasonUntrustedForwardingHeader},
		{"forwarded method in lower case is refused", "", "GET", "/_extauthz",
			[]hdr{{"X-Forwarded-Uri", "/admin/users"}, {"X-Forwarded-Method", "delete"}}, 400, authz.ReasonInvalidMethod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := authz.ServerOptions{AllowSampleRate: 1, HTTPForwardedHeaders: tc.family}
			if tc.family == authz.ForwardedNone {
				opts.HTTPPathPrefix = "/check"
			}
			s := authz.NewServer(e, opts, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry()))
			r := httptest.NewRequest(tc.method, tc.target, nil)
			for _, h := range tc.headers {
				r.Header.Add(h.name, h.value)
			}
			w := httptest.NewRecorder()
			forwardauth.New(s).ServeHTTP(w, r)
			got := struct {
				Status int
				Error  string
			}{w.Code, w.Header().Get(forwardauth.ErrorHeader)}
			want := got
			want.Status, want.Error = tc.status, ""
			if tc.status != http.StatusOK {
				want.Error = authz.ReasonCode(tc.reason).String()
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
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
	e := authztest.NewEngine(f, nil)
	servers := map[string]http.Handler{}
	for _, mode := range []string{authz.ForwardedForwarded, authz.ForwardedOriginal, authz.ForwardedNone} {
		s := authz.NewServer(e, authz.ServerOptions{AllowSampleRate: 0, HTTPPathPrefix: "/check", HTTPForwardedHeaders: mode}, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry()))
		servers[mode] = forwardauth.New(s)
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
			if w.Code != http.StatusOK && w.Header().Get(forwardauth.ErrorHeader) == "" {
				t.Fatalf("%s: denial %d without %s", mode, w.Code, forwardauth.ErrorHeader)
			}
			fwd := set["X-Forwarded-Method"] || set["X-Forwarded-Uri"]
			orig := set["X-Original-Method"] || set["X-Original-Uri"]
			var mustRefuse bool
			switch mode {
			case authz.ForwardedForwarded:
				mustRefuse = orig || !set["X-Forwarded-Method"] || !set["X-Forwarded-Uri"]
			case authz.ForwardedOriginal:
				mustRefuse = fwd || !set["X-Original-Method"] || !set["X-Original-Uri"]
			case authz.ForwardedNone:
				mustRefuse = fwd || orig
			}
			if mustRefuse && (w.Code != http.StatusBadRequest || w.Header().Get(forwardauth.ErrorHeader) != "invalid_request") {
				t.Fatalf("%s: forwarding headers %v answered %d %q, want 400 invalid_request", mode, set, w.Code, w.Header().Get(forwardauth.ErrorHeader))
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

package envoyauthz_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/authztest"
	"github.com/extauthz/extauthz/envoyauthz"
	"github.com/extauthz/extauthz/forwardauth"
	"github.com/extauthz/extauthz/rolemap"
)

// TestServer_DecisionLogLineIsBounded: an unauthenticated request with huge,
// non-UTF-8 path, host and request id yields one short log line, on both
// front ends: every client-controlled field is cut and escaped compactly.
func TestServer_DecisionLogLineIsBounded(t *testing.T) {
	ff := strings.Repeat("\xff", 15<<10)
	tests := []struct {
		name             string
		path, host, rqID string
		// reason is the denial's: a path that is not UTF-8 or holds
		// control characters is refused before credentials are read.
		reason authz.Reason
	}{
		{"path of 0xff bytes", "/v1/models/" + ff, "api.test", "r1", authz.ReasonInvalidPath},
		{"host of 0xff bytes", "/v1/models", ff, "r1", authz.ReasonNoCredentials},
		{"request id of 0xff bytes", "/v1/models", "api.test", ff, authz.ReasonNoCredentials},
		{"control characters", "/v1/models/" + strings.Repeat("\x01", 15<<10), strings.Repeat("\n", 5000), strings.Repeat("\x7f", 5000), authz.ReasonInvalidPath},
		{"long valid UTF-8", "/v1/models/" + strings.Repeat("é", 8<<10), strings.Repeat("a", 15<<10), strings.Repeat("€", 5000), authz.ReasonNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, _ := authztest.NewLogServer(t, authz.ServerOptions{})
			_, err := envoyauthz.New(s).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: tt.path, Host: tt.host, Id: tt.rqID,
					Headers: map[string]string{"x-request-id": tt.rqID}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("x-forwarded-method", "GET")
			r.Header.Set("x-forwarded-uri", tt.path)
			r.Header.Set("x-forwarded-host", tt.host)
			r.Header.Set("x-request-id", tt.rqID)
			forwardauth.New(s).ServeHTTP(httptest.NewRecorder(), r)

			lines := logs.Lines()
			if len(lines) != 2 {
				t.Fatalf("got %d log lines, want 2 (one per front end)", len(lines))
			}
			for _, line := range lines {
				if len(line) > 2048 {
					t.Errorf("log line is %d bytes, want at most 2048: %.300s…", len(line), line)
				}
				if strings.Contains(line, `\ufffd`) {
					t.Errorf("log line expands bytes to \\ufffd: %.300s…", line)
				}
				var fields map[string]any
				if err := json.Unmarshal([]byte(line), &fields); err != nil {
					t.Errorf("log line is not JSON: %v", err)
				}
				if got := fields["reason"]; got != string(tt.reason) {
					t.Errorf("reason = %v, want %s", got, tt.reason)
				}
			}
		})
	}
}

// TestServer_PanicIsADenial: a panic anywhere in a decision is answered as
// 503 unavailable on both front ends, never an allow and never an RPC
// error (which Envoy's failure_mode_allow would decide).
func TestServer_PanicIsADenial(t *testing.T) {
	mapper, err := rolemap.New(authztest.Mapping, authztest.Roles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.NewEngine(authz.Config{Routes: authztest.Routes, Headers: authz.DefaultHeaders(), APIKeyPrefix: "ek"},
		authz.Deps{Verifier: authztest.PanickingVerifier{}, Keys: authztest.PanickingKeys{}, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	s := authz.NewServer(e, authz.ServerOptions{}, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry()))
	for _, cred := range []string{"Bearer " + authztest.JWTAlice, "Bearer " + authztest.KeyCarol} {
		resp, err := envoyauthz.New(s).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": cred}},
		}}})
		if err != nil {
			t.Fatalf("%s: Check returned an error: %v", cred, err)
		}
		if got := resp.GetStatus().GetCode(); got != 14 || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Errorf("%s: gRPC code %d, denied %v; want 14 and 503", cred, got, resp.GetDeniedResponse().GetStatus())
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("authorization", cred)
		r.Header.Set("x-forwarded-method", "GET")
		r.Header.Set("x-forwarded-uri", "/v1/models")
		w := httptest.NewRecorder()
		forwardauth.New(s).ServeHTTP(w, r)
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: HTTP status %d, want 503", cred, w.Code)
		}
	}
}

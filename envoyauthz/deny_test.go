package envoyauthz

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/authztest"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	return New(authz.NewServer(authztest.NewEngine(t, nil), authz.ServerOptions{}, authztest.DiscardLogger(), authz.NewMetrics(prometheus.NewRegistry())))
}

// TestStatusCode pins the gRPC status of each outcome; any code it does not
// know (the zero Code included) is UNAVAILABLE.
func TestStatusCode(t *testing.T) {
	tests := []struct {
		name string
		code authz.Code
		want codes.Code
	}{
		{"allowed", authz.Allowed, codes.OK},
		{"missing credentials", authz.MissingCredentials, codes.Unauthenticated},
		{"invalid token", authz.InvalidToken, codes.Unauthenticated},
		{"invalid api key", authz.InvalidAPIKey, codes.Unauthenticated},
		{"forbidden", authz.Forbidden, codes.PermissionDenied},
		{"rate limited", authz.RateLimited, codes.ResourceExhausted},
		{"unavailable", authz.Unavailable, codes.Unavailable},
		{"invalid request", authz.InvalidRequest, codes.InvalidArgument},
		{"zero code", authz.Code(0), codes.Unavailable},
		{"unknown code", authz.Code(200), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StatusCode(tt.code); got != tt.want {
				t.Errorf("StatusCode(%v) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

// TestServer_EveryPrebuiltDenialDenies: each reason's prebuilt denial (see
// authz's TestReasons_EveryDeclaredReasonDenies) has a prebuilt gRPC denied
// response, encoded once, whose status is never OK and matches its code.
func TestServer_EveryPrebuiltDenialDenies(t *testing.T) {
	g := newTestServer(t)
	ds := g.s.Denials()
	if len(ds) == 0 || len(g.prebuilt) != len(ds) {
		t.Fatalf("%d prebuilt gRPC denials for %d prebuilt denials", len(g.prebuilt), len(ds))
	}
	for r, d := range ds {
		t.Run(string(r), func(t *testing.T) {
			resp := g.prebuilt[d]
			if resp == nil {
				t.Fatal("no prebuilt gRPC denial")
			}
			if g.encoded(resp) == nil {
				t.Error("the codec does not know the prebuilt denial")
			}
			c := d.Code()
			if StatusCode(c) == codes.OK || resp.GetStatus().GetCode() != int32(StatusCode(c)) ||
				resp.GetDeniedResponse() == nil || resp.GetOkResponse() != nil ||
				int(resp.GetDeniedResponse().GetStatus().GetCode()) != c.HTTPStatus() {
				t.Errorf("denial for %q: code %v, grpc %v", r, c, resp)
			}
		})
	}
}

// TestServer_UndeclaredReasonDenies: a reason missing from the table is
// answered as UNAVAILABLE and 503.
func TestServer_UndeclaredReasonDenies(t *testing.T) {
	g := newTestServer(t)
	for name, r := range map[string]authz.Reason{
		"empty":                "",
		"made up":              "no_such_reason",
		"allowing in capitals": "AUTHORIZED",
		"allowing with space":  "authorized ",
		"code name":            "allowed",
	} {
		t.Run(name, func(t *testing.T) {
			resp := g.denial(&authz.Decision{Code: authz.ReasonCode(r), Reason: r})
			if resp.GetStatus().GetCode() != int32(codes.Unavailable) || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
				t.Errorf("denial for %q: %v", r, resp)
			}
		})
	}
}

// TestServer_ZeroCodeDenies: a Decision whose code was never set is a
// denied response with UNAVAILABLE, never an OK one.
func TestServer_ZeroCodeDenies(t *testing.T) {
	g := newTestServer(t)
	var d authz.Decision
	resp := g.denial(&d)
	type outcome struct {
		GRPC   codes.Code
		HTTP   int32
		Denied bool
	}
	got := outcome{codes.Code(resp.GetStatus().GetCode()), int32(resp.GetDeniedResponse().GetStatus().GetCode()),
		resp.GetDeniedResponse() != nil && resp.GetOkResponse() == nil}
	if diff := cmp.Diff(outcome{codes.Unavailable, 503, true}, got); diff != "" {
		t.Errorf("zero Code (-want +got):\n%s", diff)
	}
}

// TestServer_DenialCarriesTheModel: a denial with a message of its own is
// built for the request, with the refused model in its metadata; a plain
// one is the prebuilt response.
func TestServer_DenialCarriesTheModel(t *testing.T) {
	g := newTestServer(t)
	plain := &authz.Decision{Code: authz.Forbidden, Reason: authz.ReasonInsufficientPerms}
	if resp := g.denial(plain); g.encoded(resp) == nil {
		t.Error("a plain denial is not the prebuilt one")
	}
	d := &authz.Decision{Code: authz.Forbidden, Reason: authz.ReasonModelNotPermitted, Model: "gpt-4o", Message: `model "gpt-4o" is not permitted`}
	resp := g.denial(d)
	if got := resp.GetDynamicMetadata().GetFields()["model"].GetStringValue(); got != "gpt-4o" {
		t.Errorf("metadata model = %q", got)
	}
	if want := `{"error":"forbidden","message":"model \"gpt-4o\" is not permitted"}`; resp.GetDeniedResponse().GetBody() != want {
		t.Errorf("body = %s, want %s", resp.GetDeniedResponse().GetBody(), want)
	}
	if g.encoded(resp) != nil {
		t.Error("a denial built for one request was cached")
	}
}

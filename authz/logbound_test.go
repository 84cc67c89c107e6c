package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/rolemap"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

func newLogBoundServer(t *testing.T, opts ServerOptions) (*Server, *syncBuffer, *Metrics) {
	t.Helper()
	mapper, err := rolemap.New(testMapping, testRoles)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{Routes: testRoutes, Headers: DefaultHeaders(), APIKeyPrefix: "ek"},
		Deps{Verifier: panickingVerifier{}, Keys: panickingKeys{}, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	m := NewMetrics(newRegistry())
	return NewServer(e, opts, slog.New(slog.NewJSONHandler(logs, nil)), m), logs, m
}

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
		reason Reason
	}{
		{"path of 0xff bytes", "/v1/models/" + ff, "api.test", "r1", ReasonInvalidPath},
		{"host of 0xff bytes", "/v1/models", ff, "r1", ReasonNoCredentials},
		{"request id of 0xff bytes", "/v1/models", "api.test", ff, ReasonNoCredentials},
		{"control characters", "/v1/models/" + strings.Repeat("\x01", 15<<10), strings.Repeat("\n", 5000), strings.Repeat("\x7f", 5000), ReasonInvalidPath},
		{"long valid UTF-8", "/v1/models/" + strings.Repeat("é", 8<<10), strings.Repeat("a", 15<<10), strings.Repeat("€", 5000), ReasonNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, _ := newLogBoundServer(t, ServerOptions{})
			_, err := s.GRPC().Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
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
			s.HTTP().ServeHTTP(httptest.NewRecorder(), r)

			lines := logs.lines()
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

func TestLogField(t *testing.T) {
	long := strings.Repeat("a", maxLogField+10)
	tests := []struct {
		name, in, want string
	}{
		{"short ASCII unchanged", "/v1/models", "/v1/models"},
		{"valid UTF-8 unchanged", "/ünïcode/€", "/ünïcode/€"},
		{"invalid byte as %XX", "/a\xffb\x80", "/a%FFb%80"},
		{"control characters as %XX", "a\nb\x00c\x7f", "a%0Ab%00c%7F"},
		{"cut with a marker", long, strings.Repeat("a", maxLogField) + "…(+10 bytes)"},
		{"cut on a rune boundary", strings.Repeat("a", maxLogField-1) + "€x", strings.Repeat("a", maxLogField-1) + "…(+4 bytes)"},
		{"cut on an escape boundary", strings.Repeat("a", maxLogField-2) + "\xff", strings.Repeat("a", maxLogField-2) + "…(+1 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, logField(tt.in)); diff != "" {
				t.Errorf("logField(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { _ = logField("/v1/chat/completions/ünïcode") }); n != 0 {
		t.Errorf("logField of a short plain string allocates %v times, want 0", n)
	}
}

// TestServer_RepeatedDenialsAreSampled: 1000 identical anonymous denials in
// a second produce at most log.denials_per_second lines, the next line after
// the window says how many were left out, and the metrics count all 1000.
func TestServer_RepeatedDenialsAreSampled(t *testing.T) {
	tests := []struct {
		name      string
		rate      int
		wantLines int
	}{
		{"default rate", 0, DefaultDenialLogRate},
		{"configured rate", 3, 3},
		{"sampling off", -1, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, m := newLogBoundServer(t, ServerOptions{DenialLogRate: tt.rate})
			start := time.Now()
			for range 1000 {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("x-forwarded-method", "GET")
				r.Header.Set("x-forwarded-uri", "/v1/models")
				s.HTTP().ServeHTTP(httptest.NewRecorder(), r)
			}
			if time.Since(start) > 900*time.Millisecond {
				t.Skip("1000 checks took more than a second on this machine: the window rolled over")
			}
			if got := len(logs.lines()); got != tt.wantLines {
				t.Errorf("1000 identical denials logged %d lines, want %d", got, tt.wantLines)
			}
			if got := testutil.ToFloat64(m.requests[TransportHTTP][MethodNone][MissingCredentials]); got != 1000 {
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
			s.HTTP().ServeHTTP(httptest.NewRecorder(), r)
			lines := logs.lines()
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

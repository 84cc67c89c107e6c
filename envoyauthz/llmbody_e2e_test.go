package envoyauthz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/ratelimit"
)

// TestCheck_LLMBodyAsUpstreamsReadIt proves over the real gRPC and HTTP
// front ends that an agent allowed only Llama and search_docs can reach
// neither another model nor another tool by spelling a key so that a Go
// upstream (encoding/json: case-insensitive, Unicode simple folding, last
// match wins) reads it, and that a body the proxy did not forward is
// refused as missing_body, never checked as "no tools".
func TestCheck_LLMBodyAsUpstreamsReadIt(t *testing.T) {
	p := newLLMParts(t)
	rlRedis := apikeystest.StartServer(t)
	s := newLLMServer(t, p, ratelimit.Config{Redis: &ratelimit.RedisConfig{Addrs: []string{rlRedis.URL()}, Timeout: time.Second}, Timeout: time.Second})
	key, _, err := p.store.Create(context.Background(), apikeys.CreateOptions{Owner: "ci-bot", Roles: []string{"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	const (
		llama = `"model":"llama-3.1-8b-instruct"`
		shell = `{"type":"function","function":{"name":"run_shell"}}`
	)
	grpcCases := []struct {
		name    string
		body    string // "" sends none
		size    int64  // attributes.request.http.size
		headers map[string]string
		want    answer
	}{
		{name: "allowed model and tool", body: `{` + llama + `,"tools":[{"type":"function","function":{"name":"search_docs"}}]}`,
			want: answer{GRPC: 0, Status: 200}},
		{name: "second model key in another case", body: `{` + llama + `,"Model":"mistral-7b-instruct"}`,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "second model key behind an escape", body: `{` + llama + `,"\u004dodel":"mistral-7b-instruct"}`,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "tools spelled with a long s", body: `{` + llama + `,"toolſ":[` + shell + `]}`,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "legacy functions in title case", body: `{` + llama + `,"Functions":[{"name":"run_shell"}]}`,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "second function name in another case", body: `{` + llama + `,"tools":[{"type":"function","function":{"name":"search_docs","Name":"run_shell"}}]}`,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "POST whose body was not forwarded", size: 0,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
		{name: "POST whose body Envoy counted but did not forward", size: 120,
			want: answer{GRPC: 3, Status: 400, Error: "invalid_request"}},
	}
	for _, tt := range grpcCases {
		t.Run("grpc/"+tt.name, func(t *testing.T) {
			r := chatRequest(key, tt.body)
			r.Attributes.Request.Http.Size = tt.size
			resp, err := s.client.Check(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			got := answerOf(t, resp)
			got.Headers = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// HTTP mode: nginx auth_request sends no body, only the method.
	t.Run("http/POST without a body (nginx auth_request)", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("x-forwarded-uri", "/v1/chat/completions")
		r.Header.Set("x-forwarded-method", "POST")
		r.Header.Set("x-api-key", key)
		w := httptest.NewRecorder()
		s.http.ServeHTTP(w, r)
		if res := w.Result(); res.StatusCode != http.StatusBadRequest || res.Header.Get("x-extauthz-error") != "invalid_request" {
			t.Errorf("status %d, error %q; want 400 invalid_request", res.StatusCode, res.Header.Get("x-extauthz-error"))
		}
	})
	// Every refusal is counted under its reason and logged with it.
	wantCounts := map[string]float64{"malformed_body": 5, "missing_body": 3}
	if diff := cmp.Diff(wantCounts, llmDenials(t, s.reg)); diff != "" {
		t.Errorf("extauthz_llm_denials_total (-want +got):\n%s", diff)
	}
	for _, r := range []string{`"reason":"missing_body"`, `"reason":"malformed_body"`} {
		if !strings.Contains(s.logs.String(), r) {
			t.Errorf("decision log lacks %s", r)
		}
	}
}

// llmDenials returns the non-zero extauthz_llm_denials_total series by
// reason.
func llmDenials(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "extauthz_llm_denials_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				got[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return got
}

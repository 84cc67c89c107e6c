package authz

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/rolemap"
)

const (
	jwtTeam  = "tea.mmm.jwt" // group team-a -> team-a
	keyAgent = "ek_agent"    // role agent
)

// newLLMEngine is an engine whose routes carry an LLM policy, with the roles
// of the README's worked example.
func newLLMEngine(t *testing.T) (*Engine, *LLMMetrics) {
	t.Helper()
	roles := map[string][]string{
		"team-a": {"chat:invoke", "embed:invoke", "model:llama-3*", "model:mistral-7b-instruct", "tool:*"},
		"agent":  {"chat:invoke", "model:llama-3.1-8b-instruct", "tool:search_docs"},
		"viewer": {"models:list"},
	}
	mapper, err := rolemap.New(rolemap.Mapping{
		Rules:        []rolemap.Rule{{Groups: []string{"team-a"}, Roles: []string{"team-a"}}},
		DefaultRoles: []string{"viewer"},
	}, roles)
	if err != nil {
		t.Fatal(err)
	}
	m := NewLLMMetrics(newRegistry())
	e, err := NewEngine(Config{
		Routes: []Route{
			{Name: "chat", Match: Match{PathPrefix: "/v1/chat/completions", Methods: []string{"POST"}},
				Require: Require{Permissions: []string{"chat:invoke"}, Model: true, Tools: true}},
			{Name: "embed", Match: Match{PathPrefix: "/v1/embeddings"}, Require: Require{Model: true}, ModelHeader: "x-model", ModelHeaderSetBy: "envoy"},
			{Name: "responses", Match: Match{PathPrefix: "/v1/responses"}, Require: Require{Tools: true}},
		},
		DefaultRoute:    DefaultRouteDeny,
		Headers:         Headers{Prefix: "x-auth-"},
		APIKeyPrefix:    "ek",
		LLMMaxBodyBytes: 4096,
	}, Deps{
		Verifier: fakeVerifier{
			jwtTeam: &jwks.Claims{Issuer: "https://issuer.test", Subject: "alice", Groups: []string{"team-a"}},
			jwtBob:  &jwks.Claims{Issuer: "https://issuer.test", Subject: "bob"},
		},
		Keys:       fakeKeys{keyAgent: &apikeys.Record{ID: "key_agent", Owner: "ci-bot", Roles: []string{"agent"}}},
		Mapper:     mapper,
		LLMMetrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, m
}

// missingBodyMsg is the client message of a missing_body refusal.
const missingBodyMsg = "no request body reached the check: send the JSON body, and make the proxy forward it (Envoy with_request_body)"

// withMethod sets r's method.
func withMethod(m string, r *Request) *Request {
	r.Method = m
	return r
}

func bodyReq(path, cred, body string, headers ...string) *Request {
	r := req("POST", path, headers...)
	if strings.HasPrefix(cred, "ek_") {
		r.Headers["x-api-key"] = cred
	} else if cred != "" {
		r.Headers["authorization"] = "Bearer " + cred
	}
	if _, ok := r.Headers["content-type"]; !ok && body != "" {
		r.Headers["content-type"] = "application/json"
	}
	if body != "" {
		r.Body = []byte(body)
	}
	return r
}

// TestEngine_DecideLLM proves the model and tool allow-lists and the refusal
// of bodies that cannot be checked, decided after authentication and the
// route's require clause.
func TestEngine_DecideLLM(t *testing.T) {
	e, m := newLLMEngine(t)
	const chat = "/v1/chat/completions"
	tools := func(names ...string) string {
		var b strings.Builder
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"type":"function","function":{"name":"` + n + `"}}`)
		}
		return `,"tools":[` + b.String() + `]`
	}
	tests := []struct {
		name    string
		req     *Request
		code    Code
		reason  Reason
		model   string
		tools   []string
		message string
	}{
		{"team model allowed", bodyReq(chat, jwtTeam, `{"model":"mistral-7b-instruct","messages":[]}`), Allowed, ReasonAuthorized, "mistral-7b-instruct", nil, ""},
		{"team model allowed by glob", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-70b-instruct"}`), Allowed, ReasonAuthorized, "llama-3.1-70b-instruct", nil, ""},
		{"glob does not match another family", bodyReq(chat, jwtTeam, `{"model":"gpt-4o"}`), Forbidden, ReasonModelNotPermitted, "gpt-4o", nil, `model "gpt-4o" is not permitted`},
		{"agent model refused", bodyReq(chat, keyAgent, `{"model":"mistral-7b-instruct"}`), Forbidden, ReasonModelNotPermitted, "mistral-7b-instruct", nil, `model "mistral-7b-instruct" is not permitted`},
		{"agent permitted tool", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct"`+tools("search_docs")+`}`), Allowed, ReasonAuthorized, "llama-3.1-8b-instruct", []string{"search_docs"}, ""},
		{"agent first refused tool named", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct"`+tools("search_docs", "run_shell", "rm")+`}`), Forbidden, ReasonToolNotPermitted, "llama-3.1-8b-instruct", []string{"search_docs", "run_shell", "rm"}, `tool "run_shell" is not permitted`},
		{"team any tool", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"`+tools("run_shell")+`}`), Allowed, ReasonAuthorized, "llama-3.1-8b-instruct", []string{"run_shell"}, ""},
		// No body, no pass: a request that should carry a body but whose
		// body did not reach the check is refused, with or without a
		// model header (before issue 12 a tools-only route let it pass).
		{"POST without a body", bodyReq(chat, jwtTeam, ""), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"tools-only route: POST without a body", bodyReq("/v1/responses", keyAgent, ""), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"model header does not stand in for a missing body", bodyReq("/v1/embeddings", jwtTeam, "", "x-model", "llama-3.1-8b-instruct"), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"PUT without a body", withMethod("PUT", bodyReq("/v1/responses", keyAgent, "")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"unknown method without a body", withMethod("QUERY", bodyReq("/v1/responses", keyAgent, "")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"GET declaring a JSON body", withMethod("GET", bodyReq("/v1/responses", keyAgent, "", "content-type", "application/json")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"GET declaring a content-length", withMethod("GET", bodyReq("/v1/responses", keyAgent, "", "content-length", "42")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"GET with a malformed content-length", withMethod("GET", bodyReq("/v1/responses", keyAgent, "", "content-length", "x")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"DELETE declaring a chunked body", withMethod("DELETE", bodyReq("/v1/responses", keyAgent, "", "transfer-encoding", "chunked")), InvalidRequest, ReasonMissingBody, "", nil, missingBodyMsg},
		{"GET without any sign of a body passes a tools-only route", withMethod("GET", bodyReq("/v1/responses", keyAgent, "", "content-length", "0")), Allowed, ReasonAuthorized, "", nil, ""},
		{"GET: the model from a trusted header", withMethod("GET", bodyReq("/v1/embeddings", jwtTeam, "", "x-model", "llama-3.1-8b-instruct")), Allowed, ReasonAuthorized, "llama-3.1-8b-instruct", nil, ""},
		{"GET without body or header names no model", withMethod("GET", bodyReq("/v1/embeddings", jwtTeam, "")), InvalidRequest, ReasonMissingModel, "", nil, "the request names no model"},
		// Keys an upstream reads as a policy key (issue 12).
		{"model key in another case", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct","Model":"mistral-7b-instruct"}`), InvalidRequest, ReasonMalformedBody, "", nil,
			`the request body is not valid JSON for this API: request body: key "Model" could be read as "model": spell it exactly "model"`},
		{"tools key with a long s", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct","toolſ":[{"type":"function","function":{"name":"run_shell"}}]}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"legacy functions key in another case", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct","Functions":[{"name":"run_shell"}]}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"function name key in another case", bodyReq(chat, keyAgent, `{"model":"llama-3.1-8b-instruct","tools":[{"type":"function","function":{"name":"search_docs","Name":"run_shell"}}]}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"not json", bodyReq(chat, jwtTeam, `model=llama`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"truncated json", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"duplicate model key", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct","model":"gpt-4o"}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"model of the wrong type", bodyReq(chat, jwtTeam, `{"model":["llama-3.1-8b-instruct"]}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"nested too deep", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct","x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), InvalidRequest, ReasonMalformedBody, "", nil, ""},
		{"body too large", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct","p":"`+strings.Repeat("x", 5000)+`"}`), InvalidRequest, ReasonBodyTooLarge, "", nil, ""},
		{"not declared as json", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, "content-type", "text/plain"), InvalidRequest, ReasonContentType, "", nil, ""},
		{"partial body", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, PartialBodyHeader, "true"), InvalidRequest, ReasonPartialBody, "", nil, ""},
		{"partial body garbage value fails closed", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, PartialBodyHeader, "yes"), InvalidRequest, ReasonPartialBody, "", nil, ""},
		{"complete body marked by envoy", bodyReq(chat, jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, PartialBodyHeader, "false"), Allowed, ReasonAuthorized, "llama-3.1-8b-instruct", nil, ""},
		{"header and body agree", bodyReq("/v1/embeddings", jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, "x-model", "llama-3.1-8b-instruct"), Allowed, ReasonAuthorized, "llama-3.1-8b-instruct", nil, ""},
		{"header and body disagree", bodyReq("/v1/embeddings", jwtTeam, `{"model":"llama-3.1-8b-instruct"}`, "x-model", "mistral-7b-instruct"), InvalidRequest, ReasonModelMismatch, "", nil, ""},
		{"model header ignored without model_header", bodyReq(chat, jwtTeam, `{"messages":[]}`, "x-model", "llama-3.1-8b-instruct"), InvalidRequest, ReasonMissingModel, "", nil, ""},
		{"require.model alone needs a credential", bodyReq("/v1/embeddings", "", `{"model":"llama-3.1-8b-instruct"}`), MissingCredentials, ReasonNoCredentials, "", nil, ""},
		{"require clause decides before the body", bodyReq(chat, jwtBob, `not json`), Forbidden, ReasonInsufficientPerms, "", nil, ""},
		{"require.model alone: viewer without model permission", bodyReq("/v1/embeddings", jwtBob, `{"model":"llama-3.1-8b-instruct"}`), Forbidden, ReasonModelNotPermitted, "llama-3.1-8b-instruct", nil, `model "llama-3.1-8b-instruct" is not permitted`},
		{"tools alone: no tools passes", bodyReq("/v1/responses", keyAgent, `{"model":"anything","input":"hi"}`), Allowed, ReasonAuthorized, "anything", nil, ""},
		{"tools alone: built-in tool by type", bodyReq("/v1/responses", keyAgent, `{"model":"x","tools":[{"type":"web_search_preview"}]}`), Forbidden, ReasonToolNotPermitted, "x", []string{"web_search_preview"}, `tool "web_search_preview" is not permitted`},
	}
	want := map[Reason]float64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(context.Background(), tt.req)
			got := struct {
				Code   string
				Reason Reason
				Model  string
				Tools  []string
			}{d.Code.String(), d.Reason, d.Model, d.Tools}
			wantD := struct {
				Code   string
				Reason Reason
				Model  string
				Tools  []string
			}{tt.code.String(), tt.reason, tt.model, tt.tools}
			if diff := cmp.Diff(wantD, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if tt.message != "" && d.Message != tt.message {
				t.Errorf("message = %q, want %q", d.Message, tt.message)
			}
			if tt.code == InvalidRequest && d.Message == "" {
				t.Error("an invalid_request denial carries no message")
			}
			if d.Code == Allowed && len(d.Set) == 0 {
				t.Error("allowed without identity headers")
			}
			if d.Code != Allowed && d.Set != nil {
				t.Error("denied decision sets identity headers")
			}
		})
		if _, ok := reasonCodes[tt.reason]; tt.code != Allowed && ok && (tt.code == InvalidRequest || tt.reason == ReasonModelNotPermitted || tt.reason == ReasonToolNotPermitted) {
			want[tt.reason]++
		}
	}
	for i, r := range llmReasons {
		if got := testutil.ToFloat64(m.denials[i]); got != want[r] {
			t.Errorf("extauthz_llm_denials_total{reason=%q} = %v, want %v", r, got, want[r])
		}
	}
}

// TestDenials_ForDecision proves that a denial with a message of its own or
// response headers is built for the request, and every other denial is the
// prebuilt one.
func TestDenials_ForDecision(t *testing.T) {
	ds := buildDenials()
	plain := &Decision{Code: Forbidden, Reason: ReasonInsufficientPerms}
	if got := ds.forDecision(plain); got != ds.get(ReasonInsufficientPerms) {
		t.Error("a plain denial is not the prebuilt one")
	}
	d := &Decision{Code: Forbidden, Reason: ReasonModelNotPermitted, Model: "gpt-4o", Message: `model "gpt-4o" is not permitted`}
	dn := ds.forDecision(d)
	if want := `{"error":"forbidden","message":"model \"gpt-4o\" is not permitted"}`; string(dn.body) != want {
		t.Errorf("body = %s, want %s", dn.body, want)
	}
	// The model in its gRPC metadata: envoyauthz's TestServer_DenialCarriesTheModel.
	rl := &Decision{Code: RateLimited, Reason: ReasonRateLimited, ResponseHeaders: []Header{
		{"ratelimit-limit", "3"}, {"ratelimit-remaining", "0"}, {"ratelimit-reset", "60"}, {"retry-after", "20"}}}
	dn = ds.forDecision(rl)
	wantH := []Header{{"content-type", "application/json"}, {"ratelimit-limit", "3"}, {"ratelimit-remaining", "0"}, {"ratelimit-reset", "60"}, {"retry-after", "20"}}
	if diff := cmp.Diff(wantH, dn.headers); diff != "" {
		t.Errorf("429 headers (-want +got):\n%s", diff)
	}
	inv := ds.get(ReasonMalformedBody)
	// Its gRPC status (INVALID_ARGUMENT): envoyauthz's TestStatusCode.
	if inv.code.HTTPStatus() != 400 || setsHeader(inv.headers, "www-authenticate") {
		t.Errorf("invalid_request denial: status %d, headers %v", inv.code.HTTPStatus(), inv.headers)
	}
}

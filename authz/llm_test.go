package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/rolemap"
)

const jsonCT = "application/json"

func TestParseLLMRequest(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name    string
		in      LLMInput
		lim     LLMLimits
		want    LLMRequest
		wantErr error  // nil: success
		msg     string // the client message, when wantErr is set
	}{
		// The APIs.
		{name: "chat completions with tools", in: LLMInput{ContentType: jsonCT, Body: []byte(`{
			"messages": [{"role": "user", "content": "weather?"}],
			"model": "llama-3.1-8b",
			"tools": [
				{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
				{"type": "function", "function": {"name": "search", "description": "web"}}
			],
			"tool_choice": "auto", "stream": true, "temperature": 0.2}`)},
			want: LLMRequest{Model: "llama-3.1-8b", Tools: []string{"get_weather", "search"}}},
		{name: "legacy functions", in: LLMInput{Body: []byte(`{"model":"gpt-3.5-turbo","functions":[{"name":"f1","parameters":{}},{"name":"f2"}]}`)},
			want: LLMRequest{Model: "gpt-3.5-turbo", Tools: []string{"f1", "f2"}}},
		{name: "completions", in: LLMInput{ContentType: jsonCT, Body: []byte(`{"model":"mistral-7b","prompt":["a","b"],"max_tokens":5}`)},
			want: LLMRequest{Model: "mistral-7b"}},
		{name: "embeddings", in: LLMInput{ContentType: jsonCT, Body: []byte(`{"input":[[1,2,3]],"model":"nomic-embed-text"}`)},
			want: LLMRequest{Model: "nomic-embed-text"}},
		{name: "responses API: flat function and built-in tools", in: LLMInput{ContentType: jsonCT, Body: []byte(`{"model":"gpt-4o","input":"hi","tools":[
			{"type":"function","name":"get_weather","parameters":{}},{"type":"web_search_preview"},{"type":"custom","custom":{"name":"sql"}}]}`)},
			want: LLMRequest{Model: "gpt-4o", Tools: []string{"get_weather", "web_search_preview", "sql"}}},
		{name: "anthropic-style tools", in: LLMInput{ContentType: jsonCT, Body: []byte(`{"model":"claude","tools":[{"name":"calc","input_schema":{}},{"type":"web_search_20250305","name":"web_search"}]}`)},
			want: LLMRequest{Model: "claude", Tools: []string{"calc", "web_search"}}},
		{name: "a tool declared twice is listed once", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"a"}}],"functions":[{"name":"a"},{"name":"b"}]}`)},
			want: LLMRequest{Model: "m", Tools: []string{"a", "b"}}},
		{name: "null model and tools name nothing", in: LLMInput{Body: []byte(`{"model":null,"tools":null,"functions":null}`)},
			want: LLMRequest{}},
		{name: "no body", in: LLMInput{ContentType: "text/plain"}, want: LLMRequest{}},
		{name: "keys that are not policy keys may look alike", in: LLMInput{Body: []byte(`{"model":"ok","Models":1,"modelo":2,"tool_choice":"auto","Tool_Choice":"x","FUNCTION_CALL":{"name":"x"}}`)},
			want: LLMRequest{Model: "ok"}},
		{name: "unicode model name", in: LLMInput{Body: []byte(`{"model":"qwen-中文-\u00e9"}`)},
			want: LLMRequest{Model: "qwen-中文-é"}},
		{name: "escaped key is the same key", in: LLMInput{Body: []byte(`{"mod\u0065l":"a"}`)},
			want: LLMRequest{Model: "a"}},
		{name: "brackets in strings do not count as nesting", in: LLMInput{Body: []byte(`{"model":"m","x":"` + deep(100) + `","y":"\"` + deep(100) + `\\"}`)},
			want: LLMRequest{Model: "m"}},
		{name: "nesting at the limit", in: LLMInput{Body: []byte(`{"model":"m","x":` + deep(63) + `}`)},
			want: LLMRequest{Model: "m"}},
		{name: "json content types", in: LLMInput{ContentType: `Application/JSON; charset="UTF-8"`, Body: []byte(`{"model":"m"}`)},
			want: LLMRequest{Model: "m"}},
		{name: "+json content type", in: LLMInput{ContentType: "application/vnd.openai+json", Body: []byte(`{"model":"m"}`)},
			want: LLMRequest{Model: "m"}},

		// The model header.
		{name: "model from the header without a body", in: LLMInput{HasModelHeader: true, ModelHeader: "llama-3"},
			want: LLMRequest{Model: "llama-3"}},
		{name: "header and body agree", in: LLMInput{HasModelHeader: true, ModelHeader: "llama-3", Body: []byte(`{"model":"llama-3"}`)},
			want: LLMRequest{Model: "llama-3"}},
		{name: "header fills in a body without model", in: LLMInput{HasModelHeader: true, ModelHeader: "llama-3", Body: []byte(`{"prompt":"x"}`)},
			want: LLMRequest{Model: "llama-3"}},
		{name: "header and body disagree", in: LLMInput{HasModelHeader: true, ModelHeader: "llama-3", Body: []byte(`{"model":"gpt-4o"}`)},
			wantErr: ErrModelMismatch, msg: "the model header and the body name different models"},
		{name: "empty header", in: LLMInput{HasModelHeader: true, Body: []byte(`{"model":"m"}`)},
			wantErr: ErrInvalidRequest, msg: "model header: must not be empty"},

		// Bodies that cannot be checked.
		{name: "partial body", in: LLMInput{Partial: true, Body: []byte(`{"model":"m"}`)},
			wantErr: ErrPartialBody, msg: "the request body was truncated by the proxy: raise max_request_bytes in the proxy's with_request_body and turn allow_partial_message off"},
		{name: "huge body", in: LLMInput{Body: []byte(`{"model":"m","x":"` + strings.Repeat("a", 2000) + `"}`)}, lim: LLMLimits{MaxBytes: 1024},
			wantErr: ErrBodyTooLarge, msg: "the request body is too large to check: it is larger than 1024 bytes"},
		{name: "not JSON", in: LLMInput{Body: []byte(`model=llama-3`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: syntax error at byte 1"},
		{name: "form content type", in: LLMInput{ContentType: "application/x-www-form-urlencoded", Body: []byte(`{"model":"m"}`)},
			wantErr: ErrContentType, msg: "the content-type must be application/json"},
		{name: "non-UTF-8 charset", in: LLMInput{ContentType: "application/json; charset=latin1", Body: []byte(`{"model":"m"}`)},
			wantErr: ErrContentType},
		{name: "truncated", in: LLMInput{Body: []byte(`{"model":"llama-3","messages":[{"role":"user","content":"hi`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: it ends too early (truncated)"},
		{name: "truncated after the model", in: LLMInput{Body: []byte(`{"model":"llama-3"`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: it ends too early (truncated)"},
		{name: "two JSON values", in: LLMInput{Body: []byte(`{"model":"a"} {"model":"b"}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: data after the JSON object"},
		{name: "top-level array", in: LLMInput{Body: []byte(`[{"model":"a"}]`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: request body: must be a JSON object"},
		{name: "nested too deep", in: LLMInput{Body: []byte(`{"model":"m","messages":` + deep(64) + `}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: it is nested more than 64 levels deep"},
		{name: "nested far too deep", in: LLMInput{Body: []byte(`{"model":"m","x":` + strings.Repeat(`{"a":`, 100000))},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: it is nested more than 64 levels deep"},
		{name: "invalid UTF-8", in: LLMInput{Body: []byte("{\"model\":\"llama\xff\"}")},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: it is not UTF-8"},
		{name: "byte order mark", in: LLMInput{Body: []byte("\ufeff{\"model\":\"m\"}")},
			wantErr: ErrMalformedBody},

		// Duplicate keys.
		{name: "duplicate model", in: LLMInput{Body: []byte(`{"model":"allowed","messages":[],"model":"forbidden"}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: request body: duplicate key "model"`},
		{name: "duplicate model spelled with an escape", in: LLMInput{Body: []byte(`{"model":"allowed","mod\u0065l":"forbidden"}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: request body: duplicate key "model"`},
		{name: "duplicate tools", in: LLMInput{Body: []byte(`{"model":"m","tools":[],"tools":[{"type":"function","function":{"name":"rm"}}]}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: request body: duplicate key "tools"`},
		{name: "duplicate name inside a function", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":{"name":"ok","name":"rm"}}]}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: tools[0].function: duplicate key "name"`},
		{name: "duplicate function inside a tool", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":{"name":"ok"},"function":{"name":"rm"}}]}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: tools[0]: duplicate key "function"`},

		// Wrong types and names.
		{name: "model is a number", in: LLMInput{Body: []byte(`{"model":42}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must be a string"},
		{name: "model is an array", in: LLMInput{Body: []byte(`{"model":["a","b"]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must be a string"},
		{name: "model is an object", in: LLMInput{Body: []byte(`{"model":{"name":"a"}}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must be a string"},
		{name: "empty model", in: LLMInput{Body: []byte(`{"model":""}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must not be empty"},
		{name: "model with a NUL", in: LLMInput{Body: []byte(`{"model":"llama-3\u0000x"}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must not contain control characters"},
		{name: "model with a lone surrogate", in: LLMInput{Body: []byte(`{"model":"llama-3\ud800"}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must not contain control characters"},
		{name: "model too long", in: LLMInput{Body: []byte(`{"model":"` + strings.Repeat("m", 257) + `"}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: model: must be at most 256 bytes"},
		{name: "tools is an object", in: LLMInput{Body: []byte(`{"model":"m","tools":{"type":"function"}}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools: must be an array"},
		{name: "tool is a string", in: LLMInput{Body: []byte(`{"model":"m","tools":["get_weather"]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[0]: must be a JSON object"},
		{name: "function is a string", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":"get_weather"}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[0].function: must be a JSON object"},
		{name: "function name is a number", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":{"name":7}}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[0].function.name: must be a string"},
		{name: "tool without a name", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","function":{"name":"ok"}},{"type":"function","function":{"description":"nameless"}}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[1]: missing name"},
		{name: "tool without anything", in: LLMInput{Body: []byte(`{"model":"m","tools":[{}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[0]: missing name"},
		{name: "tool with two names", in: LLMInput{Body: []byte(`{"model":"m","tools":[{"type":"function","name":"ok","function":{"name":"rm"}}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: tools[0]: names two different tools"},
		{name: "legacy function without a name", in: LLMInput{Body: []byte(`{"model":"m","functions":[{"parameters":{}}]}`)},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: functions[0]: missing name"},
		{name: "too many tools", in: LLMInput{Body: []byte(`{"model":"m","functions":[{"name":"a"},{"name":"b"},{"name":"c"}]}`)}, lim: LLMLimits{MaxTools: 2},
			wantErr: ErrMalformedBody, msg: "the request body is not valid JSON for this API: functions[2]: more than 2 tools"},
		{name: "long duplicate key is shortened in the message", in: LLMInput{Body: []byte(`{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`)},
			wantErr: ErrMalformedBody, msg: `the request body is not valid JSON for this API: request body: duplicate key "` + strings.Repeat("k", 64) + `..."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLLMRequest(tt.in, tt.lim)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseLLMRequest: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ParseLLMRequest (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("ParseLLMRequest error = %v, want %v", err, tt.wantErr)
			}
			if tt.msg != "" && clientMessage(err) != tt.msg {
				t.Errorf("client message = %q, want %q", clientMessage(err), tt.msg)
			}
			if diff := cmp.Diff(LLMRequest{}, got); diff != "" {
				t.Errorf("a refused body still returned a request: %s", diff)
			}
		})
	}
}

func TestCheckLLM(t *testing.T) {
	mapper, err := rolemap.New(rolemap.Mapping{}, map[string][]string{
		"team-a": {"chat:invoke", "model:llama-3*", "model:mistral-7b", "tool:get_weather"},
		"agent":  {"model:llama-3-8b", "tool:*"},
		"admin":  {"*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	permits := func(roles ...string) func(string) bool {
		return func(p string) bool { return mapper.Permits(roles, []string{p}) }
	}
	chat := func(model string, tools ...string) LLMInput {
		ts := make([]map[string]any, len(tools))
		for i, n := range tools {
			ts[i] = map[string]any{"type": "function", "function": map[string]any{"name": n}}
		}
		b, _ := json.Marshal(map[string]any{"model": model, "messages": []any{}, "tools": ts})
		return LLMInput{Body: b, ContentType: jsonCT}
	}
	both := LLMRoute{RequireModel: true, RequireTools: true}
	tests := []struct {
		name    string
		route   LLMRoute
		in      LLMInput
		permits func(string) bool
		reason  Reason
		message string
	}{
		{name: "model granted by a glob", route: both, in: chat("llama-3.1-70b", "get_weather"), permits: permits("team-a")},
		{name: "model granted exactly", route: both, in: chat("mistral-7b"), permits: permits("team-a")},
		{name: "model refused", route: both, in: chat("gpt-4o"), permits: permits("team-a"),
			reason: ReasonModelNotPermitted, message: `model "gpt-4o" is not permitted`},
		{name: "first refused tool is named", route: both, in: chat("llama-3-8b", "get_weather", "run_shell", "rm_rf"), permits: permits("team-a"),
			reason: ReasonToolNotPermitted, message: `tool "run_shell" is not permitted`},
		{name: "tool glob", route: both, in: chat("llama-3-8b", "run_shell"), permits: permits("agent")},
		{name: "model checked before tools", route: both, in: chat("mistral-7b", "run_shell"), permits: permits("agent"),
			reason: ReasonModelNotPermitted, message: `model "mistral-7b" is not permitted`},
		{name: "wildcard role", route: both, in: chat("anything", "anything"), permits: permits("admin")},
		{name: "tools not required: any tool passes", route: LLMRoute{RequireModel: true}, in: chat("llama-3-8b", "run_shell"), permits: permits("team-a")},
		{name: "model not required: any model passes", route: LLMRoute{RequireTools: true}, in: chat("gpt-4o", "get_weather"), permits: permits("team-a")},
		{name: "no model", route: both, in: LLMInput{Body: []byte(`{"prompt":"x"}`)}, permits: permits("admin"),
			reason: ReasonMissingModel, message: "the request names no model"},
		{name: "no body and none expected", route: both, in: LLMInput{}, permits: permits("admin"),
			reason: ReasonMissingModel, message: "the request names no model"},
		{name: "tools only, no body and none expected", route: LLMRoute{RequireTools: true}, in: LLMInput{}, permits: permits("team-a")},
		{name: "tools only, body expected but missing", route: LLMRoute{RequireTools: true}, in: LLMInput{BodyExpected: true}, permits: permits("admin"),
			reason: ReasonMissingBody, message: "no request body reached the check: send the JSON body, and make the proxy forward it (Envoy with_request_body)"},
		{name: "model header does not replace an expected body", route: LLMRoute{RequireModel: true, ModelHeader: "x-model"}, in: LLMInput{BodyExpected: true, HasModelHeader: true, ModelHeader: "llama-3-8b"}, permits: permits("admin"),
			reason: ReasonMissingBody},
		{name: "expected body present", route: both, in: LLMInput{BodyExpected: true, Body: []byte(`{"model":"llama-3-8b"}`)}, permits: permits("team-a")},
		{name: "unusable body", route: both, in: LLMInput{Body: []byte(`{"model":"llama-3-8b"`)}, permits: permits("admin"),
			reason: ReasonMalformedBody, message: "the request body is not valid JSON for this API: it ends too early (truncated)"},
		{name: "partial body", route: both, in: LLMInput{Body: []byte(`{"model":"llama-3-8b"}`), Partial: true}, permits: permits("admin"),
			reason: ReasonPartialBody},
		{name: "model header", route: LLMRoute{RequireModel: true, ModelHeader: "x-model"}, in: LLMInput{HasModelHeader: true, ModelHeader: "gpt-4o"}, permits: permits("team-a"),
			reason: ReasonModelNotPermitted, message: `model "gpt-4o" is not permitted`},
		{name: "model header ignored when the route has none", route: LLMRoute{RequireModel: true}, in: LLMInput{HasModelHeader: true, ModelHeader: "gpt-4o", Body: []byte(`{"model":"mistral-7b"}`)}, permits: permits("team-a")},
		{name: "header and body disagree", route: LLMRoute{RequireModel: true, ModelHeader: "x-model"}, in: LLMInput{HasModelHeader: true, ModelHeader: "mistral-7b", Body: []byte(`{"model":"gpt-4o"}`)}, permits: permits("admin"),
			reason: ReasonModelMismatch},
		{name: "policy off: the body is not read", route: LLMRoute{}, in: LLMInput{Body: []byte(`garbage`)}, permits: permits()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CheckLLM(tt.route, tt.in, LLMLimits{}, tt.permits)
			if c.Reason != tt.reason {
				t.Fatalf("reason = %q (%v), want %q", c.Reason, c.Err, tt.reason)
			}
			if tt.message != "" && c.Message != tt.message {
				t.Errorf("message = %q, want %q", c.Message, tt.message)
			}
			if c.Reason == "" && (c.Message != "" || c.Err != nil) {
				t.Errorf("allowed with message %q, err %v", c.Message, c.Err)
			}
		})
	}
}

func TestValidateLLMRoute(t *testing.T) {
	tests := []struct {
		name   string
		public bool
		p      LLMRoute
		want   []string
	}{
		{name: "valid", p: LLMRoute{RequireModel: true, RequireTools: true, ModelHeader: "x-model", ModelHeaderSetBy: "envoy"}},
		{name: "model header trusted without saying who sets it", p: LLMRoute{RequireModel: true, ModelHeader: "x-model"}, want: []string{
			"routes[1].model_header_set_by: required with model_header: name the proxy that sets x-model on every request, overwriting what the client sent (e.g. model_header_set_by: envoy), or remove model_header: a header the client sets is not trusted",
		}},
		{name: "set_by without a model header", p: LLMRoute{RequireModel: true, ModelHeaderSetBy: "envoy"}, want: []string{
			"routes[1].model_header_set_by: is only read with model_header",
		}},
		{name: "set_by not a proxy name", p: LLMRoute{RequireModel: true, ModelHeader: "x-model", ModelHeaderSetBy: "the client"}, want: []string{
			`routes[1].model_header_set_by: "the client" must name a proxy in lower case, e.g. envoy`,
		}},
		{name: "public", public: true, p: LLMRoute{RequireTools: true}, want: []string{
			"routes[1]: a public route has no identity to check models or tools against: remove require.model, require.tools and model_header, or the public flag",
		}},
		{name: "model header without require.model, bad name", p: LLMRoute{ModelHeader: "X-Model", ModelHeaderSetBy: "envoy"}, want: []string{
			"routes[1].model_header: is only read with require.model: true",
			`routes[1].model_header: "X-Model" must be a lower-case header name that is not a credential, content or x-envoy- header, e.g. x-model`,
		}},
		{name: "model header may not be an Envoy header", p: LLMRoute{RequireModel: true, ModelHeader: PartialBodyHeader, ModelHeaderSetBy: "envoy"}, want: []string{
			`routes[1].model_header: "x-envoy-auth-partial-body" must be a lower-case header name that is not a credential, content or x-envoy- header, e.g. x-model`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := validateLLMRoute("routes[1]", tt.public, tt.p); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLLMMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewLLMMetrics(reg)
	m.Count(ReasonToolNotPermitted)
	m.Count(ReasonAuthorized) // not an LLM reason: ignored
	problems, err := testutil.CollectAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	want := `
# HELP extauthz_llm_denials_total Requests refused by the LLM policy (require.model, require.tools), by reason.
# TYPE extauthz_llm_denials_total counter
extauthz_llm_denials_total{reason="body_too_large"} 0
extauthz_llm_denials_total{reason="malformed_body"} 0
extauthz_llm_denials_total{reason="missing_body"} 0
extauthz_llm_denials_total{reason="missing_model"} 0
extauthz_llm_denials_total{reason="model_mismatch"} 0
extauthz_llm_denials_total{reason="model_not_permitted"} 0
extauthz_llm_denials_total{reason="partial_body"} 0
extauthz_llm_denials_total{reason="tool_not_permitted"} 1
extauthz_llm_denials_total{reason="unsupported_content_type"} 0
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// FuzzLLMBody: the parser never panics; every error is an invalid_request
// with a client message free of control characters; on success the body is
// valid JSON, the model is what a second, independent decode (into a map)
// reads under the exact key "model", and every name is a clean, unique
// name.
func FuzzLLMBody(f *testing.F) {
	for _, s := range []string{
		`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[],"model":"m","tools":[{"type":"function","function":{"name":"get_weather"}}]}`,
		`{"model":"m","functions":[{"name":"f"}]}`,
		`{"model":"m","tools":[{"type":"web_search_preview"},{"name":"calc"},{"type":"custom","custom":{"name":"sql"}}]}`,
		`{"model":"a","model":"b"}`,      // duplicate key
		`{"mod\u0065l":"a","model":"b"}`, // duplicate key behind an escape
		`{"model":"a"}{"model":"b"}`,     // two values
		`{"model":"a"`,                   // truncated
		`{"model":42}`,                   // wrong type
		`{"model":"\ud800"}`,             // lone surrogate
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		`{"x":"\"[[[","model":"m"}`, // brackets in a string with an escaped quote
		"",
	} {
		f.Add([]byte(s), "application/json", false)
	}
	f.Add([]byte(`{"model":"m"}`), "text/plain", false)
	f.Add([]byte(`{"model":"m"}`), "application/json", true)
	f.Fuzz(func(t *testing.T, body []byte, contentType string, partial bool) {
		req, err := ParseLLMRequest(LLMInput{Body: body, ContentType: contentType, Partial: partial}, LLMLimits{MaxBytes: 1 << 16})
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v is not an ErrInvalidRequest", err)
			}
			msg := clientMessage(err)
			if msg == "" || strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("client message %q is empty or has control characters", msg)
			}
			if c := llmErrorReason(err); !bytes.Contains([]byte("partial_body body_too_large unsupported_content_type malformed_body"), []byte(c)) {
				t.Fatalf("error %v maps to reason %q", err, c)
			}
			return
		}
		if partial {
			t.Fatalf("a partial body was accepted")
		}
		if len(body) == 0 {
			if req.Model != "" || req.Tools != nil {
				t.Fatalf("no body but %+v", req)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("accepted %q, which is not an object: %v", body, err)
		}
		var want string
		if raw, ok := top["model"]; ok {
			_ = json.Unmarshal(raw, &want) // null leaves ""
		}
		if req.Model != want {
			t.Fatalf("model %q, but a map decode reads %q", req.Model, want)
		}
		seen := map[string]bool{}
		for _, name := range append([]string{req.Model}, req.Tools...) {
			if name == req.Model && name == "" {
				continue
			}
			if err := checkLLMName(name); err != nil {
				t.Fatalf("name %q: %v", name, err)
			}
		}
		for _, tool := range req.Tools {
			if seen[tool] {
				t.Fatalf("tool %q listed twice", tool)
			}
			seen[tool] = true
		}
	})
}

// goChatRequest is how a Go upstream such as Ollama reads a body: struct
// fields without tags, so encoding/json matches keys exactly or
// case-insensitively (Unicode simple folding), the last match winning.
type goChatRequest struct {
	Model string
	Tools []struct {
		Type     string
		Name     string
		Function *struct{ Name string }
		Custom   *struct{ Name string }
	}
	Functions []struct{ Name string }
}

// FuzzLLMBodyDifferential: for every body extauthz accepts, encoding/json
// decoding into a struct (goChatRequest) succeeds and reads the same model
// and the same set of tool names (named as extauthz names them: function,
// name or custom, else a built-in tool's type). A body where they differ is
// a body on which the upstream runs something extauthz did not check.
func FuzzLLMBodyDifferential(f *testing.F) {
	for _, s := range []string{
		`{"model":"llama-3.1-8b-instruct","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"llama-3.1-8b-instruct","Model":"mistral-7b-instruct"}`,
		`{"Model":"mistral-7b-instruct","model":"llama-3.1-8b-instruct"}`,
		`{"model":"llama","\u004dodel":"mistral"}`,
		`{"model":"m","tools":[],"Tools":[{"type":"function","function":{"name":"run_shell"}}]}`,
		`{"model":"m","toolſ":[{"type":"function","function":{"name":"run_shell"}}]}`,
		`{"model":"m","Functions":[{"name":"run_shell"}]}`,
		`{"model":"m","functions":[{"name":"search_docs","NAME":"run_shell"}]}`,
		`{"model":"m","tools":[{"type":"function","function":{"name":"search_docs","Name":"run_shell"}}]}`,
		`{"model":"m","tools":[{"type":"function","function":{"name":"a"},"Function":{"name":"b"}}]}`,
		`{"model":"m","tools":[{"type":"web_search_preview"},{"type":"function","name":"calc"},{"type":"custom","custom":{"name":"sql"}}]}`,
		`{"model":"m","tools":[{"TYPE":"code_interpreter"}]}`,
		`{"model":"m","tools":[{"type":"custom","cuſtom":{"name":"x"}}]}`,
		`{"mo\u0064el":"m","tool\u017f":null,"\u212a":1}`,
		`{"model":null,"tools":null,"functions":null,"tool_choice":"auto","Tool_Choice":{"name":"x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseLLMRequest(LLMInput{Body: body, ContentType: jsonCT}, LLMLimits{MaxBytes: 1 << 16})
		if err != nil || len(body) == 0 {
			return
		}
		var g goChatRequest
		if err := json.Unmarshal(body, &g); err != nil {
			t.Fatalf("extauthz accepted %q, encoding/json refuses it: %v", body, err)
		}
		if g.Model != req.Model {
			t.Fatalf("body %q: extauthz reads model %q, encoding/json %q", body, req.Model, g.Model)
		}
		var goTools []string
		for _, tool := range g.Tools {
			var fn, custom string
			if tool.Function != nil {
				fn = tool.Function.Name
			}
			if tool.Custom != nil {
				custom = tool.Custom.Name
			}
			name := ""
			for _, n := range []string{fn, tool.Name, custom} {
				if n != "" && name == "" {
					name = n
				} else if n != "" && n != name {
					t.Fatalf("body %q: extauthz accepted a tool with two names", body)
				}
			}
			if name == "" {
				name = tool.Type
			}
			goTools = append(goTools, name)
		}
		for _, fn := range g.Functions {
			goTools = append(goTools, fn.Name)
		}
		slices.Sort(goTools)
		goTools = slices.Compact(goTools)
		got := slices.Sorted(slices.Values(req.Tools))
		if len(goTools) == 0 {
			goTools = nil
		}
		if !slices.Equal(got, goTools) {
			t.Fatalf("body %q: extauthz reads tools %q, encoding/json %q", body, got, goTools)
		}
	})
}

func BenchmarkParseLLMRequest(b *testing.B) {
	small := []byte(`{"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"What is the weather in Paris?"}],` +
		`"model":"llama-3.1-8b","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},` +
		`{"type":"function","function":{"name":"search","parameters":{"type":"object"}}}],"temperature":0.2,"stream":true}`)
	msgs := make([]map[string]string, 0, 1024)
	for len(msgs) < 1024 {
		msgs = append(msgs, map[string]string{"role": "user", "content": strings.Repeat("lorem ipsum dolor sit amet ", 38)})
	}
	large, _ := json.Marshal(map[string]any{"messages": msgs, "model": "llama-3.1-70b"})
	for _, bm := range []struct {
		name string
		body []byte
	}{{"chat_1KiB", small}, {"chat_1MiB", large}} {
		b.Run(bm.name, func(b *testing.B) {
			in := LLMInput{Body: bm.body, ContentType: jsonCT}
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.body)))
			for b.Loop() {
				if _, err := ParseLLMRequest(in, LLMLimits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseLLMRequest_KeyVariants: a key that some upstream parser reads as
// a policy key (Go's encoding/json folds case with Unicode simple folding
// and takes the last match; json/v2's case-insensitive mode also ignores
// '-' and '_'; .NET and Java compare upper- and lower-case forms; Python's
// casefold expands ligatures) but that is not spelled exactly so is refused
// in every object the policy reads, so that no upstream can read another
// model or tool list than extauthz.
func TestParseLLMRequest_KeyVariants(t *testing.T) {
	const prefix = "the request body is not valid JSON for this API: "
	tool := func(inner string) string { return `{"model":"llama","tools":[` + inner + `]}` }
	tests := []struct {
		name string
		body string
		msg  string
	}{
		// Top level: model, tools, functions.
		{"model in title case after model", `{"model":"llama-3.1-8b-instruct","Model":"mistral-7b-instruct"}`,
			`request body: key "Model" could be read as "model": spell it exactly "model"`},
		{"model in title case before model", `{"Model":"mistral-7b-instruct","model":"llama-3.1-8b-instruct"}`,
			`request body: key "Model" could be read as "model": spell it exactly "model"`},
		{"model in upper case alone", `{"MODEL":"mistral-7b-instruct"}`,
			`request body: key "MODEL" could be read as "model": spell it exactly "model"`},
		{"model behind an escape", `{"model":"llama","\u004dodel":"mistral"}`,
			`request body: key "Model" could be read as "model": spell it exactly "model"`},
		{"model with a delimiter (json/v2 case:ignore)", `{"model":"llama","mo_del":"mistral"}`,
			`request body: key "mo_del" could be read as "model": spell it exactly "model"`},
		{"model with a dash", `{"model":"llama","MO-DEL":"mistral"}`,
			`request body: key "MO-DEL" could be read as "model": spell it exactly "model"`},
		{"tools in title case", `{"model":"llama","tools":[],"Tools":[{"type":"function","function":{"name":"run_shell"}}]}`,
			`request body: key "Tools" could be read as "tools": spell it exactly "tools"`},
		{"tools with a long s (U+017F)", `{"model":"llama","toolſ":[{"type":"function","function":{"name":"run_shell"}}]}`,
			`request body: key "toolſ" could be read as "tools": spell it exactly "tools"`},
		{"tools with an escaped long s", `{"model":"llama","tool\u017f":[]}`,
			`request body: key "toolſ" could be read as "tools": spell it exactly "tools"`},
		{"functions in title case", `{"model":"llama","Functions":[{"name":"run_shell"}]}`,
			`request body: key "Functions" could be read as "functions": spell it exactly "functions"`},
		{"functions with a dotless i (.NET upper-cases it to I)", `{"model":"llama","functıons":[{"name":"run_shell"}]}`,
			`request body: key "functıons" could be read as "functions": spell it exactly "functions"`},
		{"functions with a dotted capital I", `{"model":"llama","FUNCTİONS":[{"name":"run_shell"}]}`,
			`request body: key "FUNCTİONS" could be read as "functions": spell it exactly "functions"`},

		// Each tool: type, name, function, custom.
		{"function name in title case", tool(`{"type":"function","function":{"name":"search_docs","Name":"run_shell"}}`),
			`tools[0].function: key "Name" could be read as "name": spell it exactly "name"`},
		{"function in title case", tool(`{"type":"function","function":{"name":"search_docs"},"Function":{"name":"run_shell"}}`),
			`tools[0]: key "Function" could be read as "function": spell it exactly "function"`},
		{"flat tool name in upper case", tool(`{"type":"function","name":"search_docs"},{"type":"function","NAME":"run_shell"}`),
			`tools[1]: key "NAME" could be read as "name": spell it exactly "name"`},
		{"tool type in title case", tool(`{"Type":"code_interpreter"}`),
			`tools[0]: key "Type" could be read as "type": spell it exactly "type"`},
		{"custom with a long s", tool(`{"type":"custom","custom":{"name":"sql"},"cuſtom":{"name":"run_shell"}}`),
			`tools[0]: key "cuſtom" could be read as "custom": spell it exactly "custom"`},
		{"custom with an st ligature (Python casefold)", tool(`{"type":"custom","cuﬆom":{"name":"run_shell"}}`),
			`tools[0]: key "cuﬆom" could be read as "custom": spell it exactly "custom"`},
		{"custom name in title case", tool(`{"type":"custom","custom":{"name":"sql","Name":"run_shell"}}`),
			`tools[0].custom: key "Name" could be read as "name": spell it exactly "name"`},

		// Each legacy function.
		{"legacy function name in title case", `{"model":"llama","functions":[{"name":"search_docs","Name":"run_shell"}]}`,
			`functions[0]: key "Name" could be read as "name": spell it exactly "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLLMRequest(LLMInput{Body: []byte(tt.body), ContentType: jsonCT}, LLMLimits{})
			if !errors.Is(err, ErrMalformedBody) {
				t.Fatalf("ParseLLMRequest = %+v, %v; want ErrMalformedBody", got, err)
			}
			if msg := clientMessage(err); msg != prefix+tt.msg {
				t.Errorf("client message = %q, want %q", msg, prefix+tt.msg)
			}
		})
	}
}

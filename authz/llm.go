package authz

import (
	"errors"
	"fmt"
	"strings"
)

// The LLM policy reads the requested model and the declared tools from an
// OpenAI-compatible JSON body (chat completions, completions, embeddings,
// responses; Ollama's /api/chat has the same shape) as Envoy forwards it
// with with_request_body. It parses only what it needs, with
// encoding/json's token stream, and refuses anything two JSON parsers could
// read differently: duplicate keys in the objects it reads (the upstream
// might take the other one), keys that some parser reads as a policy key
// but that are not spelled exactly so, invalid UTF-8 (Go would silently
// replace it), trailing data, and names with control characters.
//
// The objects it reads, and their policy keys: the body (model, tools,
// functions), each tools[] element (type, name, function, custom), each
// tools[].function and tools[].custom, and each functions[] element (name).
// Keys are compared after JSON unescaping ("\u004dodel" is "Model").
//
// The upstream parsers considered, and why none of them can read another
// model or tool list than extauthz from a body extauthz accepts:
//
//   - Go encoding/json decoding into a struct (Ollama, many Go gateways):
//     a key matches a field exactly or, failing that, case-insensitively
//     with Unicode simple folding (foldName: "ſ" matches "s", Kelvin "K"
//     matches "k"), and the last match wins. Every key that folds to a
//     policy key but is not spelled exactly so is refused (foldsToKey), and
//     so is an exact duplicate; what is left has one match per field.
//     Invalid UTF-8 (replaced by U+FFFD) is refused. encoding/json/v2 with
//     case-insensitive matching also ignores '-' and '_', so they are
//     ignored when comparing too ("mo_del" is refused). Go 1.26 builds
//     encoding/json on v1 code unless GOEXPERIMENT=jsonv2; both are covered.
//     FuzzLLMBodyDifferential checks this property against encoding/json.
//   - Python json (FastAPI, vLLM, LiteLLM): exact keys, the last duplicate
//     wins. Exact duplicates are refused. It also accepts NaN, Infinity and
//     lone surrogates, which encoding/json refuses, so extauthz refuses
//     those bodies too (a lone surrogate escape in a name is refused
//     explicitly, since Go would read it as U+FFFD).
//   - Pydantic (vLLM, FastAPI models): field names or aliases, matched
//     exactly, case-sensitively; duplicates never reach it (json.loads or
//     jiter keep the last). A model with validation_alias, AliasChoices or
//     populate_by_name reads other key names that extauthz cannot know:
//     docs/LLM_POLICY.md tells operators to check their upstream's schema.
//   - JavaScript JSON.parse: exact keys, the last duplicate wins; refused
//     duplicates leave nothing to disagree on.
//   - Rust serde_json into a struct: exact keys (unless the struct declares
//     aliases or rename_all), an error on a duplicate field; into a Value,
//     the last duplicate wins. Both agree once duplicates are refused.
//   - Parsers that compare keys case-insensitively in other ways (.NET
//     OrdinalIgnoreCase upper-cases "ı" to "I"; Java equalsIgnoreCase also
//     lower-cases "İ" to "i"; Python casefold expands "ß" to "ss" and the
//     ligatures "ﬁ", "ﬆ" to "fi", "st"): asciiFolds covers every such
//     mapping onto an ASCII letter, so those keys are refused as well.
//
// No parser considered applies compatibility normalisation (NFKC) to keys,
// so a fullwidth "ｍｏｄｅｌ" is another key to all of them.

// Defaults of LLMLimits.
const (
	// DefaultLLMMaxBodyBytes is the largest body the LLM policy parses (4
	// MiB, the default server.grpc_max_recv_bytes).
	DefaultLLMMaxBodyBytes = 4 << 20
	// DefaultLLMMaxDepth bounds the nesting of arrays and objects anywhere
	// in the body. Chat bodies with tool JSON schemas stay well below it.
	DefaultLLMMaxDepth = 64
	// DefaultLLMMaxTools bounds the tools a request may declare.
	DefaultLLMMaxTools = 512
	// maxLLMNameLen bounds a model or tool name.
	maxLLMNameLen = 256
)

// PartialBodyHeader is the header Envoy sets on the check request when
// with_request_body.allow_partial_message is on and the body was cut at
// max_request_bytes.
const PartialBodyHeader = "x-envoy-auth-partial-body"

// The permission prefixes of the LLM policy: a requested model needs
// "model:<name>", each declared tool "tool:<name>" (globs such as
// model:llama-3* in roles match them).
const (
	ModelPermissionPrefix = "model:"
	ToolPermissionPrefix  = "tool:"
)

// ErrInvalidRequest is the root of every error of the body parser: the
// request cannot be checked, and is refused with 400 invalid_request.
var ErrInvalidRequest = errors.New("invalid request")

// The body parser's errors; each matches ErrInvalidRequest with errors.Is.
var (
	// ErrPartialBody: the proxy cut the body (allow_partial_message), so a
	// later key could still change the model or add a tool.
	ErrPartialBody = fmt.Errorf("%w: the request body was truncated by the proxy", ErrInvalidRequest)
	// ErrBodyTooLarge: the body is larger than LLMLimits.MaxBytes.
	ErrBodyTooLarge = fmt.Errorf("%w: the request body is too large to check", ErrInvalidRequest)
	// ErrContentType: the body is not declared as JSON.
	ErrContentType = fmt.Errorf("%w: the content-type must be application/json", ErrInvalidRequest)
	// ErrMalformedBody: not JSON, truncated, trailing data, invalid UTF-8,
	// nested too deep, a duplicate key, or a field of the wrong type.
	ErrMalformedBody = fmt.Errorf("%w: the request body is not valid JSON for this API", ErrInvalidRequest)
	// ErrMissingModel: the route needs a model and none was sent.
	ErrMissingModel = fmt.Errorf("%w: the request names no model", ErrInvalidRequest)
	// ErrModelMismatch: the model header and the body name different models.
	ErrModelMismatch = fmt.Errorf("%w: the model header and the body name different models", ErrInvalidRequest)
	// ErrMissingBody: the request should carry a body (LLMInput.BodyExpected)
	// but none reached the check, so neither model nor tools can be read.
	ErrMissingBody = fmt.Errorf("%w: no request body reached the check: send the JSON body, and make the proxy forward it (Envoy with_request_body)", ErrInvalidRequest)
)

// The reasons of the LLM policy (the decision log's `reason`). All but
// model_not_permitted and tool_not_permitted (403 forbidden) are 400
// invalid_request.
const (
	ReasonPartialBody       Reason = "partial_body"
	ReasonBodyTooLarge      Reason = "body_too_large"
	ReasonContentType       Reason = "unsupported_content_type"
	ReasonMalformedBody     Reason = "malformed_body"
	ReasonMissingModel      Reason = "missing_model"
	ReasonModelMismatch     Reason = "model_mismatch"
	ReasonModelNotPermitted Reason = "model_not_permitted"
	ReasonToolNotPermitted  Reason = "tool_not_permitted"
	// ReasonMissingBody: the request should carry a body but the proxy
	// forwarded none (ErrMissingBody).
	ReasonMissingBody Reason = "missing_body"
)

const numLLMReasons = 9

// llmReasons lists the reasons in a fixed order (metric label values).
var llmReasons = [numLLMReasons]Reason{
	ReasonPartialBody, ReasonBodyTooLarge, ReasonContentType, ReasonMalformedBody,
	ReasonMissingModel, ReasonModelMismatch, ReasonModelNotPermitted, ReasonToolNotPermitted,
	ReasonMissingBody,
}

// LLMLimits bound the parser; zero fields mean the defaults.
type LLMLimits struct {
	MaxBytes int // default DefaultLLMMaxBodyBytes
	MaxDepth int // default DefaultLLMMaxDepth
	MaxTools int // default DefaultLLMMaxTools
}

func (l LLMLimits) withDefaults() LLMLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLLMMaxBodyBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLLMMaxDepth
	}
	if l.MaxTools <= 0 {
		l.MaxTools = DefaultLLMMaxTools
	}
	return l
}

// LLMInput is what the LLM policy reads from a check request.
type LLMInput struct {
	// Body is the request body: Envoy's raw_body (pack_as_bytes: true) or
	// body as bytes. Empty when the proxy sent none.
	Body []byte
	// BodyExpected is true when the original request carries a body (see
	// BodyExpected); an empty Body is then refused as ErrMissingBody.
	BodyExpected bool
	// ContentType is the request's content-type header.
	ContentType string
	// Partial is true when the proxy may have cut the body. Envoy sets
	// PartialBodyHeader to "true" or "false" with allow_partial_message;
	// fail closed and treat any value but "false" as partial (a client can
	// only make its own request fail that way).
	Partial bool
	// ModelHeader is the value of the route's model_header, and
	// HasModelHeader whether the request carried it.
	ModelHeader    string
	HasModelHeader bool
}

// LLMRequest is what an LLM request asks for.
type LLMRequest struct {
	// Model is the requested model, from the body's "model" or the model
	// header; "" when neither names one.
	Model string
	// Tools are the declared tool names in order of first appearance,
	// without duplicates: tools[].function.name (chat completions),
	// tools[].name (responses API, Anthropic-style tools), tools[].custom.name,
	// a built-in tool's type when it has no name, and functions[].name
	// (legacy function calling).
	Tools []string
}

// LLMCheck is the outcome of the LLM policy for one request.
type LLMCheck struct {
	// Request is what the request asked for (for the decision log and
	// metadata); empty when the body could not be read.
	Request LLMRequest
	// Reason is "" when the request may pass, else why it is refused.
	Reason Reason
	// Message is the client-facing message of a refusal: the error's text,
	// or which model or tool was refused.
	Message string
	// Err is the parser's error, for the decision log.
	Err error
}

// CheckLLM applies a route's LLM policy to an authenticated request whose
// route requirement is already met. permits reports whether the caller's
// roles hold one permission (rolemap.Mapper.Permits with one element). The
// model is checked first, then the tools in the order they were declared;
// the refusal names the first one refused.
func CheckLLM(p LLMRoute, in LLMInput, lim LLMLimits, permits func(permission string) bool) LLMCheck {
	if !p.Enabled() {
		return LLMCheck{}
	}
	if p.ModelHeader == "" {
		in.HasModelHeader = false
	}
	req, err := ParseLLMRequest(in, lim)
	if err != nil {
		return LLMCheck{Reason: llmErrorReason(err), Message: clientMessage(err), Err: err}
	}
	c := LLMCheck{Request: req}
	if p.RequireModel {
		if req.Model == "" {
			c.Reason, c.Err = ReasonMissingModel, ErrMissingModel
			c.Message = clientMessage(ErrMissingModel)
			return c
		}
		if !permits(ModelPermissionPrefix + req.Model) {
			c.Reason = ReasonModelNotPermitted
			c.Message = fmt.Sprintf("model %q is not permitted", req.Model)
			return c
		}
	}
	if p.RequireTools {
		for _, t := range req.Tools {
			if !permits(ToolPermissionPrefix + t) {
				c.Reason = ReasonToolNotPermitted
				c.Message = fmt.Sprintf("tool %q is not permitted", t)
				return c
			}
		}
	}
	return c
}

// llmErrorReason maps a parser error to its reason.
func llmErrorReason(err error) Reason {
	switch {
	case errors.Is(err, ErrPartialBody):
		return ReasonPartialBody
	case errors.Is(err, ErrBodyTooLarge):
		return ReasonBodyTooLarge
	case errors.Is(err, ErrContentType):
		return ReasonContentType
	case errors.Is(err, ErrMissingModel):
		return ReasonMissingModel
	case errors.Is(err, ErrModelMismatch):
		return ReasonModelMismatch
	case errors.Is(err, ErrMissingBody):
		return ReasonMissingBody
	}
	return ReasonMalformedBody
}

// clientMessage is the error's text without the "invalid request: " root.
func clientMessage(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalidRequest.Error()+": ")
}

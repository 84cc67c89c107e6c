package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
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

// ParseLLMRequest reads the requested model and the declared tools. A body
// is parsed only when present; an error wraps one of the Err* sentinels
// above (all matching ErrInvalidRequest) with a short explanation that is
// safe to show the client. A partial body is always refused: the part
// Envoy left out could hold a second "model" or more tools.
func ParseLLMRequest(in LLMInput, lim LLMLimits) (LLMRequest, error) {
	lim = lim.withDefaults()
	var req LLMRequest
	if in.Partial {
		return req, fmt.Errorf("%w: raise max_request_bytes in the proxy's with_request_body and turn allow_partial_message off", ErrPartialBody)
	}
	if len(in.Body) > lim.MaxBytes {
		return req, fmt.Errorf("%w: it is larger than %d bytes", ErrBodyTooLarge, lim.MaxBytes)
	}
	if len(in.Body) > 0 {
		var err error
		if req, err = parseLLMBody(in.Body, in.ContentType, lim); err != nil {
			return LLMRequest{}, err
		}
	} else if in.BodyExpected {
		// The body exists but was not forwarded (nginx auth_request, Envoy
		// without with_request_body): without it the model and every tool
		// are unknown, and a model header cannot stand in for it.
		return req, ErrMissingBody
	}
	if in.HasModelHeader {
		h := in.ModelHeader
		if err := checkLLMName(h); err != nil {
			return LLMRequest{}, fmt.Errorf("%w: %w", ErrInvalidRequest, within(err, "model header"))
		}
		switch {
		case req.Model == "":
			req.Model = h
		case req.Model != h:
			return LLMRequest{}, ErrModelMismatch
		}
	}
	return req, nil
}

func parseLLMBody(body []byte, contentType string, lim LLMLimits) (LLMRequest, error) {
	var req LLMRequest
	if !isJSONContentType(contentType) {
		return req, ErrContentType
	}
	if !utf8.Valid(body) {
		return req, fmt.Errorf("%w: it is not UTF-8", ErrMalformedBody)
	}
	if nestingExceeds(body, lim.MaxDepth) {
		return req, fmt.Errorf("%w: it is nested more than %d levels deep", ErrMalformedBody, lim.MaxDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	err := eachField(dec, topKeys, func(key string) error {
		switch key {
		case "model":
			m, err := nameField(dec)
			if err == nil && m != "" {
				req.Model = m
			}
			return within(err, "model")
		case "tools":
			return within(eachElement(dec, func(i int) error {
				name, err := toolName(dec)
				if err == nil {
					err = addTool(&req, name, lim.MaxTools)
				}
				return within(err, index(i))
			}), "tools")
		case "functions":
			return within(eachElement(dec, func(i int) error {
				name, err := functionName(dec)
				if err == nil && name == "" {
					err = shapeErr("missing name")
				}
				if err == nil {
					err = addTool(&req, name, lim.MaxTools)
				}
				return within(err, index(i))
			}), "functions")
		}
		return skipValue(dec)
	})
	if se := (*shapeError)(nil); errors.As(err, &se) && se.path == "" {
		se.path = "request body" // a problem of the top-level object itself
	}
	if err != nil {
		return LLMRequest{}, wrapBodyError(err)
	}
	// One JSON value only: trailing data could be read differently.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return LLMRequest{}, fmt.Errorf("%w: data after the JSON object", ErrMalformedBody)
	}
	return req, nil
}

// wrapBodyError turns a decoding problem into an ErrMalformedBody with a
// short, client-safe explanation.
func wrapBodyError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: it ends too early (truncated)", ErrMalformedBody)
	case errors.As(err, &se):
		return fmt.Errorf("%w: syntax error at byte %d", ErrMalformedBody, se.Offset)
	case errors.Is(err, errBodyShape):
		return fmt.Errorf("%w: %s", ErrMalformedBody, err)
	}
	return fmt.Errorf("%w: unreadable JSON", ErrMalformedBody)
}

// errBodyShape marks well-formed JSON of the wrong shape.
var errBodyShape = errors.New("wrong shape")

// shapeError is a body of the wrong shape at a path ("tools[1].function").
// The path is built on the way out, only when there is an error, and names
// fields, never the client's data.
type shapeError struct{ path, msg string }

func (e *shapeError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func (e *shapeError) Is(target error) bool { return target == errBodyShape }

func shapeErr(msg string) error { return &shapeError{msg: msg} }

// within puts a shape error under the field or index p (the outer element
// comes last); other errors pass unchanged.
func within(err error, p string) error {
	if err == nil {
		return nil
	}
	se, ok := err.(*shapeError) // never wrapped on the way out
	if !ok {
		return err
	}
	switch {
	case se.path == "":
		se.path = p
	case se.path[0] == '[':
		se.path = p + se.path
	default:
		se.path = p + "." + se.path
	}
	return err
}

func index(i int) string { return "[" + strconv.Itoa(i) + "]" }

// The policy keys of each object the parser reads.
var (
	topKeys  = []string{"model", "tools", "functions"}
	toolKeys = []string{"type", "name", "function", "custom"}
	nameKeys = []string{"name"}
)

// eachField reads an object from dec and calls f with each key, positioned
// at its value; f must consume the value. A repeated key is refused, and so
// is a key that some parser reads as one of policyKeys without being
// spelled exactly so (see foldsToKey).
func eachField(dec *json.Decoder, policyKeys []string, f func(key string) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return shapeErr("must be a JSON object")
	}
	var seen map[string]struct{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // the decoder accepts only strings as keys
		if seen == nil {
			seen = make(map[string]struct{}, 8)
		}
		if _, dup := seen[key]; dup {
			return shapeErr(fmt.Sprintf("duplicate key %q", truncateName(key)))
		}
		if pk, ok := variantOf(key, policyKeys); ok {
			return shapeErr(fmt.Sprintf("key %q could be read as %q: spell it exactly %q", truncateName(key), pk, pk))
		}
		seen[key] = struct{}{}
		if err := f(key); err != nil {
			return err
		}
	}
	_, err = dec.Token() // '}'
	return err
}

// eachElement reads an array (or null, which holds nothing) from dec and
// calls f at each element; f must consume it.
func eachElement(dec *json.Decoder, f func(i int) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return shapeErr("must be an array")
	}
	for i := 0; dec.More(); i++ {
		if err := f(i); err != nil {
			return err
		}
	}
	_, err = dec.Token() // ']'
	return err
}

// toolName reads one element of tools and returns the name its permission
// is checked under.
func toolName(dec *json.Decoder) (string, error) {
	var typ, top, fn, custom string
	err := eachField(dec, toolKeys, func(key string) error {
		var err error
		switch key {
		case "type":
			typ, err = nameField(dec)
		case "name":
			top, err = nameField(dec)
		case "function":
			fn, err = functionName(dec)
		case "custom":
			custom, err = functionName(dec)
		default:
			return skipValue(dec)
		}
		return within(err, key)
	})
	if err != nil {
		return "", err
	}
	name := ""
	for _, n := range [...]string{fn, top, custom} {
		switch {
		case n == "":
		case name == "":
			name = n
		case n != name:
			return "", shapeErr("names two different tools")
		}
	}
	if name != "" {
		return name, nil
	}
	if typ != "" && typ != "function" && typ != "custom" {
		return typ, nil // a built-in tool such as web_search_preview
	}
	return "", shapeErr("missing name")
}

// functionName reads an object with a "name" (a tool's function or custom
// definition, or a legacy functions[] entry) and returns the name, "" when
// it has none.
func functionName(dec *json.Decoder) (string, error) {
	var name string
	err := eachField(dec, nameKeys, func(key string) error {
		if key != "name" {
			return skipValue(dec)
		}
		var err error
		name, err = nameField(dec)
		return within(err, "name")
	})
	return name, err
}

// nameField reads a string that names a model, tool or type; null reads as
// "".
func nameField(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	switch v := tok.(type) {
	case nil:
		return "", nil
	case string:
		if err := checkLLMName(v); err != nil {
			return "", err
		}
		return v, nil
	}
	return "", shapeErr("must be a string")
}

func addTool(req *LLMRequest, name string, maxTools int) error {
	for _, t := range req.Tools {
		if t == name {
			return nil
		}
	}
	if len(req.Tools) >= maxTools {
		return &shapeError{msg: fmt.Sprintf("more than %d tools", maxTools)}
	}
	req.Tools = append(req.Tools, name)
	return nil
}

// skipValue consumes the next value without looking at it.
func skipValue(dec *json.Decoder) error {
	var raw json.RawMessage
	return dec.Decode(&raw)
}

// checkLLMName accepts 1-256 bytes of text without control characters or
// U+FFFD (the mark of a lossy decode, e.g. of a lone surrogate escape).
func checkLLMName(s string) error {
	if s == "" {
		return shapeErr("must not be empty")
	}
	if len(s) > maxLLMNameLen {
		return shapeErr("must be at most " + strconv.Itoa(maxLLMNameLen) + " bytes")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return shapeErr("must not contain control characters")
		}
	}
	return nil
}

// truncateName shortens a client-supplied key for an error message.
func truncateName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "..."
}

// isJSONContentType accepts no content-type, application/json and any
// +json type, with a UTF-8 charset if one is named.
func isJSONContentType(ct string) bool {
	mt, params, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt != "" && mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return false
	}
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if !strings.EqualFold(v, "utf-8") && !strings.EqualFold(v, "utf8") {
				return false
			}
		}
	}
	return true
}

// nestingExceeds reports whether arrays and objects in b nest deeper than
// limit. It only counts brackets outside strings; the decoder checks the
// syntax.
func nestingExceeds(b []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Jump to the closing quote: one not preceded by an odd
			// number of backslashes.
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return false // unterminated: the decoder reports it
				}
				i += j + 1
				n := 0
				for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
					n++
				}
				if n%2 == 0 {
					break
				}
			}
		case '[', '{':
			depth++
			if depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
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

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

// ParseLLMRequest reads the requested model and the declared tools. A body
// is parsed only when present; an error wraps one of the Err* sentinels
// of llm.go (all matching ErrInvalidRequest) with a short explanation that is
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

package jwks

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file holds a small strict JSON parser for JWS headers and JWT claims.
// encoding/json costs about 60 allocations and most of the non-crypto time
// of a cold verification; this parser keeps strings as substrings of the
// input and allocates only the member slices. It is stricter than
// encoding/json: it rejects duplicate member names (RFC 7519 section 4
// allows rejecting them), invalid UTF-8, unpaired UTF-16 surrogates in
// escapes, and nesting deeper than maxJSONDepth. A differential fuzz test
// (FuzzParseJSONObject) checks it against encoding/json.

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

// jsonValue is a parsed JSON value. Strings and numbers reference the input
// (see parseJSONObject); clone what outlives it.
type jsonValue struct {
	str   string       // string contents, or the number's text
	items []jsonMember // array elements (key "") or object members
	kind  jsonKind
	b     bool // bool value
}

type jsonMember struct {
	key string
	val jsonValue
}

// get returns the member of an object named key.
func (v *jsonValue) get(key string) (*jsonValue, bool) {
	if v.kind != jsonObject {
		return nil, false
	}
	for i := range v.items {
		if v.items[i].key == key {
			return &v.items[i].val, true
		}
	}
	return nil, false
}

const maxJSONDepth = 32

var (
	errJSONSyntax    = errors.New("json: syntax error")
	errJSONDuplicate = errors.New("json: duplicate member name")
	errJSONUTF8      = errors.New("json: invalid utf-8")
	errJSONSurrogate = errors.New("json: unpaired surrogate escape")
	errJSONDepth     = errors.New("json: nested too deeply")
	errJSONNotObject = errors.New("json: not an object")
)

// parseJSONObject parses b, which must hold exactly one JSON object
// (surrounded by optional whitespace). The returned strings share memory
// with b, so b must not be modified while they are in use.
func parseJSONObject(b []byte) (jsonValue, error) {
	p := jsonParser{s: unsafe.String(unsafe.SliceData(b), len(b))}
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return jsonValue{}, errJSONNotObject
	}
	v, err := p.object(1)
	if err != nil {
		return jsonValue{}, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return jsonValue{}, errJSONSyntax
	}
	return v, nil
}

type jsonParser struct {
	s string
	i int
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (jsonValue, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return jsonValue{}, errJSONSyntax
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.string()
		return jsonValue{kind: jsonString, str: s}, err
	case c == 't':
		return p.literal("true", jsonValue{kind: jsonBool, b: true})
	case c == 'f':
		return p.literal("false", jsonValue{kind: jsonBool})
	case c == 'n':
		return p.literal("null", jsonValue{kind: jsonNull})
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return jsonValue{}, errJSONSyntax
}

func (p *jsonParser) literal(word string, v jsonValue) (jsonValue, error) {
	if !strings.HasPrefix(p.s[p.i:], word) {
		return jsonValue{}, errJSONSyntax
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) object(depth int) (jsonValue, error) {
	if depth > maxJSONDepth {
		return jsonValue{}, errJSONDepth
	}
	p.i++ // {
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return jsonValue{kind: jsonObject}, nil
	}
	var members []jsonMember
	if depth == 1 {
		members = make([]jsonMember, 0, 12) // typical claim sets fit
	}
	for {
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return jsonValue{}, errJSONSyntax
		}
		key, err := p.string()
		if err != nil {
			return jsonValue{}, err
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return jsonValue{}, errJSONSyntax
		}
		p.i++
		val, err := p.value(depth)
		if err != nil {
			return jsonValue{}, err
		}
		members = append(members, jsonMember{key: key, val: val})
		p.skipSpace()
		if p.i >= len(p.s) {
			return jsonValue{}, errJSONSyntax
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] != '}' {
			return jsonValue{}, errJSONSyntax
		}
		p.i++
		break
	}
	if hasDuplicateKey(members) {
		return jsonValue{}, errJSONDuplicate
	}
	return jsonValue{kind: jsonObject, items: members}, nil
}

func hasDuplicateKey(members []jsonMember) bool {
	if len(members) <= 16 {
		for i := 1; i < len(members); i++ {
			for j := 0; j < i; j++ {
				if members[i].key == members[j].key {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		if _, dup := seen[m.key]; dup {
			return true
		}
		seen[m.key] = struct{}{}
	}
	return false
}

func (p *jsonParser) array(depth int) (jsonValue, error) {
	if depth > maxJSONDepth {
		return jsonValue{}, errJSONDepth
	}
	p.i++ // [
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return jsonValue{kind: jsonArray}, nil
	}
	var items []jsonMember
	for {
		val, err := p.value(depth)
		if err != nil {
			return jsonValue{}, err
		}
		items = append(items, jsonMember{val: val})
		p.skipSpace()
		if p.i >= len(p.s) {
			return jsonValue{}, errJSONSyntax
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] != ']' {
			return jsonValue{}, errJSONSyntax
		}
		p.i++
		return jsonValue{kind: jsonArray, items: items}, nil
	}
}

// string parses a string starting at the opening quote.
func (p *jsonParser) string() (string, error) {
	p.i++ // "
	start := p.i
	escaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			raw := p.s[start:p.i]
			p.i++
			if !utf8.ValidString(raw) {
				return "", errJSONUTF8
			}
			if escaped {
				return unescape(raw)
			}
			return raw, nil
		case c == '\\':
			escaped = true
			p.i += 2 // the escaped byte is checked by unescape
		case c < 0x20:
			return "", errJSONSyntax
		default:
			p.i++
		}
	}
	return "", errJSONSyntax
}

// unescape decodes the escapes of a string body (without quotes).
func unescape(raw string) (string, error) {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return "", errJSONSyntax
		}
		e := raw[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(raw, i)
			if !ok {
				return "", errJSONSyntax
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r >= 0xdc00 || i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return "", errJSONSurrogate
				}
				r2, ok := hex4(raw, i+2)
				if !ok {
					return "", errJSONSyntax
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", errJSONSurrogate
				}
				i += 6
			}
			b.WriteRune(r)
		default:
			return "", errJSONSyntax
		}
	}
	return b.String(), nil
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i:i+4], 16, 16)
	return rune(n), err == nil
}

// number parses a number per RFC 8259 and keeps its text.
func (p *jsonParser) number() (jsonValue, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.i < len(p.s) && p.s[p.i] >= '1' && p.s[p.i] <= '9':
		p.digits()
	default:
		return jsonValue{}, errJSONSyntax
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return jsonValue{}, errJSONSyntax
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return jsonValue{}, errJSONSyntax
		}
	}
	return jsonValue{kind: jsonNumber, str: p.s[start:p.i]}, nil
}

func (p *jsonParser) digits() int {
	n := 0
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

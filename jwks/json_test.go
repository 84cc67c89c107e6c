package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// toAny converts a jsonValue to what encoding/json with UseNumber yields.
func toAny(v jsonValue) any {
	switch v.kind {
	case jsonNull:
		return nil
	case jsonBool:
		return v.b
	case jsonNumber:
		return json.Number(v.str)
	case jsonString:
		return v.str
	case jsonArray:
		out := make([]any, 0, len(v.items))
		for _, e := range v.items {
			out = append(out, toAny(e.val))
		}
		return out
	default:
		out := make(map[string]any, len(v.items))
		for _, m := range v.items {
			out[m.key] = toAny(m.val)
		}
		return out
	}
}

// referenceDecode decodes b like the parser should: exactly one JSON object.
func referenceDecode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	if len(bytes.Trim(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

// strictness lists the inputs the parser refuses on purpose although
// encoding/json accepts them.
var strictness = []error{errJSONDuplicate, errJSONUTF8, errJSONSurrogate, errJSONDepth}

func checkAgainstEncodingJSON(t *testing.T, b []byte) {
	t.Helper()
	got, err := parseJSONObject(b)
	want, refErr := referenceDecode(b)
	switch {
	case err == nil && refErr != nil:
		t.Fatalf("parser accepted %q, encoding/json refused it: %v", b, refErr)
	case err != nil && refErr == nil:
		for _, s := range strictness {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("parser refused %q (%v), encoding/json accepted it", b, err)
	case err == nil:
		if diff := cmp.Diff(any(want), toAny(got)); diff != "" {
			t.Fatalf("parser and encoding/json disagree on %q (-json +parser):\n%s", b, diff)
		}
	}
}

func TestParseJSONObject(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error // nil: must match encoding/json
	}{
		{"claims", `{"iss":"https://a","aud":["x","y"],"exp":1700000000,"n":-1.5e+3,"ok":true,"no":false,"z":null,"o":{"a":{}}}`, nil},
		{"whitespace", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", nil},
		{"escapes", `{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`, nil},
		{"empty object", `{}`, nil},
		{"utf-8", `{"é":"日本"}`, nil},
		{"duplicate key", `{"sub":"a","sub":"admin"}`, errJSONDuplicate},
		{"nested duplicate key", `{"o":{"k":1,"k":2}}`, errJSONDuplicate},
		{"many keys with a duplicate", `{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1,"a":2}`, errJSONDuplicate},
		{"invalid utf-8", "{\"a\":\"\xff\"}", errJSONUTF8},
		{"lone high surrogate", `{"a":"\ud800"}`, errJSONSurrogate},
		{"lone low surrogate", `{"a":"\udc00x"}`, errJSONSurrogate},
		{"too deep", `{"a":` + string(bytes.Repeat([]byte("["), 40)) + string(bytes.Repeat([]byte("]"), 40)) + `}`, errJSONDepth},
		{"array", `[1]`, errJSONNotObject},
		{"null", `null`, errJSONNotObject},
		{"trailing data", `{} {}`, errJSONSyntax},
		{"trailing comma", `{"a":1,}`, errJSONSyntax},
		{"leading zero", `{"a":01}`, errJSONSyntax},
		{"bare dot", `{"a":1.}`, errJSONSyntax},
		{"raw control character", "{\"a\":\"\x01\"}", errJSONSyntax},
		{"bad escape", `{"a":"\x"}`, errJSONSyntax},
		{"short unicode escape", `{"a":"\u12"}`, errJSONSyntax},
		{"unterminated", `{"a":"b`, errJSONSyntax},
		{"single quotes", `{'a':1}`, errJSONSyntax},
		{"NaN", `{"a":NaN}`, errJSONSyntax},
		{"truncated literal", `{"a":tru}`, errJSONSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantErr == nil {
				checkAgainstEncodingJSON(t, []byte(tc.in))
				return
			}
			if _, err := parseJSONObject([]byte(tc.in)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseJSONObject = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// FuzzParseJSONObject is a differential test: whatever the parser accepts,
// encoding/json accepts with the same value, and the parser refuses only
// what encoding/json refuses or what it refuses on purpose (strictness).
func FuzzParseJSONObject(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://a","aud":["x","y"],"exp":1700000000.5,"groups":["a"],"o":{"p":[{"q":null}]}}`,
		`{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`,
		`{"a":-0.0e-7,"b":true,"c":false}`,
		` {"a" : [ ] , "b" : { } } `,
		`{"a":1,"a":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstEncodingJSON(t, b)
	})
}

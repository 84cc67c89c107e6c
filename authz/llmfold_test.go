package authz

import (
	"bytes"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

// TestASCIIFolds_Complete derives, from Go's unicode tables, every non-ASCII
// rune that simple case folding (encoding/json's foldName), simple upper-,
// lower- or title-casing, or their Turkish variants map onto an ASCII
// letter, and checks that asciiFolds holds exactly those (plus the
// multi-letter full foldings, which the tables do not have).
func TestASCIIFolds_Complete(t *testing.T) {
	isASCIILetter := func(r rune) bool { return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') }
	want := map[rune]string{}
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		cands := []rune{unicode.ToUpper(r), unicode.ToLower(r), unicode.ToTitle(r),
			unicode.TurkishCase.ToUpper(r), unicode.TurkishCase.ToLower(r), unicode.TurkishCase.ToTitle(r)}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			cands = append(cands, f)
		}
		for _, c := range cands {
			if isASCIILetter(c) {
				want[r] = string(unicode.ToLower(c))
				break
			}
		}
	}
	got := map[rune]string{}
	for r, s := range asciiFolds {
		if len(s) == 1 {
			got[r] = s
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("single-letter asciiFolds (-want +got):\n%s", diff)
	}
}

// TestFoldsToKey_GoEncodingJSON: every key that encoding/json matches to a
// policy key (bytes.EqualFold, the property of its foldName) is one that
// foldsToKey reports, tried with every rune at every position of every
// policy key.
func TestFoldsToKey_GoEncodingJSON(t *testing.T) {
	// Only runes with a case-fold orbit can equal another rune under
	// simple folding.
	var cased []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if unicode.SimpleFold(r) != r {
			cased = append(cased, r)
		}
	}
	keys := append(append(append([]string{}, topKeys...), toolKeys...), nameKeys...)
	for _, pk := range keys {
		for i := range len(pk) {
			for _, r := range cased {
				if r == rune(pk[i]) || !bytes.EqualFold([]byte(string(r)), []byte{pk[i]}) {
					continue
				}
				key := pk[:i] + string(r) + pk[i+1:]
				if !foldsToKey(key, pk) {
					t.Errorf("encoding/json matches %q to %q, foldsToKey does not", key, pk)
				}
			}
		}
	}
}

func TestFoldsToKey(t *testing.T) {
	tests := []struct {
		key, pk string
		want    bool
	}{
		{"model", "model", true},
		{"MoDeL", "model", true},
		{"mo_d-el", "model", true},
		{"toolſ", "tools", true},
		{"\u212aey", "key", true},
		{"cuﬆom", "custom", true},
		{"ﬁle", "file", true},
		{"gauß", "gauss", true},
		{"functıons", "functions", true},
		{"FUNCTİONS", "functions", true},
		{"models", "model", false},
		{"mode", "model", false},
		{"modèl", "model", false},
		{"ｍｏｄｅｌ", "model", false},
		{"tool_choice", "tools", false},
		{"", "name", false},
		{"_", "name", false},
		{"cuſ", "custom", false},
	}
	for _, tt := range tests {
		t.Run(tt.key+"/"+tt.pk, func(t *testing.T) {
			if got := foldsToKey(tt.key, tt.pk); got != tt.want {
				t.Errorf("foldsToKey(%q, %q) = %v, want %v", tt.key, tt.pk, got, tt.want)
			}
		})
	}
}

func TestBodyExpected(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		size    int64
		headers map[string]string
		want    bool
	}{
		{name: "POST", method: "POST", want: true},
		{name: "PUT", method: "PUT", want: true},
		{name: "PATCH", method: "PATCH", want: true},
		{name: "lower-case post", method: "post", want: true},
		{name: "unknown method", method: "QUERY", want: true},
		{name: "no method", method: "", want: true},
		{name: "GET", method: "GET"},
		{name: "HEAD", method: "HEAD"},
		{name: "OPTIONS", method: "OPTIONS"},
		{name: "DELETE", method: "DELETE"},
		{name: "GET with unknown size", method: "GET", size: -1},
		{name: "GET with a size", method: "GET", size: 1, want: true},
		{name: "GET with content-length 0", method: "GET", headers: map[string]string{"content-length": "0"}},
		{name: "GET with a content-length", method: "GET", headers: map[string]string{"content-length": "12"}, want: true},
		{name: "GET with a malformed content-length", method: "GET", headers: map[string]string{"content-length": "1,1"}, want: true},
		{name: "GET with a transfer-encoding", method: "GET", headers: map[string]string{"transfer-encoding": "chunked"}, want: true},
		{name: "GET with a JSON content-type", method: "GET", headers: map[string]string{"content-type": "application/json; charset=utf-8"}, want: true},
		{name: "GET with a +json content-type", method: "GET", headers: map[string]string{"content-type": "application/vnd.api+json"}, want: true},
		{name: "GET with an empty content-type", method: "GET", headers: map[string]string{"content-type": ""}},
		{name: "GET with another content-type", method: "GET", headers: map[string]string{"content-type": "text/plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BodyExpected(tt.method, tt.size, tt.headers); got != tt.want {
				t.Errorf("BodyExpected(%q, %d, %v) = %v, want %v", tt.method, tt.size, tt.headers, got, tt.want)
			}
		})
	}
}

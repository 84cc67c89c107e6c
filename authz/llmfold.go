package authz

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// asciiFolds maps every non-ASCII rune that some JSON parser's
// case-insensitive key matching can equate with ASCII letters to those
// letters (lower-case):
//
//   - Unicode simple case folding (Go's encoding/json foldName,
//     strings.EqualFold): U+017F LATIN SMALL LETTER LONG S is "s", U+212A
//     KELVIN SIGN is "k";
//   - simple upper- and lower-casing, also in Turkish (.NET
//     OrdinalIgnoreCase, Java equalsIgnoreCase): U+0131 DOTLESS I upper-cases
//     to "I", U+0130 CAPITAL I WITH DOT lower-cases to "i";
//   - full case folding (Python str.casefold): "ß" and "ẞ" are "ss", the
//     Latin ligatures U+FB00..U+FB06 are "ff", "fi", "fl", "ffi", "ffl",
//     "st", "st".
//
// TestASCIIFolds_Complete derives the single-rune entries from the unicode
// tables, so a Go release with new mappings fails the test.
var asciiFolds = map[rune]string{
	'\u0130': "i", // İ
	'\u0131': "i", // ı
	'\u017f': "s", // ſ
	'\u212a': "k", // K (Kelvin)
	'\u00df': "ss",
	'\u1e9e': "ss",
	'\ufb00': "ff",
	'\ufb01': "fi",
	'\ufb02': "fl",
	'\ufb03': "ffi",
	'\ufb04': "ffl",
	'\ufb05': "st",
	'\ufb06': "st",
}

// variantOf reports the policy key that key could be read as, when key is
// not exactly that policy key (see foldsToKey).
func variantOf(key string, policyKeys []string) (string, bool) {
	for _, pk := range policyKeys {
		if key != pk && foldsToKey(key, pk) {
			return pk, true
		}
	}
	return "", false
}

// foldsToKey reports whether some parser may match key against pk, a
// lower-case ASCII name: after ASCII case folding, asciiFolds, and dropping
// '-' and '_' (which encoding/json/v2's case-insensitive matching ignores),
// key is pk. It is deliberately broader than any single parser.
func foldsToKey(key, pk string) bool {
	j := 0
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '-' || c == '_':
				continue
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			if j >= len(pk) || pk[j] != c {
				return false
			}
			j++
			continue
		}
		r, n := utf8.DecodeRuneInString(key[i:])
		i += n
		exp, ok := asciiFolds[r]
		if !ok || !strings.HasPrefix(pk[j:], exp) {
			return false
		}
		j += len(exp)
	}
	return j == len(pk)
}

// BodyExpected reports whether the original request carries a body, from
// what the proxy tells about it: a method that has one (every method but
// GET, HEAD, OPTIONS, DELETE, TRACE and CONNECT: POST, PUT, PATCH, QUERY
// and unknown methods), a body size above zero (Envoy's
// attributes.request.http.size), a content-length other than 0 (a
// malformed one counts), a transfer-encoding, or a JSON content-type.
// headers have lower-case names.
func BodyExpected(method string, size int64, headers map[string]string) bool {
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "OPTIONS", "DELETE", "TRACE", "CONNECT":
	default:
		return true
	}
	if size > 0 {
		return true
	}
	if cl, ok := headers["content-length"]; ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64); err != nil || n != 0 {
			return true
		}
	}
	if _, ok := headers["transfer-encoding"]; ok {
		return true
	}
	if ct := strings.TrimSpace(headers["content-type"]); ct != "" && isJSONContentType(ct) {
		return true
	}
	return false
}

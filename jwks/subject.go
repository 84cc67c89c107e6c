package jwks

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// ValidSubject applies the rules every authenticated subject obeys, whatever
// vouched for it (a JWT here, an introspection answer in package
// introspect): not empty, no control characters (ASCII controls other than
// tab, and DEL), no leading or trailing white space (Unicode White_Space), so
// that the subject extauthz authorizes is the one an upstream reads from
// x-auth-subject, byte for byte. The error says which rule s breaks and never
// holds s.
func ValidSubject(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if hasControl(s) {
		return errors.New("contains control characters")
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return errors.New("has leading or trailing white space")
	}
	return nil
}

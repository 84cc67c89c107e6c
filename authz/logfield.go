package authz

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxLogField bounds every client-controlled string on the decision log line
// (path, host, request id, method, model, subject, …), in bytes before JSON
// escaping. With the fixed fields, a line stays under 2 KB whatever the
// request.
const maxLogField = 256

// logField returns s fit for the decision log: at most maxLogField bytes of
// it, then a "…(+N bytes)" marker naming how many were cut; bytes that are
// not UTF-8 and control characters are written %XX (3 bytes) instead of
// slog's 6-byte \ufffd or \u00XX, so an attacker cannot expand a request
// six-fold into the log. A short printable string (the common case) is
// returned as is, without allocating.
func logField(s string) string {
	if len(s) <= maxLogField && plainLogField(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), maxLogField) + 16)
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		n := size
		escape := (r == utf8.RuneError && size == 1) || r < 0x20 || r == 0x7f
		if escape {
			n = 3
		}
		if b.Len()+n > maxLogField {
			break
		}
		if escape {
			b.WriteByte('%')
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&0xf])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if i < len(s) {
		b.WriteString("…(+")
		b.WriteString(strconv.Itoa(len(s) - i))
		b.WriteString(" bytes)")
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

// plainLogField reports whether s is valid UTF-8 without control characters.
func plainLogField(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			return utf8.ValidString(s[i:]) && !hasControl(s[i:])
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

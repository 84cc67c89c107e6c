package apikeys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// seedReader is a deterministic byte stream derived from a seed, so a fuzz
// input can stand in for crypto/rand.
type seedReader struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (r *seedReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		var ctr [8]byte
		binary.BigEndian.PutUint64(ctr[:], r.n)
		r.n++
		sum := sha256.Sum256(append(append([]byte{}, r.seed...), ctr[:]...))
		r.buf = append(r.buf, sum[:]...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func mustKey(t testing.TB, prefix string) string {
	t.Helper()
	k, err := newKey(prefix, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKey_ShapeAndEntropy(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := mustKey(t, "ek")
		if len(k) != len("ek_")+36 || !strings.HasPrefix(k, "ek_") {
			t.Fatalf("key %q has the wrong shape", k)
		}
		if err := CheckFormat("ek", k); err != nil {
			t.Fatalf("CheckFormat(new key) = %v", err)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
	// Every base62 character appears in random parts: no bias towards a
	// subset of the alphabet.
	all := map[byte]bool{}
	for k := range seen {
		for i := 3; i < 3+randomLen; i++ {
			all[k[i]] = true
		}
	}
	if len(all) != 62 {
		t.Errorf("random parts use %d distinct characters, want 62", len(all))
	}
}

func TestCheckFormat(t *testing.T) {
	good := mustKey(t, "ek")
	body := good[3:]
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	tests := []struct {
		name   string
		prefix string
		key    string
		want   error
	}{
		{"valid", "ek", good, nil},
		{"empty", "ek", "", ErrMalformed},
		{"prefix only", "ek", "ek_", ErrMalformed},
		{"other prefix", "xk", "xk_" + body, ErrMalformed},
		{"wrong separator", "ek", "ek-" + body, ErrMalformed},
		{"too short", "ek", good[:len(good)-1], ErrMalformed},
		{"too long", "ek", good + "0", ErrMalformed},
		{"random changed", "ek", flip(good, 10), ErrMalformed},
		{"checksum changed", "ek", flip(good, len(good)-1), ErrMalformed},
		{"non-base62 character", "ek", good[:5] + "-" + good[6:], ErrMalformed},
		{"checksum above 2^32", "ek", good[:len(good)-checksumLen] + "zzzzzz", ErrMalformed},
		{"jwt", "ek", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", ErrMalformed},
		{"valid for its own prefix", "longprefix", mustKey(t, "longprefix"), nil},
		{"key of another prefix", "ek", mustKey(t, "ekx"), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckFormat(tt.prefix, tt.key); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CheckFormat(%q, %q) = %v, want %v", tt.prefix, tt.key, err, tt.want)
			}
		})
	}
}

func TestLooksLikeKey(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"ek_x", true},
		{"ek_", true}, // the shape says API key; CheckFormat then refuses it
		{"ek", false},
		{"ekx_y", false},
		{"EK_x", false},
		{"eyJ.a.b", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := LooksLikeKey("ek", tt.s); got != tt.want {
			t.Errorf("LooksLikeKey(ek, %q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestValidID(t *testing.T) {
	id, err := newID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id, true},
		{"key_abcdefABCDEF", true},
		{"key_abcdefABCDE", false},
		{"key_abcdefABCDEFG", false},
		{"kez_abcdefABCDEF", false},
		{"key_abcdef-BCDEF", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestCheckFormat_DoesNotAllocate(t *testing.T) {
	k := mustKey(t, "ek")
	if n := testing.AllocsPerRun(100, func() { _ = CheckFormat("ek", k) }); n != 0 {
		t.Errorf("CheckFormat allocates %v times, want 0", n)
	}
}

// FuzzAPIKeyParse checks three properties: CheckFormat never panics on any
// input; every generated key passes it; and changing any single character of
// a generated key makes it fail.
func FuzzAPIKeyParse(f *testing.F) {
	// The committed corpus in testdata/fuzz/FuzzAPIKeyParse adds edge cases
	// (a real key, a checksum overflowing 32 bits, non-ASCII bytes).
	f.Add("", []byte{}, uint16(0), byte('A'))
	f.Add("ek_", []byte("seed"), uint16(3), byte('0'))
	f.Add("ek_000000000000000000000000000000000000", []byte{1, 2, 3}, uint16(38), byte('z'))
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", []byte("jwt"), uint16(2), byte('_'))
	f.Fuzz(func(t *testing.T, s string, seed []byte, pos uint16, c byte) {
		err := CheckFormat("ek", s)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("CheckFormat(%q) = %v, want nil or ErrMalformed", s, err)
		}
		if err == nil && !LooksLikeKey("ek", s) {
			t.Fatalf("CheckFormat accepts %q but LooksLikeKey does not", s)
		}

		key, err := newKey("ek", &seedReader{seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckFormat("ek", key); err != nil {
			t.Fatalf("generated key %q refused: %v", key, err)
		}
		i := int(pos) % len(key)
		if key[i] == c {
			return
		}
		mutated := key[:i] + string([]byte{c}) + key[i+1:]
		if err := CheckFormat("ek", mutated); err == nil {
			t.Fatalf("key %q with position %d changed to %q still passes", key, i, c)
		}
	})
}

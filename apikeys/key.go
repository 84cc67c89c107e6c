package apikeys

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
)

// Key format: <prefix>_<random><checksum>
//
//   - random is randomLen base62 characters drawn uniformly from crypto/rand
//     (30 × log2(62) ≈ 178 bits).
//   - checksum is the CRC-32 (IEEE) of "<prefix>_<random>" written as
//     checksumLen base62 characters, most significant first, zero-padded.
//
// CRC-32 detects every single-character change, so a mistyped or truncated
// key is refused without a backend round trip. The checksum is not a secret
// and gives no protection against forgery: it only keeps garbage away from
// Redis.
const (
	randomLen   = 30
	checksumLen = 6 // 62^6 > 2^32
	bodyLen     = randomLen + checksumLen

	idPrefix    = "key_"
	idRandomLen = 12 // ≈ 71 bits: unique in practice; collisions are retried
	idLen       = len(idPrefix) + idRandomLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Value maps a byte to its base62 digit value, or -1.
var base62Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62); i++ {
		t[base62[i]] = int8(i)
	}
	return t
}()

// LooksLikeKey reports whether s starts with prefix + "_", which is how a
// credential is told apart from a JWT. It does not check the rest of s; see
// CheckFormat.
func LooksLikeKey(prefix, s string) bool {
	return len(s) > len(prefix) && s[len(prefix)] == '_' && s[:len(prefix)] == prefix
}

// CheckFormat reports whether key has the shape of an API key with the given
// prefix and a correct checksum. It returns ErrMalformed if not. It does no
// I/O and does not allocate.
func CheckFormat(prefix, key string) error {
	if len(key) != len(prefix)+1+bodyLen || !LooksLikeKey(prefix, key) {
		return ErrMalformed
	}
	body := key[len(prefix)+1:]
	for i := 0; i < len(body); i++ {
		if base62Value[body[i]] < 0 {
			return ErrMalformed
		}
	}
	want, ok := decodeChecksum(body[randomLen:])
	if !ok || crc32String(key[:len(key)-checksumLen]) != want {
		return ErrMalformed
	}
	return nil
}

// crc32String is crc32.ChecksumIEEE over a string without converting it to a
// byte slice.
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

func encodeChecksum(dst []byte, v uint32) {
	n := uint64(v)
	for i := checksumLen - 1; i >= 0; i-- {
		dst[i] = base62[n%62]
		n /= 62
	}
}

// decodeChecksum parses checksumLen base62 digits. Values of 2^32 and more
// are not checksums: the encoding stays one-to-one.
func decodeChecksum(s string) (uint32, bool) {
	var n uint64
	for i := 0; i < checksumLen; i++ {
		n = n*62 + uint64(base62Value[s[i]])
	}
	if n > 0xFFFFFFFF {
		return 0, false
	}
	return uint32(n), true
}

// randomBase62 fills dst with uniformly distributed base62 characters read
// from r, using rejection sampling so no character is more likely than
// another.
func randomBase62(r io.Reader, dst []byte) error {
	var buf [64]byte
	for i := 0; i < len(dst); {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return err
		}
		for _, b := range buf {
			if b >= 248 { // 248 = 4 × 62
				continue
			}
			dst[i] = base62[b%62]
			i++
			if i == len(dst) {
				break
			}
		}
	}
	return nil
}

// newKey returns a fresh key "<prefix>_<random><checksum>" with randomness
// read from r.
func newKey(prefix string, r io.Reader) (string, error) {
	b := make([]byte, len(prefix)+1+bodyLen)
	copy(b, prefix)
	b[len(prefix)] = '_'
	if err := randomBase62(r, b[len(prefix)+1:len(b)-checksumLen]); err != nil {
		return "", fmt.Errorf("apikeys: read random: %w", err)
	}
	encodeChecksum(b[len(b)-checksumLen:], crc32String(string(b[:len(b)-checksumLen])))
	return string(b), nil
}

// newID returns a fresh public key id "key_<12 base62>".
func newID(r io.Reader) (string, error) {
	b := make([]byte, idLen)
	copy(b, idPrefix)
	if err := randomBase62(r, b[len(idPrefix):]); err != nil {
		return "", fmt.Errorf("apikeys: read random: %w", err)
	}
	return string(b), nil
}

// ValidID reports whether id has the shape of a public key id
// ("key_" followed by 12 base62 characters).
func ValidID(id string) bool {
	if len(id) != idLen || id[:len(idPrefix)] != idPrefix {
		return false
	}
	for i := len(idPrefix); i < len(id); i++ {
		if base62Value[id[i]] < 0 {
			return false
		}
	}
	return true
}

// hashKey returns the SHA-256 of a key, the only form in which keys are
// stored. Keys that passed CheckFormat are hashed without allocating.
func hashKey(key string) [32]byte {
	var buf [64]byte // a checked key is at most 16+1+36 bytes
	if len(key) > len(buf) {
		return sha256.Sum256([]byte(key))
	}
	n := copy(buf[:], key)
	return sha256.Sum256(buf[:n])
}

// HashPrefix returns the first 8 hex characters of a record hash, the form in
// which a key may be identified in logs and listings.
func HashPrefix(hash string) string {
	if len(hash) > 8 {
		return hash[:8]
	}
	return hash
}

func hexHash(sum [32]byte) string { return hex.EncodeToString(sum[:]) }

// decodeHexHash parses 64 hex characters into a hash.
func decodeHexHash(s string) (sum [32]byte, ok bool) {
	if len(s) != 64 {
		return sum, false
	}
	_, err := hex.Decode(sum[:], []byte(s))
	return sum, err == nil
}

package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
)

// minRSABits is the smallest RSA modulus accepted in a JWK Set.
const minRSABits = 2048

// maxJWKSBytes bounds a JWK Set document (HTTP body or file).
const maxJWKSBytes = 1 << 20

// key is one usable signature verification key of a provider.
type key struct {
	kid string
	alg string // the JWK's alg, "" when the JWK does not restrict it
	pub any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or hmacSecret

	// removed is set when a refresh no longer contains this key; cached
	// tokens signed by it are then refused.
	removed atomic.Bool
}

// compatible reports whether k may verify a token with the given alg: the
// JWK's alg (when set) must be that alg, and the key type (and curve) must
// be the one the alg uses.
func (k *key) compatible(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	return keyFits(k.pub, alg)
}

// hmacSecret is the shared secret of an HMAC provider. It is a distinct type
// so that no key parsed from a JWK Set (always a public key) can ever verify
// an HMAC token, and no HMAC secret can verify an asymmetric one.
type hmacSecret []byte

// LogValue keeps the secret out of logs.
func (hmacSecret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String keeps the secret out of formatted errors.
func (hmacSecret) String() string { return "[redacted]" }

func keyFits(pub any, alg string) bool {
	switch p := pub.(type) {
	case hmacSecret:
		return isHMACAlg(alg)
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return p.Curve == elliptic.P256()
		case "ES384":
			return p.Curve == elliptic.P384()
		case "ES512":
			return p.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// sameKey reports whether a and b are the same key with the same metadata,
// so tokens cached under a stay valid when a refresh yields b.
func sameKey(a, b *key) bool {
	if a.kid != b.kid || a.alg != b.alg {
		return false
	}
	e, ok := a.pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b.pub)
}

// keySet is an immutable snapshot of a provider's keys.
type keySet struct {
	byKID map[string]*key
	all   []*key
}

var (
	errKeyNotFound  = errors.New("no key found")
	errKeyAmbiguous = errors.New("token has no kid and several keys fit its alg")
	errKeyMismatch  = errors.New("the key named by kid does not fit the token's alg")
)

// find returns the key that verifies a token with the given alg and kid
// ("" when the token has none). A token without kid is accepted only when
// exactly one key fits its alg, so a kid-less token costs one signature
// check and identifies its key.
func (s *keySet) find(alg, kid string) (*key, error) {
	if kid != "" {
		k := s.byKID[kid]
		switch {
		case k == nil:
			return nil, errKeyNotFound
		case !k.compatible(alg):
			return nil, errKeyMismatch
		}
		return k, nil
	}
	var found *key
	for _, k := range s.all {
		if !k.compatible(alg) {
			continue
		}
		if found != nil {
			return nil, errKeyAmbiguous
		}
		found = k
	}
	if found == nil {
		return nil, errKeyNotFound
	}
	return found, nil
}

// skippedKey records a JWK that was ignored and why, for the log.
type skippedKey struct {
	kid    string
	reason string
}

// parseJWKS parses a JWK Set document and keeps the keys usable for
// signature verification: RSA (at least 2048 bits), EC P-256/384/521 and
// Ed25519 public keys whose use is sig (or unset), whose key_ops (if any)
// include verify, and whose alg (if any) is a supported signature alg of
// that key type. Private parts are ignored, symmetric keys are never used,
// and x5u is never fetched. It fails when no usable key remains.
func parseJWKS(data []byte) ([]*key, []skippedKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("decode jwk set: %w", err)
	}
	var keys []*key
	var skipped []skippedKey
	seen := map[string]bool{}
	for _, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, skippedKey{kid: k.kid, reason: err.Error()})
			continue
		}
		if k.kid != "" {
			if seen[k.kid] {
				skipped = append(skipped, skippedKey{kid: k.kid, reason: "duplicate kid, the first key with it is used"})
				continue
			}
			seen[k.kid] = true
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("jwk set has no usable signature key (%d keys, %d ignored)", len(doc.Keys), len(skipped))
	}
	return keys, skipped, nil
}

// parseJWK returns the key, or a key holding only the kid (for the log) and
// an error saying why it is not usable.
func parseJWK(raw json.RawMessage) (*key, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return &key{}, fmt.Errorf("decode jwk: %w", err)
	}
	k := &key{kid: m.KID, alg: string(m.ALG)}
	switch m.KTY {
	case jwkset.KtyRSA, jwkset.KtyEC, jwkset.KtyOKP:
	default:
		return k, fmt.Errorf("key type %q is not used for signatures", m.KTY)
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return k, fmt.Errorf("use %q is not sig", m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return k, errors.New("key_ops does not include verify")
	}
	// Only public parts: a JWK Set that leaks private parameters still
	// yields public keys only.
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.K, m.OTH = "", "", "", "", "", "", "", nil
	j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return k, fmt.Errorf("invalid jwk: %w", err)
	}
	switch p := j.Key().(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return k, fmt.Errorf("rsa key has %d bits, at least %d are required", p.N.BitLen(), minRSABits)
		}
		k.pub = p
	case *ecdsa.PublicKey:
		k.pub = p
	case ed25519.PublicKey:
		k.pub = p
	default:
		return k, fmt.Errorf("key of type %T is not used for signatures", p)
	}
	if k.alg != "" {
		if !slices.Contains(supportedAlgorithms, k.alg) {
			return k, fmt.Errorf("alg %q is not a supported signature algorithm", k.alg)
		}
		if !keyFits(k.pub, k.alg) {
			return k, fmt.Errorf("alg %q does not fit the key type", k.alg)
		}
	}
	return k, nil
}

// newKeySet builds the snapshot that replaces old: keys equal to a key of
// old keep its identity (so cached tokens stay valid), and the keys of old
// that are gone are returned so the caller can mark them removed.
func newKeySet(old *keySet, keys []*key) (next *keySet, removed []*key) {
	next = &keySet{byKID: make(map[string]*key, len(keys)), all: make([]*key, 0, len(keys))}
	kept := map[*key]bool{}
	for _, k := range keys {
		if old != nil {
			for _, o := range old.all {
				if !kept[o] && sameKey(o, k) {
					k = o
					break
				}
			}
		}
		kept[k] = true
		next.all = append(next.all, k)
		if k.kid != "" {
			next.byKID[k.kid] = k
		}
	}
	if old != nil {
		for _, o := range old.all {
			if !kept[o] {
				removed = append(removed, o)
			}
		}
	}
	return next, removed
}

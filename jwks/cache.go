package jwks

import (
	"crypto/sha256"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxCachedClaims bounds the estimated size of one cached Claims; larger
// identities are verified every time instead.
const maxCachedClaims = 4096

// tokenCache maps the SHA-256 of a verified token to its Claims.
type tokenCache struct {
	lru    *lru.Cache[[sha256.Size]byte, *cacheEntry]
	maxTTL time.Duration
}

type cacheEntry struct {
	claims  *Claims
	expires int64 // unix nanoseconds
	key     *key  // the key that verified the token
}

func newTokenCache(cfg CacheConfig) (*tokenCache, error) {
	l, err := lru.New[[sha256.Size]byte, *cacheEntry](cfg.MaxEntries)
	if err != nil {
		return nil, err
	}
	return &tokenCache{lru: l, maxTTL: cfg.MaxTTL}, nil
}

// get returns the cached Claims of the token with hash h, or nil. An entry
// past its lifetime, or whose key was removed from the key set, is dropped.
func (c *tokenCache) get(h *[sha256.Size]byte, now time.Time) *Claims {
	e, ok := c.lru.Get(*h)
	if !ok {
		return nil
	}
	if now.UnixNano() >= e.expires || e.key.removed.Load() {
		c.lru.Remove(*h)
		return nil
	}
	return e.claims
}

// add caches the Claims of a verified token until min(exp, now+max_ttl).
func (c *tokenCache) add(h *[sha256.Size]byte, cl *Claims, k *key, now time.Time) {
	if claimsSize(cl) > maxCachedClaims {
		return
	}
	expires := min(cl.ExpiresAt.UnixNano(), now.Add(c.maxTTL).UnixNano())
	if expires <= now.UnixNano() {
		return
	}
	c.lru.Add(*h, &cacheEntry{claims: cl, expires: expires, key: k})
}

func (c *tokenCache) len() int { return c.lru.Len() }

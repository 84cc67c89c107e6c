package authz

import "github.com/extauthz/extauthz/slotcache"

// identityCacheSlots is the size of each identity cache. At most this many
// derived identities (about 600 bytes each, plus the Claims or Record they
// keep alive) are held per Engine and credential kind.
const identityCacheSlots = 8192

// identityCache maps a verified credential's Claims or Record, by pointer,
// to the Identity and headers derived from it. Holding the pointer keeps its
// target alive, so an address in the cache can never be reused by another
// credential; the targets are immutable (see jwks.Claims and
// apikeys.Store.Lookup), so a hit always yields what deriving again would.
type identityCache[K comparable] = slotcache.Cache[K, derivedIdentity]

// derivedIdentity is what a verified credential yields.
type derivedIdentity struct {
	id  *Identity
	set []Header
}

func newIdentityCache[K comparable](slots int) *identityCache[K] {
	return slotcache.New[K, derivedIdentity](slots)
}

// derive returns the identity cached for the verified credential k (a
// Claims, Record or introspection Result pointer, or a peer principal) and
// its headers, else builds it, derives its headers and caches both. build
// may return nil (no identity), which is cached too.
func derive[K comparable](e *Engine, c *identityCache[K], k K, build func() *Identity) (*Identity, []Header) {
	if d, ok := c.Get(k); ok {
		return d.id, d.set
	}
	var d derivedIdentity
	if d.id = build(); d.id != nil {
		d.set = e.identityHeaders(d.id)
	}
	c.Put(k, d)
	return d.id, d.set
}

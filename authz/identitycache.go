package authz

import (
	"hash/maphash"
	"sync/atomic"
)

// identityCacheSlots is the size of each identity cache. At most this many
// derived identities (about 600 bytes each, plus the Claims or Record they
// keep alive) are held per Engine and credential kind.
const identityCacheSlots = 8192

// identityCache maps a verified credential's Claims or Record, by pointer,
// to the Identity and headers derived from it. Holding the pointer keeps its
// target alive, so an address in the cache can never be reused by another
// credential; the targets are immutable (see jwks.Claims and
// apikeys.Store.Lookup), so a hit always yields what deriving again would.
type identityCache[K comparable] = slotCache[K, derivedIdentity]

// derivedIdentity is what a verified credential yields.
type derivedIdentity struct {
	id  *Identity
	set []Header
}

func newIdentityCache[K comparable](slots int) *identityCache[K] {
	return newSlotCache[K, derivedIdentity](slots)
}

// slotCache is a bounded, lock-free, direct-mapped cache: each key hashes to
// one slot, and a newer entry simply replaces the older one. A lookup costs
// one hash and one atomic load; a miss costs one small allocation. It suits
// values that are cheap to rebuild and keys that repeat.
type slotCache[K comparable, V any] struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[slotEntry[K, V]]
}

type slotEntry[K comparable, V any] struct {
	key K
	val V
}

// newSlotCache returns a cache of slots entries; slots must be a power of
// two.
func newSlotCache[K comparable, V any](slots int) *slotCache[K, V] {
	return &slotCache[K, V]{
		seed:  maphash.MakeSeed(),
		mask:  uint64(slots - 1),
		slots: make([]atomic.Pointer[slotEntry[K, V]], slots),
	}
}

func (c *slotCache[K, V]) slot(k K) *atomic.Pointer[slotEntry[K, V]] {
	return &c.slots[maphash.Comparable(c.seed, k)&c.mask]
}

// get returns the value cached for k.
func (c *slotCache[K, V]) get(k K) (v V, ok bool) {
	if e := c.slot(k).Load(); e != nil && e.key == k {
		return e.val, true
	}
	return v, false
}

// put caches v for k, replacing whatever shared its slot.
func (c *slotCache[K, V]) put(k K, v V) {
	c.slot(k).Store(&slotEntry[K, V]{key: k, val: v})
}

// swap caches v for k and returns the value it replaced, if any.
func (c *slotCache[K, V]) swap(k K, v V) (old V, replaced bool) {
	if e := c.slot(k).Swap(&slotEntry[K, V]{key: k, val: v}); e != nil {
		return e.val, true
	}
	return old, false
}

// derive returns the identity cached for the verified credential k (a
// Claims, Record or introspection Result pointer, or a peer principal) and
// its headers, else builds it, derives its headers and caches both. build
// may return nil (no identity), which is cached too.
func derive[K comparable](e *Engine, c *identityCache[K], k K, build func() *Identity) (*Identity, []Header) {
	if d, ok := c.get(k); ok {
		return d.id, d.set
	}
	var d derivedIdentity
	if d.id = build(); d.id != nil {
		d.set = e.identityHeaders(d.id)
	}
	c.put(k, d)
	return d.id, d.set
}

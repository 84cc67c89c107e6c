package envoyauthz

import (
	"hash/maphash"
	"sync/atomic"
)

// slotCache is a bounded, lock-free, direct-mapped cache: each key hashes to
// one slot, and a newer entry simply replaces the older one. A lookup costs
// one hash and one atomic load. It is the engine's identity cache
// (authz/engine.go), with only what the allowed-response cache uses.
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

// swap caches v for k and returns the value it replaced, if any.
func (c *slotCache[K, V]) swap(k K, v V) (old V, replaced bool) {
	if e := c.slot(k).Swap(&slotEntry[K, V]{key: k, val: v}); e != nil {
		return e.val, true
	}
	return old, false
}

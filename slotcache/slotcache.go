// Package slotcache is a bounded, lock-free, direct-mapped cache: each key
// hashes to one slot, and a newer entry simply replaces the older one. A
// lookup costs one hash and one atomic load; a store costs one small
// allocation. It suits values that are cheap to rebuild and keys that
// repeat: the engine's identity caches and the Envoy front end's cache of
// encoded allowed responses. It imports nothing of the module.
package slotcache

import (
	"hash/maphash"
	"sync/atomic"
)

// Cache maps keys to values in a fixed number of slots.
type Cache[K comparable, V any] struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[entry[K, V]]
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// New returns a cache of slots entries; slots must be a power of two.
func New[K comparable, V any](slots int) *Cache[K, V] {
	if slots <= 0 || slots&(slots-1) != 0 {
		panic("slotcache: slots must be a power of two") // programmer error
	}
	return &Cache[K, V]{
		seed:  maphash.MakeSeed(),
		mask:  uint64(slots - 1),
		slots: make([]atomic.Pointer[entry[K, V]], slots),
	}
}

func (c *Cache[K, V]) slot(k K) *atomic.Pointer[entry[K, V]] {
	return &c.slots[maphash.Comparable(c.seed, k)&c.mask]
}

// Get returns the value cached for k.
func (c *Cache[K, V]) Get(k K) (v V, ok bool) {
	if e := c.slot(k).Load(); e != nil && e.key == k {
		return e.val, true
	}
	return v, false
}

// Put caches v for k, replacing whatever shared its slot.
func (c *Cache[K, V]) Put(k K, v V) {
	c.slot(k).Store(&entry[K, V]{key: k, val: v})
}

// Swap caches v for k and returns the value it replaced in that slot, if
// any (possibly another key's).
func (c *Cache[K, V]) Swap(k K, v V) (old V, replaced bool) {
	if e := c.slot(k).Swap(&entry[K, V]{key: k, val: v}); e != nil {
		return e.val, true
	}
	return old, false
}

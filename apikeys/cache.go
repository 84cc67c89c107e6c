package apikeys

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// numShards spreads the cache over several LRUs (by the first byte of the
// hash, which is uniform) so concurrent lookups rarely share a lock.
const numShards = 16

// ttlCache is a bounded LRU whose entries also expire. It keeps the expiry in
// the entry and checks it on read instead of using golang-lru's expirable
// package, whose cleanup goroutine can never be stopped (a leak on every
// config reload).
type ttlCache[V any] struct {
	ttl    time.Duration
	shards [numShards]*lru.Cache[[32]byte, ttlEntry[V]]
	// beforeAdd, when set (by tests only, before any use), runs at the start
	// of every add: it widens the window between a lookup's generation
	// check and its insert so that races with evictions show.
	beforeAdd func()
}

type ttlEntry[V any] struct {
	v     V
	until time.Time // has a monotonic reading
}

// newTTLCache returns a cache of about size entries, or nil if ttl is zero
// (caching off). A nil *ttlCache is a valid, always empty cache.
func newTTLCache[V any](size int, ttl time.Duration) *ttlCache[V] {
	if ttl <= 0 {
		return nil
	}
	per := max(1, (size+numShards-1)/numShards)
	c := &ttlCache[V]{ttl: ttl}
	for i := range c.shards {
		c.shards[i], _ = lru.New[[32]byte, ttlEntry[V]](per) // only fails for size <= 0
	}
	return c
}

func (c *ttlCache[V]) shard(k [32]byte) *lru.Cache[[32]byte, ttlEntry[V]] {
	return c.shards[k[0]%numShards]
}

func (c *ttlCache[V]) get(k [32]byte, now time.Time) (V, bool) {
	if c == nil {
		var zero V
		return zero, false
	}
	sh := c.shard(k)
	e, ok := sh.Get(k)
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.until) {
		sh.Remove(k)
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) add(k [32]byte, v V, now time.Time) {
	if c == nil {
		return
	}
	if c.beforeAdd != nil {
		c.beforeAdd()
	}
	c.shard(k).Add(k, ttlEntry[V]{v: v, until: now.Add(c.ttl)})
}

func (c *ttlCache[V]) remove(k [32]byte) {
	if c == nil {
		return
	}
	c.shard(k).Remove(k)
}

func (c *ttlCache[V]) purge() {
	if c == nil {
		return
	}
	for _, sh := range c.shards {
		sh.Purge()
	}
}

func (c *ttlCache[V]) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for _, sh := range c.shards {
		n += sh.Len()
	}
	return n
}

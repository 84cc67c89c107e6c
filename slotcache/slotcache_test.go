package slotcache

import (
	"sync"
	"testing"
)

func TestCache(t *testing.T) {
	c := New[string, int](4)
	if _, ok := c.Get("a"); ok {
		t.Fatal("empty cache has a")
	}
	c.Put("a", 1)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %d, %v, want 1, true", v, ok)
	}
	if old, replaced := c.Swap("a", 2); !replaced || old != 1 {
		t.Fatalf("Swap(a) = %d, %v, want 1, true", old, replaced)
	}
	if v, _ := c.Get("a"); v != 2 {
		t.Fatalf("Get(a) after Swap = %d, want 2", v)
	}
	// A key never returns another key's value, whatever shares its slot.
	one := New[int, int](1)
	one.Put(1, 10)
	one.Put(2, 20)
	if _, ok := one.Get(1); ok {
		t.Error("a replaced key is still found")
	}
	if v, ok := one.Get(2); !ok || v != 20 {
		t.Errorf("Get(2) = %d, %v, want 20, true", v, ok)
	}
}

func TestNew_RefusesNonPowerOfTwo(t *testing.T) {
	for _, n := range []int{0, -1, 3, 6} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", n)
				}
			}()
			New[int, int](n)
		}()
	}
}

func TestCache_ConcurrentUse(t *testing.T) {
	c := New[int, int](8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				k := (i + g) % 16
				c.Put(k, k*10)
				if v, ok := c.Get(k); ok && v != k*10 {
					t.Errorf("Get(%d) = %d, want %d", k, v, k*10)
				}
			}
		})
	}
	wg.Wait()
}

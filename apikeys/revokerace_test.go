package apikeys

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// A revocation that lands while a lookup is between its backend read and its
// positive-cache insert must not leave the revoked key cached: the lookup
// inserts, then re-checks the generation and removes its entry if it moved.
// This stress test overlaps lookups of every key with its revocation, on the
// revoking replica and on another one (which only learns by pub/sub), and
// counts the revoked keys left in a positive cache afterwards.
func TestStore_RevokeRacingLookupLeavesNoStaleEntry(t *testing.T) {
	url := apikeystest.StartRedis(t)
	a := newStore(t, redisConfig(url))
	b := newStore(t, redisConfig(url))
	ctx := context.Background()
	// Yield at every insert, as a busy scheduler would: the race the test
	// is about then shows in a few hundred lookups instead of a few per
	// hundred thousand.
	for _, s := range []*Store{a, b} {
		s.pos.beforeAdd = func() { time.Sleep(rand.N(2 * time.Millisecond)) }
	}

	const (
		numKeys       = 1000
		lookupsPerKey = 10 // per replica: 20,000 overlapping lookups in all
	)
	keys := make([]string, numKeys)
	ids := make([]string, numKeys)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			key, rec, err := a.Create(ctx, CreateOptions{Owner: "alice"})
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			keys[i], ids[i] = key, rec.ID
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	for i := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var inner sync.WaitGroup
			for _, s := range []*Store{a, b} {
				for range lookupsPerKey {
					inner.Add(1)
					go func() {
						defer inner.Done()
						_, _ = s.Lookup(ctx, keys[i])
					}()
				}
			}
			if err := a.Revoke(ctx, ids[i]); err != nil {
				t.Errorf("Revoke: %v", err)
			}
			inner.Wait()
		}()
	}
	wg.Wait()

	// Let b receive every pub/sub eviction: once it has seen the revocation
	// of a sentinel key revoked last, it has seen the earlier ones (one
	// ordered channel).
	b.pos.beforeAdd = nil
	sentinel, rec, err := a.Create(ctx, CreateOptions{Owner: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		_, err := b.Lookup(ctx, sentinel)
		return wantErr(ErrRevoked)(err)
	})
	now := time.Now()
	for name, s := range map[string]*Store{"revoking replica": a, "other replica": b} {
		stale, cached := 0, 0
		for _, key := range keys {
			if rec, ok := s.pos.get(hashKey(key), now); ok {
				cached++
				if rec.RevokedAt.IsZero() {
					stale++
				}
			}
		}
		t.Logf("%s: %d keys cached", name, cached)
		if stale != 0 {
			t.Errorf("%s: %d revoked keys still cached as valid after %d overlapping lookups, want 0",
				name, stale, 2*numKeys*lookupsPerKey)
		}
	}
}

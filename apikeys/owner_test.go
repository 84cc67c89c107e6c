package apikeys

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// testOwnerNamespaces proves that an owner is qualified by its issuer in
// the store: the same owner of two issuers and of the CLI namespace are
// listed and revoked apart, the issuer survives a round trip (and a second
// replica), and MaxLive caps one namespace's live keys atomically.
func testOwnerNamespaces(t *testing.T, s, other *Store) {
	ctx := context.Background()
	const issA, issB = "https://a.example", "https://b.example"
	create := func(o CreateOptions) *Record {
		t.Helper()
		_, rec, err := s.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	a := create(CreateOptions{Owner: "alice", Issuer: issA, TTL: time.Hour})
	b := create(CreateOptions{Owner: "alice", Issuer: issB, TTL: time.Hour})
	cli := create(CreateOptions{Owner: "alice"})
	idsOf := func(recs []*Record, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.ID+"@"+r.Issuer)
		}
		return out
	}
	t.Run("listed per namespace", func(t *testing.T) {
		got := map[string][]string{
			"A":   idsOf(other.ListOwned(ctx, issA, "alice")),
			"B":   idsOf(other.ListOwned(ctx, issB, "alice")),
			"cli": idsOf(other.List(ctx, "alice")),
		}
		want := map[string][]string{"A": {a.ID + "@" + issA}, "B": {b.ID + "@" + issB}, "cli": {cli.ID + "@"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if all := idsOf(other.List(ctx, "")); len(all) != 3 {
			t.Errorf("List all: %v, want 3 keys", all)
		}
	})
	t.Run("max live keys per namespace", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var tooMany, ok int
		for range 8 {
			wg.Go(func() {
				_, _, err := s.Create(ctx, CreateOptions{Owner: "alice", Issuer: issA, TTL: time.Hour, MaxLive: 3})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, ErrTooManyKeys):
					tooMany++
				case err == nil:
					ok++
				default:
					t.Errorf("create: %v", err)
				}
			})
		}
		wg.Wait()
		if ok != 2 || tooMany != 6 {
			t.Errorf("8 concurrent creations under a cap of 3 with 1 live key: %d created, %d refused; want 2 and 6", ok, tooMany)
		}
		// B's alice and the CLI's alice are not counted against A's.
		if _, _, err := s.Create(ctx, CreateOptions{Owner: "alice", Issuer: issB, TTL: time.Hour, MaxLive: 2}); err != nil {
			t.Errorf("B's alice at 1 of 2: %v", err)
		}
	})
	t.Run("revoke every key of one namespace's owner", func(t *testing.T) {
		n, err := other.RevokeOwner(ctx, issA, "alice")
		if err != nil || n != 3 {
			t.Fatalf("RevokeOwner = %d, %v; want 3", n, err)
		}
		if n, err := other.RevokeOwner(ctx, issA, "alice"); err != nil || n != 0 {
			t.Errorf("again: %d, %v; want 0", n, err)
		}
		for _, rec := range []*Record{b, cli} {
			if got, err := other.Get(ctx, rec.ID); err != nil || !got.RevokedAt.IsZero() {
				t.Errorf("%s of %q revoked by A's RevokeOwner: %v", rec.ID, rec.Issuer, err)
			}
		}
		// Revoked keys no longer count against the cap.
		if _, _, err := s.Create(ctx, CreateOptions{Owner: "alice", Issuer: issA, TTL: time.Hour, MaxLive: 1}); err != nil {
			t.Errorf("create after revoking all: %v", err)
		}
		if _, err := other.RevokeOwner(ctx, "", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("RevokeOwner without owner: %v, want ErrInvalid", err)
		}
	})
}

func TestStore_OwnerNamespaces(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		url := apikeystest.StartRedis(t)
		testOwnerNamespaces(t, newStore(t, redisConfig(url)), newStore(t, redisConfig(url)))
	})
	t.Run("embedded", func(t *testing.T) {
		s := newStore(t, Default())
		testOwnerNamespaces(t, s, s)
	})
	t.Run("embedded file", func(t *testing.T) {
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		testOwnerNamespaces(t, newStore(t, cfg), newStore(t, cfg))
	})
}

// TestStore_CappedOwnerSetStaysSmall proves that minting and revoking in a
// loop cannot grow the owner set the capped create script walks: revoked
// ids leave it once it is over 4*cap+16, and they stay refused.
func TestStore_CappedOwnerSetStaysSmall(t *testing.T) {
	url := apikeystest.StartRedis(t)
	s := newStore(t, redisConfig(url))
	ctx := context.Background()
	const capN = 2
	var first string
	for i := range 60 {
		secret, rec, err := s.Create(ctx, CreateOptions{Owner: "loop", Issuer: "https://a.example", TTL: time.Hour, MaxLive: capN})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if i == 0 {
			first = secret
		}
		if err := s.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.be.(*redisBackend).rdb.SCard(ctx, ownerSetKey("https://a.example", "loop")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n > 4*capN+16+1 {
		t.Errorf("owner set holds %d ids after 60 mint-and-revoke rounds, want at most %d", n, 4*capN+17)
	}
	if _, err := s.Lookup(ctx, first); !errors.Is(err, ErrRevoked) {
		t.Errorf("the first, pruned key: %v, want ErrRevoked", err)
	}
}

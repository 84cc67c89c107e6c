package apikeys

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// TestStore_Lookup_KeyErrorNamesKey proves that a refused key is named by its
// id and owner, on the first refusal and on refusals answered from the
// caches, and that the error still matches its sentinel and carries no
// secret or hash.
func TestStore_Lookup_KeyErrorNamesKey(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	s := newStore(t, redisConfig(srv.URL()))

	tests := []struct {
		name string
		// refuse makes the key unusable; it returns whether the next
		// Lookup is answered from the positive cache.
		refuse func(t *testing.T, key string, rec *Record) (fromCache bool)
		ttl    time.Duration
		want   error
	}{
		{
			name: "revoked key, then from the negative cache",
			refuse: func(t *testing.T, _ string, rec *Record) bool {
				if err := s.Revoke(ctx, rec.ID); err != nil {
					t.Fatal(err)
				}
				return false
			},
			want: ErrRevoked,
		},
		{
			name: "record past its expires_at, then from the negative cache",
			refuse: func(t *testing.T, _ string, rec *Record) bool {
				past := time.Now().Add(-time.Minute).UTC().Format(timeLayout)
				if err := rdb.HSet(ctx, "extauthz:{apikeys}:key:"+rec.Hash, "expires_at", past).Err(); err != nil {
					t.Fatal(err)
				}
				return false
			},
			want: ErrExpired,
		},
		{
			name: "key expires while positively cached",
			ttl:  300 * time.Millisecond,
			refuse: func(t *testing.T, key string, rec *Record) bool {
				if _, err := s.Lookup(ctx, key); err != nil {
					t.Fatalf("Lookup before expiry: %v", err)
				}
				time.Sleep(time.Until(rec.ExpiresAt) + 20*time.Millisecond)
				return true
			},
			want: ErrExpired,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, rec, err := s.Create(ctx, CreateOptions{Owner: "alice@example.com", TTL: tt.ttl})
			if err != nil {
				t.Fatal(err)
			}
			fromCache := tt.refuse(t, key, rec)
			want := &KeyError{Err: tt.want, ID: rec.ID, Owner: rec.Owner}
			// The first refusal comes from Redis unless the record was
			// cached.
			before := hgetallCalls(t, rdb)
			_, err = s.Lookup(ctx, key)
			checkKeyError(t, err, want, key, rec.Hash)
			if calls, wantCalls := hgetallCalls(t, rdb)-before, map[bool]int{true: 0, false: 1}[fromCache]; calls != wantCalls {
				t.Errorf("first lookup: HGETALL calls = %d, want %d", calls, wantCalls)
			}
			// A later one is answered from a cache (once the store's own
			// invalidation event, which may evict the first answer, has
			// come back) and names the key all the same.
			eventually(t, 2*time.Second, func() error {
				before := hgetallCalls(t, rdb)
				_, err := s.Lookup(ctx, key)
				checkKeyError(t, err, want, key, rec.Hash)
				if calls := hgetallCalls(t, rdb) - before; calls != 0 {
					return errors.New("lookup not answered from a cache")
				}
				return nil
			})
		})
	}
}

func checkKeyError(t *testing.T, err error, want *KeyError, secret, hash string) {
	t.Helper()
	if !errors.Is(err, want.Err) {
		t.Fatalf("Lookup = %v, want %v", err, want.Err)
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("Lookup = %T %v, want a *KeyError", err, err)
	}
	if diff := cmp.Diff(*want, *ke, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("KeyError (-want +got):\n%s", diff)
	}
	msg := err.Error()
	if strings.Contains(msg, secret) || strings.Contains(msg, hash) || strings.Contains(msg, hash[:8]) {
		t.Errorf("error %q contains the key or its hash", msg)
	}
	if !strings.Contains(msg, want.ID) {
		t.Errorf("error %q does not name the key id %s", msg, want.ID)
	}
}

func TestKeyError(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		want    error
		notWant error
		msg     string
	}{
		{"expired", &KeyError{Err: ErrExpired, ID: "key_abc", Owner: "alice"}, ErrExpired, ErrRevoked, "apikeys: key key_abc: api key expired"},
		{"revoked", &KeyError{Err: ErrRevoked, ID: "key_abc", Owner: "alice"}, ErrRevoked, ErrExpired, "apikeys: key key_abc: api key revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.want)
			}
			if errors.Is(tt.err, tt.notWant) || errors.Is(tt.err, ErrNotFound) {
				t.Errorf("%v matches another sentinel", tt.err)
			}
			if got := tt.err.Error(); got != tt.msg {
				t.Errorf("Error() = %q, want %q", got, tt.msg)
			}
			if got := resultOf(tt.err); resultNames[got] != tt.name {
				t.Errorf("resultOf = %s, want %s", resultNames[got], tt.name)
			}
		})
	}
}

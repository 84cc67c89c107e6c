package apikeys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// testTimeout is the Redis timeout of most tests: generous, because -race on
// a busy machine is slow, yet far below the test deadlines.
const testTimeout = 500 * time.Millisecond

func redisConfig(addrs ...string) Config {
	cfg := Default()
	cfg.Redis = &RedisConfig{Addrs: addrs, Timeout: testTimeout}
	return cfg
}

// newStore returns a Store closed in t.Cleanup. A Redis store is returned
// once its invalidation subscription is up: before that it caches nothing.
func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s := newStoreNoWait(t, cfg)
	if cfg.Redis != nil {
		waitLive(t, s)
	}
	return s
}

// waitLive waits until the store's invalidation subscription is up.
func waitLive(t testing.TB, s *Store) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if !s.live.Load() {
			return errors.New("invalidation subscription not up")
		}
		return nil
	})
}

func newStoreNoWait(t testing.TB, cfg Config) *Store {
	t.Helper()
	return newStoreWith(t, cfg, Deps{})
}

func newStoreWith(t testing.TB, cfg Config, deps Deps) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eventually retries f every 10ms until it returns nil or within has passed,
// and returns how long that took.
func eventually(t testing.TB, within time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("not within %s: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantErr(want error) func(error) error {
	return func(err error) error {
		if !errors.Is(err, want) {
			return errors.New("got " + errString(err) + ", want " + want.Error())
		}
		return nil
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

var ignoreTimes = cmpopts.IgnoreFields(Record{}, "CreatedAt", "ExpiresAt", "RevokedAt")

// testLifecycle runs create, lookup, get, list, revoke and the error cases
// against a store. other is a second store on the same data (another
// replica), or s itself.
func testLifecycle(t *testing.T, s, other *Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)

	aliceKey, alice, err := s.Create(ctx, CreateOptions{
		Owner: "alice@example.com", Groups: []string{"ml-team", "eng", "eng"}, Roles: []string{"developer"},
		Description: "notebook, laptop", TTL: time.Hour,
	})
	if err != nil {
		t.Fatalf("Create(alice): %v", err)
	}
	time.Sleep(2 * time.Millisecond) // created_at has millisecond precision
	bobKey, bob, err := s.Create(ctx, CreateOptions{Owner: "bob"})
	if err != nil {
		t.Fatalf("Create(bob): %v", err)
	}

	if err := CheckFormat(s.Prefix(), aliceKey); err != nil {
		t.Errorf("created key fails CheckFormat: %v", err)
	}
	wantAlice := &Record{
		ID: alice.ID, Owner: "alice@example.com", Groups: []string{"eng", "ml-team"}, Roles: []string{"developer"},
		Description: "notebook, laptop", Hash: hexHash(hashKey(aliceKey)),
	}
	if diff := cmp.Diff(wantAlice, alice, ignoreTimes); diff != "" {
		t.Errorf("created record (-want +got):\n%s", diff)
	}
	if !ValidID(alice.ID) || alice.ID == bob.ID {
		t.Errorf("ids %q, %q: want two distinct valid ids", alice.ID, bob.ID)
	}
	if alice.CreatedAt.Before(before) || !alice.ExpiresAt.Equal(alice.CreatedAt.Add(time.Hour)) {
		t.Errorf("created %v expires %v: want now and an hour later", alice.CreatedAt, alice.ExpiresAt)
	}
	if !bob.ExpiresAt.IsZero() {
		t.Errorf("bob's key without TTL expires at %v, want never", bob.ExpiresAt)
	}

	for _, st := range []*Store{s, other} {
		got, err := st.Lookup(ctx, aliceKey)
		if err != nil {
			t.Fatalf("Lookup(alice): %v", err)
		}
		if diff := cmp.Diff(alice, got); diff != "" {
			t.Errorf("Lookup(alice) (-want +got):\n%s", diff)
		}
		if got, err := st.Get(ctx, bob.ID); err != nil || !cmp.Equal(bob, got) {
			t.Errorf("Get(bob) = %+v, %v; want %+v", got, err, bob)
		}
	}

	list, err := other.List(ctx, "alice@example.com")
	if err != nil || len(list) != 1 || list[0].ID != alice.ID {
		t.Errorf("List(alice) = %v, %v; want alice's key", list, err)
	}
	all, err := other.List(ctx, "")
	if err != nil {
		t.Fatalf("List(all): %v", err)
	}
	if diff := cmp.Diff([]*Record{alice, bob}, all); diff != "" {
		t.Errorf("List(all) sorted by creation (-want +got):\n%s", diff)
	}

	if err := s.Revoke(ctx, alice.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	for _, st := range []*Store{s, other} {
		eventually(t, time.Second, func() error {
			_, err := st.Lookup(ctx, aliceKey)
			return wantErr(ErrRevoked)(err)
		})
	}
	if _, err := other.Lookup(ctx, bobKey); err != nil {
		t.Errorf("Lookup(bob) after revoking alice: %v", err)
	}
	revoked, err := other.Get(ctx, alice.ID)
	if err != nil || revoked.RevokedAt.IsZero() || revoked.Status(time.Now()) != "revoked" {
		t.Fatalf("Get(revoked) = %+v, %v; want a tombstone", revoked, err)
	}
	if err := other.Revoke(ctx, alice.ID); err != nil {
		t.Errorf("second Revoke: %v, want nil", err)
	}
	again, _ := s.Get(ctx, alice.ID)
	if again == nil || !again.RevokedAt.Equal(revoked.RevokedAt) {
		t.Errorf("second Revoke changed revoked_at from %v to %+v", revoked.RevokedAt, again)
	}
	if all, _ := s.List(ctx, ""); len(all) != 2 {
		t.Errorf("List after revoke has %d keys, want 2 (tombstone listed)", len(all))
	}

	errTests := []struct {
		name string
		f    func() error
		want error
	}{
		{"lookup unknown key", func() error { _, err := s.Lookup(ctx, mustKey(t, s.Prefix())); return err }, ErrNotFound},
		{"lookup malformed key", func() error { _, err := s.Lookup(ctx, aliceKey[:len(aliceKey)-1]+"!"); return err }, ErrMalformed},
		{"lookup key of other prefix", func() error { _, err := s.Lookup(ctx, mustKey(t, "zz")); return err }, ErrMalformed},
		{"get unknown id", func() error { _, err := s.Get(ctx, "key_000000000000"); return err }, ErrNotFound},
		{"get malformed id", func() error { _, err := s.Get(ctx, "../etc"); return err }, ErrNotFound},
		{"revoke unknown id", func() error { return s.Revoke(ctx, "key_000000000000") }, ErrNotFound},
		{"create without owner", func() error { _, _, err := s.Create(ctx, CreateOptions{}); return err }, ErrInvalid},
		{"create with header injection", func() error {
			_, _, err := s.Create(ctx, CreateOptions{Owner: "eve\r\nx-auth-roles: admin"})
			return err
		}, ErrInvalid},
		{"create with comma in group", func() error {
			_, _, err := s.Create(ctx, CreateOptions{Owner: "eve", Groups: []string{"a,admins"}})
			return err
		}, ErrInvalid},
		{"create with negative ttl", func() error { _, _, err := s.Create(ctx, CreateOptions{Owner: "eve", TTL: -time.Second}); return err }, ErrInvalid},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if l, _ := s.List(ctx, "eve"); len(l) != 0 {
		t.Errorf("refused creates left keys: %v", l)
	}
}

func TestStore_Lifecycle(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		url := apikeystest.StartRedis(t)
		testLifecycle(t, newStore(t, redisConfig(url)), newStore(t, redisConfig(url)))
	})
	t.Run("redis cluster", func(t *testing.T) {
		addrs := apikeystest.StartCluster(t)
		// Each replica knows a different seed node.
		a := newStore(t, redisConfig(addrs...))
		b := newStore(t, redisConfig(addrs[2], addrs[0], addrs[1]))
		testLifecycle(t, a, b)
	})
	t.Run("redis sentinel", func(t *testing.T) {
		addr, master := apikeystest.StartSentinel(t)
		cfg := redisConfig(addr)
		cfg.Redis.MasterName = master
		testLifecycle(t, newStore(t, cfg), newStore(t, cfg))
	})
	t.Run("embedded", func(t *testing.T) {
		s := newStore(t, Default())
		if !s.Embedded() {
			t.Fatal("Embedded() = false without a redis section")
		}
		testLifecycle(t, s, s)
	})
	t.Run("embedded file", func(t *testing.T) {
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		testLifecycle(t, newStore(t, cfg), newStore(t, cfg))
	})
}

func TestStore_RedisSchema(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	s := newStore(t, redisConfig(srv.URL()))
	ctx := context.Background()
	key, rec, err := s.Create(ctx, CreateOptions{Owner: "alice", Groups: []string{"eng"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	recordKey := "extauthz:{apikeys}:key:" + rec.Hash
	got, err := rdb.HGetAll(ctx, recordKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id": rec.ID, "owner": "alice", "groups": `["eng"]`, "roles": "[]", "description": "",
		"created_at": rec.CreatedAt.Format(timeLayout), "expires_at": rec.ExpiresAt.Format(timeLayout), "revoked_at": "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record hash (-want +got):\n%s", diff)
	}
	if h, _ := rdb.Get(ctx, "extauthz:{apikeys}:id:"+rec.ID).Result(); h != rec.Hash {
		t.Errorf("id index = %q, want %q", h, rec.Hash)
	}
	if ok, _ := rdb.SIsMember(ctx, "extauthz:{apikeys}:owner:alice", rec.ID).Result(); !ok {
		t.Error("id missing from owner set")
	}
	if o, _ := rdb.HGet(ctx, "extauthz:{apikeys}:ids", rec.ID).Result(); o != "alice" {
		t.Errorf("ids[%s] = %q, want alice", rec.ID, o)
	}
	for _, k := range []string{recordKey, "extauthz:{apikeys}:id:" + rec.ID} {
		at, _ := rdb.PExpireTime(ctx, k).Result()
		if at != time.Duration(rec.ExpiresAt.UnixMilli())*time.Millisecond {
			t.Errorf("PEXPIRETIME %s = %v, want expires_at %v", k, at, rec.ExpiresAt.UnixMilli())
		}
	}
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if strings.Contains(k, key) {
			t.Errorf("the secret appears in Redis key %q", k)
		}
	}

	// Revocation keeps a tombstone until the key's own expiry (sooner than
	// 30 days here)...
	if err := s.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if at, _ := rdb.PExpireTime(ctx, recordKey).Result(); at != time.Duration(rec.ExpiresAt.UnixMilli())*time.Millisecond {
		t.Errorf("tombstone of expiring key expires at %v, want its expires_at", at)
	}
	// ... or for TombstoneTTL.
	_, forever, _ := s.Create(ctx, CreateOptions{Owner: "bob"})
	if ttl, _ := rdb.PTTL(ctx, "extauthz:{apikeys}:key:"+forever.Hash).Result(); ttl != -1 {
		t.Errorf("PTTL of key without TTL = %v, want none", ttl)
	}
	_ = s.Revoke(ctx, forever.ID)
	ttl, _ := rdb.PTTL(ctx, "extauthz:{apikeys}:key:"+forever.Hash).Result()
	if ttl < TombstoneTTL-time.Minute || ttl > TombstoneTTL {
		t.Errorf("tombstone PTTL = %v, want about %v", ttl, TombstoneTTL)
	}
}

// changeLast returns key with its last character replaced by another base62
// character.
func changeLast(key string) string {
	c := byte('X')
	if key[len(key)-1] == c {
		c = 'Y'
	}
	return key[:len(key)-1] + string(c)
}

// hgetallCalls returns how many HGETALL commands the server has run.
func hgetallCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_hgetall:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestStore_Lookup_RedisRoundTrips(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	s := newStore(t, redisConfig(srv.URL()))
	ctx := context.Background()
	key, _, err := s.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	unknown := mustKey(t, "ek")
	bad := []string{
		"", "ek_", "ek_short", changeLast(key), key + "0", strings.Repeat("a", 10000),
		"ek_" + strings.Repeat("0", 36), strings.ToUpper(key[:2]) + key[2:],
	}
	tests := []struct {
		name  string
		keys  []string
		want  error
		calls int
	}{
		{"malformed keys never reach redis", bad, ErrMalformed, 0},
		{"first lookup of a key is one HGETALL", []string{key}, nil, 1},
		{"found key is then cached", []string{key, key, key}, nil, 0},
		{"unknown key is one HGETALL", []string{unknown}, ErrNotFound, 1},
		{"unknown key is then negatively cached", []string{unknown, unknown}, ErrNotFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hgetallCalls(t, rdb)
			for _, k := range tt.keys {
				if _, err := s.Lookup(ctx, k); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Errorf("Lookup(%.20q) = %v, want %v", k, err, tt.want)
				}
			}
			if got := hgetallCalls(t, rdb) - before; got != tt.calls {
				t.Errorf("HGETALL calls = %d, want %d", got, tt.calls)
			}
		})
	}
}

func TestStore_Expiry(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	cached := newStore(t, redisConfig(srv.URL()))
	uncachedCfg := redisConfig(srv.URL())
	uncachedCfg.CacheTTL, uncachedCfg.NegativeCacheTTL = 0, 0
	uncached := newStore(t, uncachedCfg)

	const ttl = 300 * time.Millisecond
	key, rec, err := cached.Create(ctx, CreateOptions{Owner: "alice", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Lookup(ctx, key); err != nil {
		t.Fatalf("Lookup before expiry: %v", err)
	}
	if pttl, _ := rdb.PTTL(ctx, "extauthz:{apikeys}:key:"+rec.Hash).Result(); pttl <= 0 || pttl > ttl {
		t.Errorf("PTTL = %v, want in (0, %v]", pttl, ttl)
	}
	time.Sleep(time.Until(rec.ExpiresAt) + 20*time.Millisecond)

	// The cache still holds the record: expires_at is checked on hits too.
	if _, err := cached.Lookup(ctx, key); !errors.Is(err, ErrExpired) {
		t.Errorf("cached Lookup after expiry = %v, want ErrExpired", err)
	}
	// Redis has deleted it.
	if _, err := uncached.Lookup(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("uncached Lookup after expiry = %v, want ErrNotFound", err)
	}
	if n, _ := rdb.Exists(ctx, "extauthz:{apikeys}:key:"+rec.Hash, "extauthz:{apikeys}:id:"+rec.ID).Result(); n != 0 {
		t.Errorf("%d entries of the expired key left in Redis", n)
	}
	// List drops it from the indexes.
	if l, err := cached.List(ctx, ""); err != nil || len(l) != 0 {
		t.Errorf("List after expiry = %v, %v; want none", l, err)
	}
	if n, _ := rdb.HLen(ctx, "extauthz:{apikeys}:ids").Result(); n != 0 {
		t.Errorf("ids index still has %d entries after List", n)
	}

	// A record Redis has not deleted (clock skew between Redis and us) is
	// refused by its expires_at.
	key2, rec2, err := uncached.Create(ctx, CreateOptions{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(timeLayout)
	rdb.HSet(ctx, "extauthz:{apikeys}:key:"+rec2.Hash, "expires_at", past)
	if _, err := uncached.Lookup(ctx, key2); !errors.Is(err, ErrExpired) {
		t.Errorf("Lookup of record with past expires_at = %v, want ErrExpired", err)
	}
}

func TestStore_Revoke_ReachesOtherReplicaWithinASecond(t *testing.T) {
	url := apikeystest.StartRedis(t)
	a := newStore(t, redisConfig(url))
	b := newStore(t, redisConfig(url)) // another replica: its own client and caches
	ctx := context.Background()
	key, rec, err := a.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.pos.get(hashKey(key), time.Now()); !ok {
		t.Fatal("key not in b's cache: the test would prove nothing")
	}
	if err := a.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, func() error {
		_, err := b.Lookup(ctx, key)
		return wantErr(ErrRevoked)(err)
	})
	t.Logf("revocation seen by the other replica after %v", took)
}

func TestStore_RedisOutage(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	cfg := redisConfig(srv.URL())
	cfg.Redis.Timeout = 200 * time.Millisecond
	s := newStore(t, cfg)
	cachedKey, _, err := s.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := s.Create(ctx, CreateOptions{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, cachedKey); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if _, err := s.Lookup(ctx, cachedKey); err != nil {
		t.Errorf("cached key during outage: %v, want found", err)
	}
	// The bound is loose (a busy machine is slow) but far below go-redis's
	// own 5s dial and 3s read timeouts, which apply if Timeout does not.
	start := time.Now()
	_, err = s.Lookup(ctx, otherKey)
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > cfg.Redis.Timeout+time.Second {
		t.Errorf("uncached key during outage: %v after %v, want ErrUnavailable within %v", err, took, cfg.Redis.Timeout)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping during outage = %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Create(ctx, CreateOptions{Owner: "carol"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Create during outage = %v, want ErrUnavailable", err)
	}

	srv.Start()
	eventually(t, 5*time.Second, func() error { return s.Ping(ctx) })
	eventually(t, 5*time.Second, func() error { _, err := s.Lookup(ctx, otherKey); return err })
	if _, err := s.Lookup(ctx, cachedKey); err != nil {
		t.Errorf("cached key after restart: %v", err)
	}
}

func TestStore_Lookup_TimeoutOnHungRedis(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	cfg := redisConfig(srv.URL())
	cfg.Redis.Timeout = 150 * time.Millisecond
	s := newStore(t, cfg)
	key, _, err := s.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	s.flush()
	// A store whose own timeout is far longer than the caller's deadline
	// below, so that only the caller's deadline can end that lookup early.
	slowCfg := redisConfig(srv.URL())
	slowCfg.Redis.Timeout = 5 * time.Second
	slow := newStore(t, slowCfg)

	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	_, err = s.Lookup(ctx, key)
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lookup on hung Redis = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	// The upper bound is loose (a busy machine is slow) but far below
	// go-redis's own 3s read timeout, which applies if Timeout does not.
	if took < cfg.Redis.Timeout/2 || took > cfg.Redis.Timeout+time.Second {
		t.Errorf("Lookup on hung Redis took %v, want about %v", took, cfg.Redis.Timeout)
	}
	// A shorter deadline of the caller (check_timeout) wins: the lookup
	// ends with DeadlineExceeded well before the store's own 5s timeout
	// (the bound is loose: a busy machine is slow).
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := slow.Lookup(short, key); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("Lookup with 30ms deadline = %v after %v, want DeadlineExceeded well before the 5s store timeout", err, time.Since(start))
	}
	srv.Resume()
	eventually(t, 5*time.Second, func() error { _, err := s.Lookup(ctx, key); return err })
}

// A revocation published while one replica's subscription is down must not
// live on in that replica's cache once it reconnects.
func TestStore_MissedRevocationFlushedOnResubscribe(t *testing.T) {
	url := apikeystest.StartRedis(t)
	proxy := apikeystest.NewProxy(t, url)
	ctx := context.Background()
	admin := newStore(t, redisConfig(url))
	replica := newStore(t, redisConfig(proxy.URL()))

	key, rec, err := admin.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Lookup(ctx, key); err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	if err := admin.Revoke(ctx, rec.ID); err != nil { // published while replica is cut off
		t.Fatal(err)
	}
	if _, err := replica.Lookup(ctx, key); err != nil {
		t.Errorf("cut-off replica refuses its cached key: %v (it cannot know yet)", err)
	}

	proxy.Restore()
	took := eventually(t, 5*time.Second, func() error {
		_, err := replica.Lookup(ctx, key)
		return wantErr(ErrRevoked)(err)
	})
	t.Logf("revocation enforced %v after the link came back", took)
}

// Events on the channel evict single hashes, and "*" flushes everything.
func TestStore_Events(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	s := newStore(t, redisConfig(srv.URL()))
	ctx := context.Background()
	k1, r1, _ := s.Create(ctx, CreateOptions{Owner: "a"})
	k2, _, _ := s.Create(ctx, CreateOptions{Owner: "b"})
	for _, k := range []string{k1, k2} {
		if _, err := s.Lookup(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	inCache := func(k string) bool { _, ok := s.pos.get(hashKey(k), time.Now()); return ok }

	rdb.Publish(ctx, EventsChannel, r1.Hash)
	eventually(t, time.Second, func() error {
		if inCache(k1) {
			return errors.New("k1 still cached")
		}
		return nil
	})
	if !inCache(k2) {
		t.Error("an event for k1 evicted k2")
	}
	rdb.Publish(ctx, EventsChannel, "not a hash")
	rdb.Publish(ctx, EventsChannel, "*")
	eventually(t, time.Second, func() error {
		if inCache(k2) {
			return errors.New("k2 still cached after flush event")
		}
		return nil
	})
}

func TestStore_EmbeddedFileSharedBetweenProcesses(t *testing.T) {
	cfg := Default()
	cfg.File = filepath.Join(t.TempDir(), "keys.json")
	ctx := context.Background()
	server := newStore(t, cfg) // stands for `make run`
	cli := newStore(t, cfg)    // stands for `extauthz keys create`

	key, rec, err := cli.Create(ctx, CreateOptions{Owner: "alice", Roles: []string{"developer"}})
	if err != nil {
		t.Fatal(err)
	}
	// Works at once: a lookup miss re-reads a changed file.
	got, err := server.Lookup(ctx, key)
	if err != nil || got.ID != rec.ID {
		t.Fatalf("server Lookup of key created by the CLI = %v, %v", got, err)
	}

	fi, err := os.Stat(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("keys file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(cfg.File)
	if strings.Contains(string(data), key) || strings.Contains(string(data), key[3:]) {
		t.Error("keys file contains the secret")
	}
	if !strings.Contains(string(data), rec.Hash) {
		t.Error("keys file lacks the key's hash")
	}

	// A revocation by another process reaches the running server through
	// the mtime poll.
	if err := cli.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 3*filePollInterval, func() error {
		_, err := server.Lookup(ctx, key)
		return wantErr(ErrRevoked)(err)
	})
	t.Logf("file revocation seen after %v", took)

	// A third process starting now sees both.
	third := newStore(t, cfg)
	if l, err := third.List(ctx, ""); err != nil || len(l) != 1 || l[0].RevokedAt.IsZero() {
		t.Errorf("List from a new process = %v, %v", l, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(cfg.File)); len(entries) != 1 {
		t.Errorf("directory holds %d files, want only keys.json (no temp files left)", len(entries))
	}
}

func TestNew_EmbeddedFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
	}{
		{"not json", "{"},
		{"unknown field", `{"version":1,"keys":[],"extra":1}`},
		{"wrong version", `{"version":2,"keys":[]}`},
		{"bad hash", `{"version":1,"keys":[{"id":"key_000000000000","hash":"xyz","owner":"a","created_at":"2025-01-01T00:00:00Z"}]}`},
		{"bad id", `{"version":1,"keys":[{"id":"k","hash":"` + strings.Repeat("a", 64) + `","owner":"a","created_at":"2025-01-01T00:00:00Z"}]}`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.File = filepath.Join(dir, strconv.Itoa(i)+".json")
			if err := os.WriteFile(cfg.File, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if s, err := New(context.Background(), cfg, Deps{}); err == nil {
				s.Close()
				t.Error("New accepted a bad keys file")
			}
		})
	}
	cfg := Default()
	cfg.File = filepath.Join(dir, "missing.json")
	s := newStore(t, cfg)
	if l, err := s.List(context.Background(), ""); err != nil || len(l) != 0 {
		t.Errorf("missing file: List = %v, %v; want an empty store", l, err)
	}
}

func TestNew_UnreachableRedisIsNotAnError(t *testing.T) {
	cfg := redisConfig("unix://" + filepath.Join(t.TempDir(), "nothing.sock"))
	start := time.Now()
	s := newStoreNoWait(t, cfg)
	if took := time.Since(start); took > 2*testTimeout {
		t.Errorf("New blocked %v on an unreachable Redis", took)
	}
	ctx := context.Background()
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	if _, err := s.Lookup(ctx, mustKey(t, "ek")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lookup = %v, want ErrUnavailable", err)
	}
}

func TestNew_RedisPassword(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := redisConfig(srv.URL())
	cfg.Redis.PasswordFile = pw
	if err := newStore(t, cfg).Ping(ctx); err != nil {
		t.Errorf("Ping with password_file: %v", err)
	}

	if err := newStoreWith(t, redisConfig(srv.URL()), Deps{Password: "s3cret"}).Ping(ctx); err != nil {
		t.Errorf("Ping with Deps.Password: %v", err)
	}
	err := newStoreWith(t, redisConfig(srv.URL()), Deps{Password: "wrong"}).Ping(ctx)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with a wrong password = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q contains the password", err)
	}

	cfg.Redis.PasswordFile = filepath.Join(dir, "missing")
	if _, err := New(ctx, cfg, Deps{}); err == nil {
		t.Error("New accepted an unreadable password_file")
	}
}

func TestStore_Lookup_CacheHitDoesNotAllocate(t *testing.T) {
	url := apikeystest.StartRedis(t)
	s := newStore(t, redisConfig(url))
	ctx := context.Background()
	key, _, err := s.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, key); err != nil {
		t.Fatal(err)
	}
	bad := key[:len(key)-1] + "!"
	tests := []struct {
		name string
		key  string
	}{
		{"cache hit", key},
		{"malformed", bad},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(200, func() { _, _ = s.Lookup(ctx, tt.key) }); n != 0 {
			t.Errorf("%s: Lookup allocates %v times, want 0", tt.name, n)
		}
	}
}

// The ACL documented in doc.go is enough: a user confined to the namespace,
// the channel and the listed commands can run the whole lifecycle.
func TestStore_RedisACL(t *testing.T) {
	srv := apikeystest.StartServer(t)
	ctx := context.Background()
	acl := []any{"acl", "setuser", "extauthz", "reset", "on", ">s3cret",
		"~extauthz:{apikeys}:*", "resetchannels", "&extauthz:apikeys:events",
		"+hello", "+auth", "+client|setname", "+ping", "+hgetall", "+subscribe",
		"+get", "+smembers", "+hdel", "+srem", "+evalsha", "+eval",
		"+exists", "+hset", "+hget", "+set", "+sadd", "+pexpireat", "+publish"}
	if err := srv.Client(t).Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := redisConfig(srv.URL())
	cfg.Redis.Username, cfg.Redis.PasswordFile = "extauthz", pw
	testLifecycle(t, newStore(t, cfg), newStore(t, cfg))
}

// A subscription whose server stops answering (a black-holed network) is
// noticed by its PINGs and replaced, and the caches are flushed once it is
// back.
func TestStore_HungSubscriptionIsReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("waits several ping intervals")
	}
	srv := apikeystest.StartServer(t)
	s := newStore(t, redisConfig(srv.URL()))
	ctx := context.Background()
	key, _, err := s.Create(ctx, CreateOptions{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, key); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	took := eventually(t, staleAfter+3*pingInterval, func() error {
		if s.live.Load() {
			return errors.New("subscription still considered up")
		}
		return nil
	})
	t.Logf("hung subscription noticed after %v", took)
	if _, err := s.Lookup(ctx, key); err != nil {
		t.Errorf("cached key while Redis hangs: %v", err)
	}
	srv.Resume()
	resumed = true
	waitLive(t, s)
	if n := s.pos.len(); n != 0 {
		t.Errorf("%d cache entries survived the gap, want a flush", n)
	}
}

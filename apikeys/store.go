package apikeys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Deps are the Store's collaborators. Both may be nil: a nil Logger discards,
// nil Metrics are created unregistered.
type Deps struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Password is the Redis password used when api_keys.redis.password_file
	// is empty. cmd/extauthz reads it from the REDIS_PASSWORD environment
	// variable; this package never reads the environment.
	Password string
}

// backend is where records live: Redis or the embedded map.
type backend interface {
	// lookup returns the record with this hash (revoked and expired ones
	// too), ErrNotFound, or an error matching ErrUnavailable.
	lookup(ctx context.Context, sum [32]byte) (*Record, error)
	// create stores rec atomically; errIDTaken if the id is in use, an
	// error matching ErrTooManyKeys if maxLive > 0 and the owner has that
	// many live keys.
	create(ctx context.Context, rec *Record, maxLive int) error
	get(ctx context.Context, id string) (*Record, error)
	// list returns the records of owner in issuer's namespace, or every
	// record when owner is "".
	list(ctx context.Context, issuer, owner string) ([]*Record, error)
	// revoke marks rec (as read by get) revoked at t.
	revoke(ctx context.Context, rec *Record, t time.Time) error
	ping(ctx context.Context) error
	close() error
}

// errIDTaken is returned by backend.create when the id exists already; Create
// retries with a fresh one.
var errIDTaken = errors.New("id taken")

// Store holds API keys and answers lookups. It is safe for concurrent use.
type Store struct {
	prefix   string
	embedded bool
	source   int // srcRedis or srcMemory
	be       backend
	m        *Metrics
	log      *slog.Logger
	timeout  time.Duration // per Redis call
	opTime   time.Duration // whole admin operation

	pos *ttlCache[*Record]
	neg *ttlCache[error]
	// live is true while the invalidation subscription is up. Answers are
	// only added to the caches then: while it is down, an eviction could be
	// missed. Entries cached before keep being served until they expire (the
	// outage behaviour), and the caches are flushed when it comes back.
	live atomic.Bool
	// posGen and negGen change whenever cached answers may have become stale
	// (an eviction or a flush). A lookup that went to the backend caches its
	// answer, then removes it again if the generation changed since before
	// its backend read, so an eviction that raced with it cannot be undone
	// by it.
	posGen, negGen atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// New builds a Store from a validated Config. With cfg.Redis set it connects
// to Redis in the background: an unreachable Redis is not an error (the Store
// is not ready, see Ping, and recovers by itself). cfg must have passed
// Validate (config.Load does that); New does not check it again. An
// unreadable password or CA file, or an unreadable embedded-store file is an
// error. Close the Store when done.
func New(ctx context.Context, cfg Config, deps Deps) (*Store, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := deps.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &Store{prefix: cfg.Prefix, m: m, log: log}
	if cfg.Redis == nil {
		be, err := newMemBackend(cfg.File, log)
		if err != nil {
			return nil, err
		}
		s.be, s.embedded, s.source = be, true, srcMemory
		s.timeout, s.opTime = time.Second, 5*time.Second
		log.LogAttrs(ctx, slog.LevelWarn, "embedded api key store is for development only: keys are not shared between replicas",
			slog.String("file", cfg.File))
		return s, nil
	}
	s.timeout = cfg.Redis.CallTimeout()
	s.opTime = max(10*s.timeout, 5*time.Second)
	s.pos = newTTLCache[*Record](cfg.CacheSize, cfg.CacheTTL)
	s.neg = newTTLCache[error](cfg.CacheSize, cfg.NegativeCacheTTL)
	be, err := newRedisBackend(ctx, *cfg.Redis, redisHooks{
		log:      log,
		m:        m,
		evict:    s.evict,
		evictNeg: s.evictNegative,
		flush:    s.flush,
		setLive:  s.live.Store,
		password: deps.Password,
	})
	if err != nil {
		return nil, err
	}
	s.be, s.source = be, srcRedis
	return s, nil
}

// Lookup resolves a presented key. It is the hot path: the shape and checksum
// are checked locally (ErrMalformed never reaches Redis), the SHA-256 of the
// key is looked up in the positive and negative caches, and only then in the
// backend, with one HGETALL bounded by the Redis timeout. Expiry is checked on
// every answer, cached or not.
//
// It returns the record, or ErrMalformed, ErrNotFound, a *KeyError matching
// ErrRevoked or ErrExpired (with the key's id and owner, also when the
// refusal comes from a cache), an error matching ErrCorrupt and ErrNotFound
// when the stored record cannot be decoded (logged at Warn), or an error
// matching ErrUnavailable (and context.DeadlineExceeded on a timeout) when the
// backend cannot answer and nothing is cached. The returned Record is shared and must not be modified.
func (s *Store) Lookup(ctx context.Context, key string) (*Record, error) {
	if CheckFormat(s.prefix, key) != nil {
		s.m.lookup(srcLocal, resMalformed)
		return nil, ErrMalformed
	}
	sum := hashKey(key)
	now := time.Now()
	if rec, ok := s.pos.get(sum, now); ok {
		if err := rec.check(now); err != nil {
			s.m.lookup(srcCache, resultOf(err))
			return nil, err
		}
		s.m.lookup(srcCache, resFound)
		return rec, nil
	}
	if err, ok := s.neg.get(sum, now); ok {
		s.m.lookup(srcCache, resultOf(err))
		return nil, err
	}
	return s.lookupBackend(ctx, sum, now)
}

func (s *Store) lookupBackend(ctx context.Context, sum [32]byte, now time.Time) (*Record, error) {
	posGen, negGen := s.posGen.Load(), s.negGen.Load()
	var rec *Record
	var err error
	if s.embedded {
		rec, err = s.be.lookup(ctx, sum) // a map read: no deadline needed
	} else {
		cctx, cancel := s.callContext(ctx, s.timeout)
		rec, err = s.be.lookup(cctx, sum)
		cancel()
	}
	if err == nil {
		err = rec.check(time.Now())
	}
	res := resultOf(err)
	s.m.lookup(s.source, res)
	if res == resError {
		return nil, err
	}
	if res == resCorrupt {
		// Refused like an unknown key, and cached like one, so this line
		// comes at most once per negative_cache_ttl per key and replica
		// while the caches work.
		s.log.LogAttrs(ctx, slog.LevelWarn, "api key record is corrupt; the key is refused until the record is fixed or the key is replaced",
			slog.String("key_hash", HashPrefix(hexHash(sum))), slog.String("err", err.Error()))
	}
	if s.live.Load() {
		// Insert, then re-check the generation and take the entry back out
		// if it moved: an eviction that ran between a check and the insert
		// would otherwise be undone (a revoked key served for cache_ttl).
		// Evictions bump the generation before removing, so either this
		// re-check sees the bump or the eviction's remove comes after the
		// insert. At worst a fresh entry is dropped: one extra round trip.
		if err == nil {
			s.pos.add(sum, rec, now)
			if s.posGen.Load() != posGen {
				s.pos.remove(sum)
			}
		} else {
			s.neg.add(sum, err, now)
			if s.negGen.Load() != negGen {
				s.neg.remove(sum)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// resultOf maps a lookup error to its metric label.
func resultOf(err error) int {
	switch err {
	case nil:
		return resFound
	case ErrNotFound:
		return resNotFound
	case ErrMalformed:
		return resMalformed
	}
	if ke, ok := err.(*KeyError); ok {
		switch ke.Err {
		case ErrRevoked:
			return resRevoked
		case ErrExpired:
			return resExpired
		}
	}
	if errors.Is(err, ErrCorrupt) {
		return resCorrupt
	}
	return resError
}

// callContext bounds ctx by d unless it already ends sooner.
func (s *Store) callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// evict drops any cached answer for one hash (a revocation).
func (s *Store) evict(sum [32]byte) {
	s.posGen.Add(1)
	s.negGen.Add(1)
	s.pos.remove(sum)
	s.neg.remove(sum)
}

// evictNegative drops a cached "not found" for one hash (a creation: it
// cannot make a positive answer stale).
func (s *Store) evictNegative(sum [32]byte) {
	s.negGen.Add(1)
	s.neg.remove(sum)
}

// flush drops every cached answer.
func (s *Store) flush() {
	s.posGen.Add(1)
	s.negGen.Add(1)
	s.pos.purge()
	s.neg.purge()
}

// Create makes a new key and returns its secret, which is not stored and
// cannot be shown again, with its record. Invalid options give an error
// matching ErrInvalid; an owner at its o.MaxLive cap one matching
// ErrTooManyKeys.
func (s *Store) Create(ctx context.Context, o CreateOptions) (secret string, rec *Record, err error) {
	o, err = o.validate()
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := s.callContext(ctx, s.opTime)
	defer cancel()
	for range 3 {
		key, err := newKey(s.prefix, rand.Reader)
		if err != nil {
			return "", nil, err
		}
		id, err := newID(rand.Reader)
		if err != nil {
			return "", nil, err
		}
		sum := hashKey(key)
		rec := newRecord(id, sum, o, time.Now())
		err = s.be.create(ctx, rec, o.MaxLive)
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		s.evictNegative(sum) // this replica: do not wait for the pub/sub echo
		return key, rec, nil
	}
	return "", nil, errors.New("apikeys: create: could not find a free id")
}

// Get returns the record with this public id, revoked and expired ones
// included, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	ctx, cancel := s.callContext(ctx, s.opTime)
	defer cancel()
	return s.be.get(ctx, id)
}

// List returns the records of one owner of the CLI namespace (keys created
// by `extauthz keys create` or for an explicit owner by an admin), or of
// everybody, every namespace, when owner is "", revoked (until their
// tombstone expires) and expired ones included, sorted by CreatedAt then ID.
func (s *Store) List(ctx context.Context, owner string) ([]*Record, error) {
	return s.ListOwned(ctx, "", owner)
}

// ListOwned is List for owner in the namespace of issuer: the JWT issuer
// of the caller that minted the keys, or "" for the CLI namespace. The
// same owner under another issuer is somebody else and is not listed.
func (s *Store) ListOwned(ctx context.Context, issuer, owner string) ([]*Record, error) {
	ctx, cancel := s.callContext(ctx, s.opTime)
	defer cancel()
	recs, err := s.be.list(ctx, issuer, owner)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *Record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return recs, nil
}

// RevokeOwner revokes every key of owner in issuer's namespace ("" is the
// CLI namespace) that is not revoked yet, and returns how many it revoked.
// Each revocation is atomic and published like Revoke's; a key created
// while it runs may survive it (run it again). An empty owner is
// ErrInvalid: it never means everybody.
func (s *Store) RevokeOwner(ctx context.Context, issuer, owner string) (int, error) {
	if owner == "" {
		return 0, fmt.Errorf("apikeys: revoke owner: %w: owner is required", ErrInvalid)
	}
	recs, err := s.ListOwned(ctx, issuer, owner)
	if err != nil {
		return 0, err
	}
	n, now := 0, time.Now()
	for _, rec := range recs {
		if rec.check(now) != nil { // revoked or expired already
			continue
		}
		switch err := s.Revoke(ctx, rec.ID); {
		case errors.Is(err, ErrNotFound): // expired meanwhile
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, nil
}

// Revoke revokes the key with this public id. Every replica refuses it within
// a second (pub/sub invalidation). The record is kept as a tombstone for
// TombstoneTTL (or until the key's own expiry, if sooner) so that it is
// listed and lookups report ErrRevoked. Revoking a revoked key succeeds and
// keeps the first revocation time. An unknown id gives ErrNotFound.
func (s *Store) Revoke(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	ctx, cancel := s.callContext(ctx, s.opTime)
	defer cancel()
	rec, err := s.be.get(ctx, id)
	if err != nil {
		return err
	}
	if err := s.be.revoke(ctx, rec, time.Now()); err != nil {
		return err
	}
	if sum, ok := decodeHexHash(rec.Hash); ok {
		s.evict(sum)
	}
	return nil
}

// Ping reports whether the backend answers: Redis PING within the timeout
// (readiness). The embedded store always answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.callContext(ctx, s.timeout)
	defer cancel()
	return s.be.ping(ctx)
}

// Embedded reports whether this is the embedded development store.
func (s *Store) Embedded() bool { return s.embedded }

// Prefix returns the key prefix ("ek").
func (s *Store) Prefix() string { return s.prefix }

// Close stops background work and closes connections. Lookups after Close
// fail. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.be.close() })
	return s.closeErr
}

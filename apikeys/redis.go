package apikeys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/redisconn"
)

// Redis names (see doc.go). Every key carries the hash tag {apikeys}, so all
// of them live in one Cluster slot and scripts may touch several.
const (
	namespace     = "extauthz:{apikeys}:"
	recordKeyPfx  = namespace + "key:"    // HASH, one per key: <sha256hex>
	idKeyPfx      = namespace + "id:"     // STRING id → sha256hex
	ownerKeyPfx   = namespace + "owner:"  // SET of ids, CLI namespace
	issOwnerPfx   = namespace + "iowner:" // SET of ids, <sha256hex(issuer)>:<owner>
	idsKey        = namespace + "ids"     // HASH id → owner, every key
	EventsChannel = "extauthz:apikeys:events"
	flushAllEvent = "*"
	createdEvent  = "+" // followed by the sha256hex
	listBatch     = 500
	pingInterval  = time.Second
	staleAfter    = 3 * pingInterval
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = time.Second
)

// createScript writes a new key atomically and announces it.
//
// KEYS: record, id, owner set, ids hash.
// ARGV: sha256hex, id, the ids hash value (ownerIndexValue), expire-at in
// unix ms ("0": never), channel, the live-key cap ("0": none), the id and
// record key prefixes, then the record's field/value pairs
// (Record.hashFields: rate_limit and issuer only when set). The script
// writes whatever pairs it is given, so new record fields need no change
// here, and the record, its expiry and the indexes appear together or not at
// all. With a cap, the owner's live keys (id entry present, so not expired,
// and revoked_at empty) are counted in the same step, so concurrent
// creations cannot exceed it; ids whose key has gone are dropped from the
// indexes on the way, and when the owner set holds more than 4*cap+16 ids,
// the revoked ones leave it too (they stay in the ids hash and are still
// refused), so a mint-and-revoke loop cannot make this script slow.
var createScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[2])
if cur then
  if cur == ARGV[1] then return 1 end
  return redis.error_reply('IDTAKEN id in use')
end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('IDTAKEN hash in use') end
local cap = tonumber(ARGV[6])
if cap > 0 then
  local live = 0
  local prune = redis.call('SCARD', KEYS[3]) > 4 * cap + 16
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    local h = redis.call('GET', ARGV[7] .. id)
    if not h then
      redis.call('SREM', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
    elseif redis.call('EXISTS', ARGV[8] .. h) == 1 then
      local rv = redis.call('HGET', ARGV[8] .. h, 'revoked_at')
      if not rv or rv == '' then
        live = live + 1
      elseif prune then
        redis.call('SREM', KEYS[3], id)
      end
    end
  end
  if live >= cap then return redis.error_reply('TOOMANY ' .. live .. ' live keys') end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[4] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
  redis.call('PEXPIREAT', KEYS[2], ARGV[4])
end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[5], '+' .. ARGV[1])
return 1
`)

// revokeScript turns a key into a tombstone atomically and announces it.
// It returns 0 if the key is gone, 1 if revoked now, 2 if it already was.
//
// KEYS: id, record.
// ARGV: sha256hex, revoked_at, tombstone expire-at in unix ms, channel.
var revokeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local prev = redis.call('HGET', KEYS[2], 'revoked_at')
local r = 2
if not prev or prev == '' then
  redis.call('HSET', KEYS[2], 'revoked_at', ARGV[2])
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  r = 1
end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return r
`)

// redisHooks connect the backend to the Store's caches and telemetry.
type redisHooks struct {
	log      *slog.Logger
	m        *Metrics
	evict    func([32]byte) // a key was revoked
	evictNeg func([32]byte) // a key was created
	flush    func()
	setLive  func(bool) // the subscription is up (true) or down
	password string     // used when no password_file is set
}

type redisBackend struct {
	rdb    redis.UniversalClient
	h      redisHooks
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	ps *redis.PubSub // current subscription, closed by close to end a blocked read
}

func newRedisBackend(ctx context.Context, cfg RedisConfig, h redisHooks) (*redisBackend, error) {
	// One retry (the default) covers a connection broken by a restart:
	// every command of the store may safely run twice.
	opts, err := redisconn.Options(cfg, redisconn.OptionsOverrides{ClientName: "extauthz", Password: h.password})
	if err != nil {
		return nil, fmt.Errorf("apikeys: api_keys.redis: %w", err)
	}
	b := &redisBackend{rdb: redis.NewUniversalClient(opts), h: h, done: make(chan struct{})}

	log := h.log.With(slog.String("redis_mode", cfg.Mode()), slog.Any("redis_addrs", cfg.Addrs))
	b.h.log = log

	pctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout())
	err = b.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		h.m.redisErrors.Inc()
		log.LogAttrs(ctx, slog.LevelWarn, "redis unreachable at startup; uncached api keys are refused as unavailable until it answers",
			slog.String("err", err.Error()))
	} else {
		log.LogAttrs(ctx, slog.LevelInfo, "api key store connected to redis")
	}

	sctx, stop := context.WithCancel(context.Background())
	b.cancel = stop
	go b.subscribe(sctx)
	return b, nil
}

// fail counts a failed Redis call and wraps it as unavailable.
func (b *redisBackend) fail(op string, err error) error {
	b.h.m.redisErrors.Inc()
	return &backendError{op: op, err: err}
}

func (b *redisBackend) lookup(ctx context.Context, sum [32]byte) (*Record, error) {
	h := hexHash(sum)
	m, err := b.rdb.HGetAll(ctx, recordKeyPfx+h).Result()
	if err != nil {
		return nil, b.fail("hgetall", err)
	}
	return decodeHash(h, m)
}

// ownerSetKey names the SET of ids of owner in issuer's namespace: the
// CLI namespace keeps its historical name, an issuer's owners live under
// the SHA-256 of the issuer, so no owner name can reach another namespace.
func ownerSetKey(issuer, owner string) string {
	if issuer == "" {
		return ownerKeyPfx + owner
	}
	sum := sha256.Sum256([]byte(issuer))
	return issOwnerPfx + hex.EncodeToString(sum[:]) + ":" + owner
}

// ownerIndexValue is the ids hash value of a key: its owner in the CLI
// namespace (as before issuers existed), else its full owner set key.
func ownerIndexValue(issuer, owner string) string {
	if issuer == "" {
		return owner
	}
	return ownerSetKey(issuer, owner)
}

// ownerSetOf returns the owner set key named by an ids hash value.
func ownerSetOf(v string) string {
	if strings.HasPrefix(v, issOwnerPfx) {
		return v
	}
	return ownerKeyPfx + v
}

func (b *redisBackend) create(ctx context.Context, rec *Record, maxLive int) error {
	exp := "0"
	if !rec.ExpiresAt.IsZero() {
		exp = strconv.FormatInt(rec.ExpiresAt.UnixMilli(), 10)
	}
	keys := []string{recordKeyPfx + rec.Hash, idKeyPfx + rec.ID, ownerSetKey(rec.Issuer, rec.Owner), idsKey}
	args := append([]any{rec.Hash, rec.ID, ownerIndexValue(rec.Issuer, rec.Owner), exp, EventsChannel,
		max(maxLive, 0), idKeyPfx, recordKeyPfx}, rec.hashFields()...)
	err := createScript.Run(ctx, b.rdb, keys, args...).Err()
	if redis.HasErrorPrefix(err, "IDTAKEN") {
		return errIDTaken
	}
	if redis.HasErrorPrefix(err, "TOOMANY") {
		return fmt.Errorf("apikeys: create: %w (%d)", ErrTooManyKeys, maxLive)
	}
	if err != nil {
		return b.fail("create", err)
	}
	return nil
}

func (b *redisBackend) get(ctx context.Context, id string) (*Record, error) {
	h, err := b.rdb.Get(ctx, idKeyPfx+id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, b.fail("get", err)
	}
	if !validHexHash(h) {
		return nil, &corruptError{what: "id " + id, err: errors.New("index entry is not a sha-256 hash")}
	}
	m, err := b.rdb.HGetAll(ctx, recordKeyPfx+h).Result()
	if err != nil {
		return nil, b.fail("hgetall", err)
	}
	return decodeHash(h, m)
}

func (b *redisBackend) list(ctx context.Context, issuer, owner string) ([]*Record, error) {
	owners := map[string]string{} // id → ids hash value (ownerIndexValue)
	if owner == "" {
		m, err := b.rdb.HGetAll(ctx, idsKey).Result()
		if err != nil {
			return nil, b.fail("hgetall", err)
		}
		owners = m
	} else {
		ids, err := b.rdb.SMembers(ctx, ownerSetKey(issuer, owner)).Result()
		if err != nil {
			return nil, b.fail("smembers", err)
		}
		for _, id := range ids {
			owners[id] = ownerIndexValue(issuer, owner)
		}
	}
	ids := make([]string, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}

	var recs []*Record
	var stale []string // ids whose key has expired: drop them from the indexes
	for start := 0; start < len(ids); start += listBatch {
		batch := ids[start:min(start+listBatch, len(ids))]
		gets := make([]*redis.StringCmd, len(batch))
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				gets[i] = p.Get(ctx, idKeyPfx+id)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, b.fail("get", err)
		}
		var live []string
		hashes := make([]string, 0, len(batch))
		for i, c := range gets {
			h, err := c.Result()
			switch {
			case errors.Is(err, redis.Nil):
				stale = append(stale, batch[i])
			case err != nil:
				return nil, b.fail("get", err)
			case validHexHash(h):
				live = append(live, batch[i])
				hashes = append(hashes, h)
			}
		}
		alls := make([]*redis.MapStringStringCmd, len(hashes))
		_, err = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, h := range hashes {
				alls[i] = p.HGetAll(ctx, recordKeyPfx+h)
			}
			return nil
		})
		if err != nil {
			return nil, b.fail("hgetall", err)
		}
		for i, c := range alls {
			rec, err := decodeHash(hashes[i], c.Val())
			switch {
			case errors.Is(err, ErrCorrupt):
				return nil, err // listed as an error, never dropped from the indexes
			case errors.Is(err, ErrNotFound):
				stale = append(stale, live[i])
			case err != nil:
				return nil, err
			case owner != "" && (rec.Owner != owner || rec.Issuer != issuer):
				// Not this namespace's key (an index edited by hand): never
				// show it to the wrong owner.
			default:
				recs = append(recs, rec)
			}
		}
	}
	if len(stale) > 0 {
		// Best effort: the index entries are harmless, only wasteful.
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range stale {
				p.HDel(ctx, idsKey, id)
				if o := owners[id]; o != "" {
					p.SRem(ctx, ownerSetOf(o), id)
				}
			}
			return nil
		})
		if err != nil {
			b.h.m.redisErrors.Inc()
		}
	}
	return recs, nil
}

func (b *redisBackend) revoke(ctx context.Context, rec *Record, t time.Time) error {
	t = t.UTC().Truncate(time.Millisecond)
	keys := []string{idKeyPfx + rec.ID, recordKeyPfx + rec.Hash}
	n, err := revokeScript.Run(ctx, b.rdb, keys,
		rec.Hash, formatTime(t), rec.tombstoneExpiry(t).UnixMilli(), EventsChannel).Int()
	if err != nil {
		return b.fail("revoke", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (b *redisBackend) ping(ctx context.Context) error {
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return b.fail("ping", err)
	}
	return nil
}

func (b *redisBackend) close() error {
	b.cancel()
	b.mu.Lock()
	if b.ps != nil {
		_ = b.ps.Close()
	}
	b.mu.Unlock()
	<-b.done
	return b.rdb.Close()
}

// subscribe keeps a subscription to EventsChannel and applies its messages to
// the caches until ctx ends. Every (re)subscription flushes the caches: a
// revocation published while the subscription was down must not live on in
// them. A connection that stops answering PINGs is replaced.
func (b *redisBackend) subscribe(ctx context.Context) {
	defer close(b.done)
	log := b.h.log
	var ps *redis.PubSub
	open := func() {
		b.mu.Lock()
		ps = b.rdb.Subscribe(ctx)
		b.ps = ps
		b.mu.Unlock()
		_ = ps.Subscribe(ctx, EventsChannel) // on error the channel is kept and Receive retries
	}
	open()
	defer func() { _ = ps.Close() }()

	const (
		starting = iota
		up
		down
	)
	state := starting
	lastSeen := time.Now()
	backoff := minBackoff
	fail := func(err error) {
		b.h.m.redisErrors.Inc()
		if state != down {
			log.LogAttrs(ctx, slog.LevelWarn,
				"api key invalidation channel down: cached keys are served until their cache entry expires; caches are flushed on reconnect",
				slog.String("err", err.Error()))
		}
		state = down
		b.h.setLive(false)
		if sleepCtx(ctx, backoff) {
			backoff = min(2*backoff, maxBackoff)
		}
	}

	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, pingInterval)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return
			case isTimeout(err) && time.Since(lastSeen) < staleAfter:
				// Quiet channel: a PING shows whether the connection still
				// works; its PONG arrives through ReceiveTimeout.
				if err := ps.Ping(ctx); err != nil {
					fail(err)
				}
			case isTimeout(err):
				_ = ps.Close()
				open()
				lastSeen = time.Now()
				fail(errors.New("no answer to ping"))
			default:
				fail(err)
			}
			continue
		}
		lastSeen = time.Now()
		backoff = minBackoff
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			b.h.flush()
			b.h.setLive(true)
			if state == down {
				log.LogAttrs(ctx, slog.LevelInfo, "api key invalidation channel restored; caches flushed")
			}
			state = up
		case *redis.Message:
			b.event(ctx, m.Payload)
		}
	}
}

// event applies one message of EventsChannel: "<sha256hex>" (revoked: evict
// it), "+<sha256hex>" (created: evict a cached "not found"), or "*" (flush
// everything).
func (b *redisBackend) event(ctx context.Context, payload string) {
	if payload == flushAllEvent {
		b.h.flush()
		return
	}
	evict := b.h.evict
	if h, ok := strings.CutPrefix(payload, createdEvent); ok {
		payload, evict = h, b.h.evictNeg
	}
	sum, ok := decodeHexHash(payload)
	if !ok {
		b.h.log.LogAttrs(ctx, slog.LevelDebug, "ignoring malformed api key event")
		return
	}
	evict(sum)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

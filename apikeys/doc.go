// Package apikeys owns extauthz's API keys: their format, their storage in
// Redis (standalone, Sentinel or Cluster) shared by every replica, the
// in-process caches in front of it, and their lifecycle (create, list, show,
// revoke), and the one JSON form of a key that `extauthz keys --json` and
// the key API both write (KeyView, from Record.View). It does not decide
// anything about requests: authz calls Store.Lookup and maps the sentinel
// errors to responses. A key's own rate limit (RateLimit) is a
// ratelimit.Limit, stored and range-checked here, counted by ratelimit.
//
// # Key format
//
// A key is <prefix>_<random><checksum>, for example (prefix "ek")
//
//	ek_4QYY46dZmgyC8mpclwIVdmwyO0jTO531jcnz
//
// random is 30 base62 characters from crypto/rand (about 178 bits); checksum
// is the CRC-32 (IEEE) of "<prefix>_<random>" as 6 base62 characters. A key
// with the wrong length, alphabet or checksum is refused locally
// (ErrMalformed) and never reaches Redis. Only the SHA-256 of a key is
// stored; the secret is shown once, by `extauthz keys create`. Each key also
// has a public id, "key_" + 12 base62 characters, which is safe to log and is
// sent upstream as x-auth-key-id. Logs identify a key by the first 8 hex
// characters of its hash.
//
// # Lookup
//
// Store.Lookup checks the format, hashes the key, then asks the positive
// cache (found keys, cache_ttl, default 30s), the negative cache (unknown,
// revoked and expired keys, negative_cache_ttl, default 5s), and only then
// Redis, with a single HGETALL bounded by api_keys.redis.timeout (default
// 200ms). Both caches are bounded LRUs (cache_size entries each). Expiry is
// checked on every answer, cached or not. If Redis cannot answer, a cached key
// keeps working until its cache entry expires, and an uncached key gets
// ErrUnavailable (503, never an allow).
//
// # Redis schema
//
// Every key lives under one namespace with the hash tag {apikeys}, so all of
// them hash to the same Redis Cluster slot and the create and revoke scripts
// can touch several keys atomically. (The data set is small and read through
// caches; one slot is not a bottleneck. It does mean one shard holds it all.)
//
//	extauthz:{apikeys}:key:<sha256hex>   HASH   one per key:
//	    id           public id, "key_" + 12 base62
//	    owner        becomes x-auth-subject
//	    issuer       only for a key minted by a JWT caller (self-service, token
//	                 exchange): that JWT's issuer, the owner's namespace, sent
//	                 as x-auth-issuer; absent: the CLI namespace (as in records
//	                 written before it existed)
//	    groups       JSON array of strings, e.g. ["eng","ml-team"]
//	    roles        JSON array of strings
//	    description  free text
//	    created_at   RFC 3339 UTC with milliseconds
//	    expires_at   RFC 3339, "" for never
//	    revoked_at   RFC 3339, "" unless revoked
//	    rate_limit   the key's own limit, JSON {"requests":10,"per":"1m","burst":0};
//	                 absent (or "") for none, as in records written before it existed
//	extauthz:{apikeys}:id:<id>           STRING <sha256hex> of the key with this id
//	extauthz:{apikeys}:owner:<owner>     SET    ids of the owner's keys (CLI namespace)
//	extauthz:{apikeys}:iowner:<sha256hex(issuer)>:<owner>
//	                                     SET    ids of the owner's keys (an issuer's namespace)
//	extauthz:{apikeys}:ids               HASH   id → owner (CLI namespace) or the
//	                                            owner's iowner: set key, for every key
//	extauthz:apikeys:events              pub/sub channel (no hash tag: channels are not keys)
//
// A record that cannot be decoded (a field that is not valid JSON or a
// timestamp, a rate_limit with unknown fields or out of range, a missing id
// or owner) refuses its key: Lookup returns an error matching ErrCorrupt and
// ErrNotFound (401 invalid_api_key, never 503 and never an allow), logs it at
// Warn with the hash prefix and the broken fields, counts it as
// result="corrupt", and caches it like an unknown key. `keys show`, `list`
// and `revoke` report it too. Fix the field with HSET (then PUBLISH
// extauthz:apikeys:events '*'), or DEL the record and create a new key. A
// replica older than the rate_limit field ignores the field.
//
// A key with expires_at has PEXPIREAT at that instant on its record and id
// entries, so Redis deletes it; lookups also compare expires_at with the
// clock. Revoking sets revoked_at and moves both entries' expiry to
// TombstoneTTL (30 days) after the revocation, or to the key's own expiry if
// that is sooner: during that time the key is listed as revoked and lookups
// report ErrRevoked; afterwards it is unknown. The owner and ids indexes are
// not expired by Redis; `keys list` removes ids whose key has gone.
//
// Create counts the owner's live keys in the same script when given a cap
// (CreateOptions.MaxLive), so concurrent creations cannot exceed it.
//
// Create and revoke are Lua scripts (EVALSHA), so a crash never leaves a
// half-written key, and each PUBLISHes on extauthz:apikeys:events in the same
// atomic step:
//
//	<sha256hex>    a key was revoked: every replica evicts it from both caches
//	+<sha256hex>   a key was created: every replica evicts a cached "not found"
//	*              flush both caches (for operators: PUBLISH extauthz:apikeys:events '*')
//
// so a revoked key is refused everywhere within a second. Answers are only
// cached while the subscription is up. When it is lost, entries already
// cached are served until they expire (cache_ttl), and both caches are
// flushed as soon as it is re-established, so that a revocation published
// during the gap cannot live on. The subscription is checked with a PING
// every second and replaced if it stops answering.
//
// The server runs HGETALL, PING and SUBSCRIBE; `extauthz keys` also runs GET,
// SMEMBERS, HDEL, SREM and the two scripts. This ACL user is enough for both
// (tested; on Redis 7.2+ a denied CLIENT SETINFO is harmless):
//
//	ACL SETUSER extauthz reset on >PASSWORD ~extauthz:{apikeys}:* resetchannels &extauthz:apikeys:events
//	  +hello +auth +client|setname +ping +hgetall +subscribe +get +smembers +hdel +srem
//	  +evalsha +eval +exists +hset +hget +set +sadd +pexpireat +publish
//
// # Embedded store
//
// Without an api_keys.redis section, keys live in process memory: for
// development only (a Warn line says so at startup). With api_keys.file set,
// they are also written to that JSON file (mode 0600, written to a temporary
// file and renamed), which the server re-reads when its modification time
// changes (checked every second, and on a lookup miss). That is how
// `extauthz keys create`, a separate process, and a running development
// server share keys. Concurrent writers in separate processes may lose an
// update; that is acceptable for development only. Each key of the file may
// carry "rate_limit" in the form above; a file with a broken one is refused
// as a whole, like any other broken field: at startup the store does not
// open, later the keys loaded before stay in force (with a Warn line).
package apikeys

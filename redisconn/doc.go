// Package redisconn owns how extauthz connects to Redis: the schema of a
// `redis:` configuration section (api_keys.redis, rate_limits.redis) and its
// validation, and the go-redis client options built from it. It covers a
// standalone server (host:port or a unix socket), Sentinel (master_name) and
// Cluster (several addrs); the ACL user and a password file that is read
// again for every new connection, so a rotated secret is picked up without a
// restart; TLS 1.2+ with an optional private CA; one timeout that bounds every
// call, dialling included (go-redis ContextTimeoutEnabled plus socket
// deadlines); and the pool size.
//
// It owns nothing else: it never connects by itself, holds no client, keeps
// no key names, scripts or metrics, and logs nothing. The apikeys and
// ratelimit packages call Options and make their own clients, each with its
// own client name and retry policy (OptionsOverrides). Like every leaf
// package it imports no other project package but secretfile, which reads
// the password file.
package redisconn

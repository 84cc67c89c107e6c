// Package ratelimit owns the shared rate-limit counters of extauthz: the
// `rate_limits:` section of the configuration and each route's `rate_limit:`
// entry, the choice of which limit applies to a caller on a route (Policy),
// and the counters themselves, kept in Redis with GCRA (Limiter, built on
// github.com/go-redis/redis_rate/v10) so that every replica shares them.
//
// It does not authenticate, match routes or build responses: the authz
// package asks Policy.Resolve for the Rule of an authorized caller, then
// Limiter.Allow, and turns the Result into headers or a 429. Of the project
// it imports only redisconn (the Redis connection settings and client); the
// caller describes itself with a Caller. Limit is also the type of an API
// key's own limit (apikeys.RateLimit), so its bounds are checked in one
// place (Limit.Check).
//
// # Algorithm
//
// A Limit of Requests per Per with Burst is the generic cell rate algorithm:
// one request is "emitted" every Per/Requests, and up to Burst requests may
// arrive at once (Burst defaults to Requests). A fresh caller may send Burst
// requests immediately, then one per Per/Requests; over any window of length
// Per at most Burst+Requests-1 requests pass. Set Burst to 1 for strictly
// evenly spaced requests. The counter is one Redis string per caller and
// route holding the theoretical arrival time, updated by one Lua script
// (one EVALSHA per check) and expiring when the caller's budget is full
// again.
//
// # Redis keys
//
// Counters are named rate:extauthz:rl:{<kind>:<id>}:<route> ("rate:" is
// redis_rate's own prefix): kind is s (subject, with the JWT issuer), k (API
// key id) or r (role), and the hash tag {...} keeps one caller's counters in
// one Cluster slot while spreading callers over the cluster. The serving path
// runs EVALSHA (EVAL once after a Redis restart) whose script calls GET, SET
// and TIME; an ACL such as
//
//	ACL SETUSER extauthz-rl reset on >... ~rate:extauthz:rl:* +hello +auth +client|setname +ping +evalsha +eval +get +set +time
//
// is enough.
//
// # Failures
//
// When Redis fails or does not answer within Config.Timeout, Allow applies
// Config.OnError: allow (the default, for rate limits only: authentication
// stays fail-closed) or deny, and counts it in
// extauthz_ratelimit_decisions_total as error_allowed or error_denied. After
// a few failures in a row the Limiter stops calling Redis for a second (one
// probe call then checks whether it is back), so a black-holed Redis does not
// add its timeout to every check.
package ratelimit

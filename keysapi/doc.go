// Package keysapi owns extauthz's HTTP API for API keys: the admin and
// self-service key endpoints (/v1/keys) and RFC 8693 token exchange
// (/v1/token), served on their own listener (listen.api), never on the
// forward-auth listener.
//
// Callers authenticate with extauthz's own engine (a JWT or an API key,
// exactly as a check does) and are authorized by permissions of their
// roles: apikeys:admin manages every key; apikeys:self lets a caller create,
// list, show and revoke the keys it owns (owner = its subject), with roles
// no greater than its own. A key of another owner is answered 404 to a
// self-service caller, as if it did not exist, so ids cannot be probed.
//
// Token exchange turns a JWT of a configured provider into a short-lived API
// key whose roles are those the JWT grants (or the requested subset) and
// whose lifetime is the shortest ttl_by_role of those roles (default_ttl
// when none has one), capped by max_ttl and by the JWT's own exp.
//
// Keys are created and revoked through apikeys.Store, so they share its
// storage and its invalidation with `extauthz keys`, and answered as
// apikeys.KeyView, the same JSON as `extauthz keys --json`. Files:
// handler.go wires the routes, auth.go authenticates callers (one
// authenticate-and-deny path for every endpoint), keys.go serves /v1/keys,
// exchange.go serves /v1/token, mintlimit.go limits minting per caller,
// respond.go writes answers and audit.go the lifecycle log lines. The
// package decides no check and imports neither gRPC nor go-control-plane:
// it needs only the engine, which is transport-free
// (authz.TestImports_TransportFree). Every key lifecycle event is
// one log line (event, key_id, owner, actor, roles; never the key) and one
// increment of extauthz_apikey_events_total{event}.
package keysapi

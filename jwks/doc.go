// Package jwks verifies JWTs signed by the configured identity providers,
// with keys from each provider's JWK Set (or, for an HMAC provider, its
// shared secret file), and keeps those keys fresh.
//
// It owns: the jwt configuration section (Config, Validate); fetching JWK
// Sets from a URL, from OpenID discovery or from a local file, with periodic
// refresh, retry with backoff, and a rate-limited refetch when a token names
// an unknown kid (so key rotation works without waiting for the refresh
// interval); signature verification (RS*, PS*, ES*, EdDSA with JWK Sets;
// HS256/384/512 only for a provider configured with hmac_secret_file and
// selected by the token's iss; none never; jku, x5u and embedded jwk
// headers are never followed); the exp, nbf, iat, iss and aud rules with leeway; extraction of
// the subject, groups and claims_to_headers values (Claims); a bounded cache
// of verified tokens; and the extauthz_jwks_* and extauthz_token_cache_*
// metrics.
//
// It does not own: reading the credential from a request, mapping groups to
// roles, deciding, building responses or headers (package authz), or logging
// individual verification failures: Verify returns errors that wrap
// ErrInvalid (with a finer sentinel such as ErrExpired) or ErrNoKeys, and
// the caller logs and maps them.
//
// Package jwkstest serves JWK Sets over httptest and signs tokens for tests.
package jwks

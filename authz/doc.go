// Package authz is the decision engine of extauthz and its two thin front
// ends.
//
// Engine.Decide takes a transport-free Request (method, host, path, headers,
// Envoy context extensions, the mTLS peer Envoy reports) and returns a
// Decision: which route matched, who the caller is, and whether the request
// may pass. It owns route matching, credential extraction, the mTLS peer
// identity (peer_identity, used only when no credential is presented), the mapping of authentication errors to the public
// error codes of the response table, and the identity headers injected
// upstream. It does not verify signatures or talk to Redis itself: it depends
// on two small interfaces that the jwks and apikeys packages satisfy.
//
// Server wraps an Engine that can be swapped atomically on a config reload and
// exposes it as the Envoy ext_authz v3 gRPC Authorization service (Check) and
// as an HTTP forward-auth handler (Envoy http_service, nginx auth_request,
// Traefik/Caddy forward-auth). The front ends only translate; each records one
// histogram sample, one counter increment and at most one log line per check.
// Every failure is a denial: Check never returns a Go error.
package authz

// Package authz is the decision engine of extauthz: transport-free, it
// imports neither gRPC nor go-control-plane (TestImports_TransportFree), so
// keysapi and config use it without pulling a transport.
//
// Engine.Decide takes a transport-free Request (method, host, path, headers,
// Envoy context extensions, the mTLS peer Envoy reports) and returns a
// Decision: which route matched, who the caller is, and whether the request
// may pass. It owns route matching, credential extraction, the mTLS peer
// identity (peer_identity, used only when no credential is presented), the
// mapping of authentication errors to the public error codes of the
// response table, the LLM request policy and rate limits, and the identity
// headers injected upstream (derived once per verified credential and kept
// in a bounded per-Engine cache). It does not verify signatures or talk to Redis
// itself: it depends on small interfaces that the jwks, apikeys,
// introspect and ratelimit packages satisfy.
//
// Server wraps an Engine that can be swapped atomically on a config reload
// (Swap; a check loads one Generation and sees no other), bounds each check
// with the check timeout, turns a panic into a denial, and records one
// histogram sample, one counter increment and at most one log line per
// check. It also builds each reason's denial (status, JSON body, headers)
// once (DenialFor, Denials).
//
// The front ends live beside it and only translate: envoyauthz (the Envoy
// ext_authz v3 gRPC Check, its codec, allowed-response cache and denial
// protos) and forwardauth (HTTP forward-auth: Envoy http_service, nginx
// auth_request, Traefik/Caddy). authztest holds the fixture their tests
// share.
package authz

// Package envoyauthz is the Envoy ext_authz v3 gRPC front end of extauthz:
// the Authorization service's Check, its codec, the cache of allowed
// responses and the prebuilt denial responses.
//
// Check translates a CheckRequest into an authz.Request, asks the
// authz.Server (which decides, and records the metrics and the decision
// log), and translates the authz.Decision back: identity headers with
// OVERWRITE_IF_EXISTS_OR_ADD set explicitly, headers_to_remove, and the
// decision as dynamic metadata; or a denial with its status, body and
// headers. It never returns a Go error, so Envoy's failure_mode_allow
// never decides.
//
// The hot path shares what it can: an allowed response is built once per
// identity, route and removal list and then reused, the denials of each
// reason are built and encoded once, and Codec sends those shared
// responses from their encoding instead of marshalling them again.
//
// It makes no decision of its own. Outside tests it is the only importer of
// go-control-plane and of gRPC besides cmd/extauthz.
package envoyauthz

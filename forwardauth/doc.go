// Package forwardauth is the HTTP forward-auth front end of extauthz, for
// proxies that ask an HTTP service before passing a request: Envoy
// http_service, nginx auth_request, Traefik forwardAuth and Caddy
// forward_auth.
//
// Handler reads the original method, URI and host from the one family of
// forwarding headers the configuration trusts (refusing a check that
// carries another family, or lacks or repeats a trusted header), builds an
// authz.Request, asks the authz.Server (which decides, and records the
// metrics and the decision log), and writes the authz.Decision back: 200
// with the identity headers and x-envoy-auth-headers-to-remove, or the
// denial's status, headers, body and x-extauthz-error. It makes no
// decision of its own and imports no gRPC.
package forwardauth

package forwardauth

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/extauthz/extauthz/authz"
)

// ErrorHeader carries the error code of an HTTP-mode denial, for proxies that
// discard the body of the authorization response (nginx auth_request) and
// must rebuild it.
const ErrorHeader = "x-extauthz-error"

// envoyHeadersToRemove is the response header through which an Envoy
// http_service authorization server lists request headers to remove.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

// The method and URI headers of each family. A check carrying one of the
// family not trusted is refused: the proxy did not set it, so the client
// did. x-original-url (ingress-nginx, IIS rewrite) counts as the original
// family. x-forwarded-host is not in the list: a load balancer in front of
// the proxy may set it; it is read only in the forwarded family.
var (
	forwardedFamily = []string{"X-Forwarded-Method", "X-Forwarded-Uri"}
	originalFamily  = []string{"X-Original-Method", "X-Original-Uri", "X-Original-Url"}
)

// Handler is the forward-auth front end of an authz.Server.
type Handler struct{ s *authz.Server }

// New returns the forward-auth front end of s: Envoy http_service, nginx
// auth_request, Traefik forwardAuth and Caddy forward_auth. The original
// method, URI and host come from exactly one family of headers, the one
// server.http_forwarded_headers names (see authz.ForwardedForwarded,
// authz.ForwardedOriginal, authz.ForwardedNone); a check that lacks the
// trusted method or URI header, repeats one, or carries a header of another
// family is refused (400 invalid_request) without consulting the Engine.
// The listener must be reachable by the proxy only: it trusts those
// headers.
func New(s *authz.Server) *Handler { return &Handler{s} }

// ServeHTTP answers one check: 200 with the identity headers, or the
// denial's status, headers and body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	headers := make(map[string]string, len(hr.Header))
	for k, vs := range hr.Header {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		headers[strings.ToLower(k)] = v
	}
	r := authz.Request{Headers: headers}
	g := h.s.Current() // one generation for the whole check
	var refused authz.Reason
	switch g.HTTPForwardedHeaders() {
	case authz.ForwardedNone:
		refused = carriesAny(hr.Header, forwardedFamily, originalFamily)
		r.Method, r.Host, r.Path = hr.Method, hr.Host, checkRequestPath(hr, g.HTTPPathPrefix())
	case authz.ForwardedOriginal:
		r.Method, r.Path, refused = trustedFamily(hr.Header, "X-Original-Method", "X-Original-Uri", forwardedFamily)
		r.Host = hr.Host
	default:
		r.Method, r.Path, refused = trustedFamily(hr.Header, "X-Forwarded-Method", "X-Forwarded-Uri", originalFamily)
		r.Host = hr.Host
		switch hosts := hr.Header.Values("X-Forwarded-Host"); {
		case len(hosts) > 1:
			refused = authz.ReasonUntrustedForwardingHeader
		case len(hosts) == 1 && hosts[0] != "":
			r.Host = hosts[0]
		}
	}
	// The forwarding headers describe the request; they are not part of it.
	for _, n := range forwardedFamily {
		delete(headers, strings.ToLower(n))
	}
	for _, n := range originalFamily {
		delete(headers, strings.ToLower(n))
	}
	delete(headers, "x-forwarded-host")
	if refused != "" {
		h.write(w, h.s.Refuse(g, authz.TransportHTTP, &r, headers["x-request-id"], refused))
		return
	}
	// The body (Envoy http_service with_request_body), only when some
	// route reads it, and at most one byte more than the LLM policy
	// parses, so that a larger body is refused as too large.
	if e := g.Engine(); e.NeedsBody() && hr.Body != nil && hr.Body != http.NoBody {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(io.LimitReader(hr.Body, int64(e.LLMMaxBodyBytes())+1)); err == nil {
			r.Body = buf.Bytes()
		} else {
			// A body that could not be read whole is a partial body:
			// the LLM policy refuses it on routes that read it.
			r.Body = buf.Bytes()
			headers[authz.PartialBodyHeader] = "true"
		}
	}
	h.write(w, h.s.DecideOn(hr.Context(), g, authz.TransportHTTP, &r, headers["x-request-id"]))
}

// write answers the check with d.
func (h *Handler) write(w http.ResponseWriter, d authz.Decision) {
	out := w.Header()
	if d.Code == authz.Allowed {
		for _, x := range d.Set {
			out[http.CanonicalHeaderKey(x.Name)] = []string{x.Value}
		}
		// ratelimit-*: Envoy passes them to the client with
		// allowed_client_headers_on_success.
		for _, x := range d.ResponseHeaders {
			out[http.CanonicalHeaderKey(x.Name)] = []string{x.Value}
		}
		if len(d.Remove) > 0 {
			out.Set(envoyHeadersToRemove, strings.Join(d.Remove, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	dn := h.s.DenialFor(&d)
	for _, x := range dn.Headers() {
		out.Set(x.Name, x.Value)
	}
	out.Set(ErrorHeader, dn.Code().String())
	out.Set("cache-control", "no-store")
	w.WriteHeader(dn.Code().HTTPStatus())
	_, _ = w.Write(dn.Body())
}

// trustedFamily returns the original method and URI from the trusted
// family's headers, or the reason the check is refused: one of them is
// missing, empty or repeated, or a header of the untrusted family is
// present.
func trustedFamily(h http.Header, methodName, uriName string, untrusted []string) (method, uri string, refused authz.Reason) {
	if r := carriesAny(h, untrusted); r != "" {
		return "", "", r
	}
	ms, us := h.Values(methodName), h.Values(uriName)
	switch {
	case len(ms) > 1 || len(us) > 1:
		return "", "", authz.ReasonUntrustedForwardingHeader
	case len(ms) == 0 || len(us) == 0 || ms[0] == "" || us[0] == "":
		return "", "", authz.ReasonMissingForwardingHeader
	}
	return ms[0], us[0], ""
}

// carriesAny returns ReasonUntrustedForwardingHeader when h holds one of the
// named (canonical) headers, even empty.
func carriesAny(h http.Header, families ...[]string) authz.Reason {
	for _, names := range families {
		for _, n := range names {
			if _, ok := h[n]; ok {
				return authz.ReasonUntrustedForwardingHeader
			}
		}
	}
	return ""
}

// checkRequestPath is the request-target of the check request itself, as
// the proxy sent it (not re-encoded), with the configured prefix removed
// (Envoy http_service path_prefix).
func checkRequestPath(hr *http.Request, prefix string) string {
	p := hr.RequestURI
	if p == "" {
		p = hr.URL.RequestURI()
	}
	if prefix == "" {
		return p
	}
	path := p
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if hasPathPrefix(path, prefix) {
		p = p[len(prefix):]
		if p == "" || p[0] != '/' {
			p = "/" + p
		}
	}
	return p
}

// hasPathPrefix reports whether p equals prefix or lies below it on a path
// segment boundary (as the engine matches route prefixes).
func hasPathPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

package authz

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrorHeader carries the error code of an HTTP-mode denial, for proxies that
// discard the body of the authorization response (nginx auth_request) and
// must rebuild it.
const ErrorHeader = "x-extauthz-error"

// envoyHeadersToRemove is the response header through which an Envoy
// http_service authorization server lists request headers to remove.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

// The values of server.http_forwarded_headers: the one family of headers
// the forward-auth front end reads the original request from.
const (
	// ForwardedForwarded (the default): x-forwarded-method and
	// x-forwarded-uri, host from x-forwarded-host (else the check's Host).
	// nginx/extauthz.conf, Traefik forwardAuth and Caddy forward_auth set
	// them.
	ForwardedForwarded = "forwarded"
	// ForwardedOriginal: x-original-method and x-original-uri, host from
	// the check's own Host (x-forwarded-host, which hops in front of the
	// proxy may set, is ignored). nginx's auth_request documentation sets
	// X-Original-URI; add X-Original-Method and Host $host.
	ForwardedOriginal = "original"
	// ForwardedNone: the check request is the original request (method,
	// Host, and path with server.http_path_prefix removed): Envoy
	// http_service.
	ForwardedNone = "none"
)

// The method and URI headers of each family. A check carrying one of the
// family not trusted is refused: the proxy did not set it, so the client
// did. x-original-url (ingress-nginx, IIS rewrite) counts as the original
// family. x-forwarded-host is not in the list: a load balancer in front of
// the proxy may set it; it is read only in the forwarded family.
var (
	forwardedFamily = []string{"X-Forwarded-Method", "X-Forwarded-Uri"}
	originalFamily  = []string{"X-Original-Method", "X-Original-Uri", "X-Original-Url"}
)

// HTTP returns the forward-auth front end of s: Envoy http_service, nginx
// auth_request, Traefik forwardAuth and Caddy forward_auth. The original
// method, URI and host come from exactly one family of headers, the one
// server.http_forwarded_headers names (see ForwardedForwarded,
// ForwardedOriginal, ForwardedNone); a check that lacks the trusted method
// or URI header, repeats one, or carries a header of another family is
// refused (400 invalid_request) without consulting the Engine. The listener
// must be reachable by the proxy only: it trusts those headers.
func (s *Server) HTTP() http.Handler { return httpHandler{s} }

type httpHandler struct{ s *Server }

func (h httpHandler) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
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
	r := Request{Headers: headers}
	g := h.s.gen.Load() // one generation for the whole check
	var refused Reason
	switch g.forwarded {
	case ForwardedNone:
		refused = carriesAny(hr.Header, forwardedFamily, originalFamily)
		r.Method, r.Host, r.Path = hr.Method, hr.Host, checkRequestPath(hr, g.pathPrefix)
	case ForwardedOriginal:
		r.Method, r.Path, refused = trustedFamily(hr.Header, "X-Original-Method", "X-Original-Uri", forwardedFamily)
		r.Host = hr.Host
	default:
		r.Method, r.Path, refused = trustedFamily(hr.Header, "X-Forwarded-Method", "X-Forwarded-Uri", originalFamily)
		r.Host = hr.Host
		switch hosts := hr.Header.Values("X-Forwarded-Host"); {
		case len(hosts) > 1:
			refused = ReasonUntrustedForwardingHeader
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
		h.write(w, h.s.refuse(g, TransportHTTP, &r, headers["x-request-id"], refused))
		return
	}
	// The body (Envoy http_service with_request_body), only when some
	// route reads it, and at most one byte more than the LLM policy
	// parses, so that a larger body is refused as too large.
	if e := g.engine; e.NeedsBody() && hr.Body != nil && hr.Body != http.NoBody {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(io.LimitReader(hr.Body, int64(e.LLMMaxBodyBytes())+1)); err == nil {
			r.Body = buf.Bytes()
		} else {
			// A body that could not be read whole is a partial body:
			// the LLM policy refuses it on routes that read it.
			r.Body = buf.Bytes()
			headers[PartialBodyHeader] = "true"
		}
	}
	h.write(w, h.s.decideOn(hr.Context(), g, TransportHTTP, &r, headers["x-request-id"]))
}

// write answers the check with d.
func (h httpHandler) write(w http.ResponseWriter, d Decision) {
	out := w.Header()
	if d.Code == Allowed {
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
	dn := h.s.deny.forDecision(&d, false)
	for _, x := range dn.headers {
		out.Set(x.Name, x.Value)
	}
	out.Set(ErrorHeader, dn.code.String())
	out.Set("cache-control", "no-store")
	w.WriteHeader(dn.code.HTTPStatus())
	_, _ = w.Write(dn.body)
}

// trustedFamily returns the original method and URI from the trusted
// family's headers, or the reason the check is refused: one of them is
// missing, empty or repeated, or a header of the untrusted family is
// present.
func trustedFamily(h http.Header, methodName, uriName string, untrusted []string) (method, uri string, refused Reason) {
	if r := carriesAny(h, untrusted); r != "" {
		return "", "", r
	}
	ms, us := h.Values(methodName), h.Values(uriName)
	switch {
	case len(ms) > 1 || len(us) > 1:
		return "", "", ReasonUntrustedForwardingHeader
	case len(ms) == 0 || len(us) == 0 || ms[0] == "" || us[0] == "":
		return "", "", ReasonMissingForwardingHeader
	}
	return ms[0], us[0], ""
}

// carriesAny returns ReasonUntrustedForwardingHeader when h holds one of the
// named (canonical) headers, even empty.
func carriesAny(h http.Header, families ...[]string) Reason {
	for _, names := range families {
		for _, n := range names {
			if _, ok := h[n]; ok {
				return ReasonUntrustedForwardingHeader
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

// refuse records and returns the denial of a check that a front end refuses
// before the Engine is asked (forwarding headers that cannot be trusted).
func (s *Server) refuse(g *generation, t Transport, r *Request, requestID string, reason Reason) Decision {
	d := Decision{Code: ReasonCode(reason), Reason: reason}
	s.metrics.observe(t, d.Method, d.Code, 0)
	if ok, suppressed := g.denials.allow(sampleKey{transport: t, code: d.Code, reason: d.Reason}, time.Now()); ok {
		s.logDecision(t, r, requestID, &d, 0, suppressed)
	}
	return d
}

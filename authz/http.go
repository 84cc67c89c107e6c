package authz

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// ErrorHeader carries the error code of an HTTP-mode denial, for proxies that
// discard the body of the authorization response (nginx auth_request) and
// must rebuild it.
const ErrorHeader = "x-extauthz-error"

// envoyHeadersToRemove is the response header through which an Envoy
// http_service authorization server lists request headers to remove.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

// HTTP returns the forward-auth front end of s: Envoy http_service, nginx
// auth_request, Traefik forwardAuth and Caddy forward_auth. The original
// method, URI and host come from x-forwarded-method / x-forwarded-uri /
// x-forwarded-host, else x-original-method / x-original-uri, else from the
// check request itself (with the configured http_path_prefix removed). The
// listener must be reachable by the proxy only: it trusts those headers.
func (s *Server) HTTP() http.Handler { return httpHandler{s} }

type httpHandler struct{ s *Server }

func (h httpHandler) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	g := h.s.gen.Load() // one generation for the whole check
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
	r.Method = firstNonEmpty(headers["x-forwarded-method"], headers["x-original-method"], hr.Method)
	r.Host = firstNonEmpty(headers["x-forwarded-host"], hr.Host)
	r.Path = firstNonEmpty(headers["x-forwarded-uri"], headers["x-original-uri"])
	if r.Path == "" {
		r.Path = hr.URL.RequestURI()
		if p := g.pathPrefix; p != "" && hasPathPrefix(hr.URL.Path, p) {
			r.Path = strings.TrimPrefix(r.Path, p)
			if r.Path == "" || r.Path[0] != '/' {
				r.Path = "/" + r.Path
			}
		}
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
	// The forwarding headers describe the request; they are not part of it.
	delete(headers, "x-forwarded-method")
	delete(headers, "x-forwarded-uri")
	delete(headers, "x-forwarded-host")
	delete(headers, "x-original-method")
	delete(headers, "x-original-uri")

	d := h.s.decideOn(hr.Context(), g, TransportHTTP, &r, headers["x-request-id"])
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

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

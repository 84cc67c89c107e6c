package envoyauthz

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/slotcache"
)

// Server is the Envoy ext_authz v3 Authorization service in front of an
// authz.Server.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	s *authz.Server
	// ok caches the allowed responses of the common case, shared by every
	// check with the same identity, route and removal list.
	ok *slotcache.Cache[okKey, *okEntry]
	// wire finds the entry of a cached response the codec is asked to
	// encode (*authv3.CheckResponse → *okEntry): exactly the entries in ok.
	// denied holds the encoded prebuilt denials.
	wire   sync.Map
	denied map[*authv3.CheckResponse][]byte
	// prebuilt holds one denial response per prebuilt authz.DenialResponse.
	prebuilt map[*authz.DenialResponse]*authv3.CheckResponse
	std      encoding.CodecV2
}

// New returns the Envoy ext_authz v3 gRPC front end of s, to register with
// authv3.RegisterAuthorizationServer. Serve it with
// grpc.ForceServerCodecV2(g.Codec()) so that the responses it caches are
// sent without being encoded again.
func New(s *authz.Server) *Server {
	ds := s.Denials()
	g := &Server{
		s:        s,
		ok:       slotcache.New[okKey, *okEntry](okCacheSlots),
		denied:   make(map[*authv3.CheckResponse][]byte, len(ds)),
		prebuilt: make(map[*authz.DenialResponse]*authv3.CheckResponse, len(ds)),
		std:      encoding.GetCodecV2(grpcproto.Name),
	}
	for r, d := range ds {
		resp := deniedResponse(r, d, "")
		g.prebuilt[d] = resp
		if b, err := deterministic.Marshal(resp); err == nil {
			g.denied[resp] = b
		}
	}
	return g
}

// Check answers one Envoy ext_authz request. It never returns an error: every
// failure is a denial that Envoy forwards to the client, so Envoy's
// failure_mode_allow never decides. The response may be shared with other
// checks: it must not be modified.
func (g *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	gen := g.s.Current() // one generation for the whole check
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		headers = headerMapToMap(h.GetHeaderMap())
	}
	r := authz.Request{
		Method:            h.GetMethod(),
		Host:              h.GetHost(),
		Path:              h.GetPath(),
		Headers:           headers,
		BodySize:          h.GetSize(),
		ContextExtensions: attrs.GetContextExtensions(),
		PeerPrincipal:     attrs.GetSource().GetPrincipal(),
		PeerCertificate:   attrs.GetSource().GetCertificate(),
	}
	// The body (Envoy with_request_body): raw_body with pack_as_bytes,
	// else the string field body. Copied only when some route reads it.
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.Body = raw
	} else if b := h.GetBody(); b != "" && gen.Engine().NeedsBody() {
		r.Body = []byte(b)
	}
	requestID := headers["x-request-id"]
	if requestID == "" {
		requestID = h.GetId()
	}
	d := g.s.DecideOn(ctx, gen, authz.TransportGRPC, &r, requestID)
	if d.Code != authz.Allowed {
		return g.denial(&d), nil
	}
	return g.okResponse(&d), nil
}

// okCacheSlots is the size of the cache of allowed responses. An entry (the
// response, its headers and metadata, and its encoding) takes about 2 KB, so
// the cache holds at most about 8 MB.
const okCacheSlots = 4096

// okKey identifies an allowed CheckResponse whose every part is shared: the
// identity (one per cached credential, see Engine), its headers, the route,
// and which of the shared removal lists the decision carries.
type okKey struct {
	id      *authz.Identity
	set     *authz.Header // &Set[0], nil when nothing is set
	nset    int
	route   string
	reason  authz.Reason
	removal authz.RemovalKind
}

// okEntry is a cached allowed response, and its encoding once the codec has
// made it. Only a response that was used again is encoded for keeps: with
// more active identities than slots, most entries are replaced before their
// second use, and they go to the standard codec like an uncached response.
type okEntry struct {
	resp   *authv3.CheckResponse
	reused atomic.Bool
	wire   atomic.Pointer[[]byte]
}

// okStatus is the status of every allowed CheckResponse (read-only).
var okStatus = &rpcstatus.Status{Code: int32(codes.OK)}

// okMessage holds the per-check messages of an allowed CheckResponse in one
// allocation.
type okMessage struct {
	resp authv3.CheckResponse
	http authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
}

// okResponse returns the allowed CheckResponse: identity headers with
// OVERWRITE_IF_EXISTS_OR_ADD set explicitly, headers_to_remove, and the
// identity as dynamic metadata. In the common case (the removal list is one
// of the shared ones) the whole response is built once per identity and
// route and then shared; only the gRPC encoder reads it, and marshalling
// one message concurrently is safe, as for the prebuilt denials.
func (g *Server) okResponse(d *authz.Decision) *authv3.CheckResponse {
	k := okKey{id: d.Identity, nset: len(d.Set), route: d.Route, reason: d.Reason, removal: authz.RemovalOf(d.Remove)}
	if len(d.Set) > 0 {
		k.set = &d.Set[0]
	}
	// Without an identity (a public route) the key is the route alone,
	// which is unique too; a removal list built for this request is not
	// shared.
	// Nor is a response that carries this request's rate-limit budget or
	// model.
	cacheable := k.removal != authz.RemovalOther && (d.Identity != nil || len(d.Set) == 0) &&
		len(d.ResponseHeaders) == 0 && d.Model == "" && len(d.Tools) == 0
	if cacheable {
		if e, ok := g.ok.Get(k); ok {
			if !e.reused.Load() {
				e.reused.Store(true)
			}
			return e.resp
		}
	}
	m := &okMessage{}
	m.ok.Headers = headerOptions(d.Set)
	m.ok.HeadersToRemove = d.Remove
	// The ratelimit-* headers go to the client, with the upstream's
	// response.
	m.ok.ResponseHeadersToAdd = headerOptions(d.ResponseHeaders)
	m.http.OkResponse = &m.ok
	m.resp.Status = okStatus
	m.resp.HttpResponse = &m.http
	m.resp.DynamicMetadata = identityMetadata(d)
	if cacheable {
		// Register the entry with the codec before it can be replaced, so
		// whoever replaces it always finds it to remove.
		e := &okEntry{resp: &m.resp}
		g.wire.Store(e.resp, e)
		if old, ok := g.ok.Swap(k, e); ok {
			g.wire.Delete(old.resp)
		}
	}
	return &m.resp
}

// headerOptions turns set into header options with OVERWRITE_IF_EXISTS_OR_ADD.
func headerOptions(set []authz.Header) []*corev3.HeaderValueOption {
	n := len(set)
	if n == 0 {
		return nil
	}
	type option struct {
		value  corev3.HeaderValue
		option corev3.HeaderValueOption
	}
	opts := make([]option, n)
	ptrs := make([]*corev3.HeaderValueOption, n)
	for i, h := range set {
		o := &opts[i]
		o.value.Key = h.Name
		o.value.Value = h.Value
		o.option.Header = &o.value
		o.option.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ptrs[i] = &o.option
	}
	return ptrs
}

// headerMapToMap flattens Envoy's HeaderMap (sent instead of headers when
// encode_raw_headers is on) into the lower-case map the Engine reads,
// joining repeated headers with "," as Envoy does.
func headerMapToMap(hm *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if old, ok := out[k]; ok {
			v = old + "," + v
		}
		out[k] = v
	}
	return out
}

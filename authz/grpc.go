package authz

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// GRPC adapts a Server to Envoy's ext_authz v3 Authorization service.
type GRPC struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
	// ok caches the allowed responses of the common case, shared by every
	// check with the same identity, route and removal list.
	ok *slotCache[okKey, *okEntry]
	// wire finds the entry of a cached response the codec is asked to
	// encode (*authv3.CheckResponse → *okEntry): exactly the entries in ok.
	// denied holds the encoded prebuilt denials.
	wire   sync.Map
	denied map[*authv3.CheckResponse][]byte
	std    encoding.CodecV2
}

// GRPC returns the Envoy ext_authz v3 gRPC front end of s, to register with
// authv3.RegisterAuthorizationServer. Serve it with
// grpc.ForceServerCodecV2(g.Codec()) so that the responses it caches are
// sent without being encoded again.
func (s *Server) GRPC() *GRPC {
	g := &GRPC{
		s:      s,
		ok:     newSlotCache[okKey, *okEntry](okCacheSlots),
		denied: make(map[*authv3.CheckResponse][]byte, len(s.deny.byReason)),
		std:    encoding.GetCodecV2(grpcproto.Name),
	}
	for _, d := range s.deny.byReason {
		if b, err := deterministic.Marshal(d.grpc); err == nil {
			g.denied[d.grpc] = b
		}
	}
	return g
}

// Check answers one Envoy ext_authz request. It never returns an error: every
// failure is a denial that Envoy forwards to the client, so Envoy's
// failure_mode_allow never decides. The response may be shared with other
// checks: it must not be modified.
func (g *GRPC) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	gen := g.s.gen.Load() // one generation for the whole check
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		headers = headerMapToMap(h.GetHeaderMap())
	}
	r := Request{
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
	} else if b := h.GetBody(); b != "" && gen.engine.NeedsBody() {
		r.Body = []byte(b)
	}
	requestID := headers["x-request-id"]
	if requestID == "" {
		requestID = h.GetId()
	}
	d := g.s.decideOn(ctx, gen, TransportGRPC, &r, requestID)
	if d.Code != Allowed {
		return g.s.deny.forDecision(&d, true).grpc, nil
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
	id      *Identity
	set     *Header // &Set[0], nil when nothing is set
	nset    int
	route   string
	reason  Reason
	removal removalKind
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
func (g *GRPC) okResponse(d *Decision) *authv3.CheckResponse {
	k := okKey{id: d.Identity, nset: len(d.Set), route: d.Route, reason: d.Reason, removal: removalOf(d.Remove)}
	if len(d.Set) > 0 {
		k.set = &d.Set[0]
	}
	// Without an identity (a public route) the key is the route alone,
	// which is unique too; a removal list built for this request is not
	// shared.
	// Nor is a response that carries this request's rate-limit budget or
	// model.
	cacheable := k.removal != removalOther && (d.Identity != nil || len(d.Set) == 0) &&
		len(d.ResponseHeaders) == 0 && d.Model == "" && len(d.Tools) == 0
	if cacheable {
		if e, ok := g.ok.get(k); ok {
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
		if old, ok := g.ok.swap(k, e); ok {
			g.wire.Delete(old.resp)
		}
	}
	return &m.resp
}

// headerOptions turns set into header options with OVERWRITE_IF_EXISTS_OR_ADD.
func headerOptions(set []Header) []*corev3.HeaderValueOption {
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

// deterministic encodes the responses that are sent many times, so the
// same decision always produces the same bytes.
var deterministic = proto.MarshalOptions{Deterministic: true}

// Codec returns the gRPC codec to serve g with (grpc.ForceServerCodecV2):
// the standard protobuf codec, except that the responses g shares (the
// prebuilt denials and the cached allowed responses) are encoded once and
// then sent from those bytes. Encoding an allowed response, whose dynamic
// metadata is a protobuf map, otherwise costs about as much as the rest of
// the check. Every other message, of every service on the server, goes to
// the standard codec.
func (g *GRPC) Codec() encoding.CodecV2 { return codec{g} }

type codec struct{ g *GRPC }

// Name is the standard codec's: the content-subtype stays "proto".
func (c codec) Name() string { return grpcproto.Name }

// Marshal encodes v, from the cached bytes when v is a shared response.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if resp, ok := v.(*authv3.CheckResponse); ok {
		if b := c.g.encoded(resp); b != nil {
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	return c.g.std.Marshal(v)
}

// Unmarshal is the standard codec's.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.g.std.Unmarshal(data, v) }

// encoded returns the encoding of a shared response, making it on first use,
// or nil for a response built for one check only.
func (g *GRPC) encoded(resp *authv3.CheckResponse) []byte {
	if b, ok := g.denied[resp]; ok {
		return b
	}
	v, ok := g.wire.Load(resp)
	if !ok {
		return nil
	}
	e := v.(*okEntry)
	if !e.reused.Load() {
		return nil
	}
	if b := e.wire.Load(); b != nil {
		return *b
	}
	b, err := deterministic.Marshal(resp)
	if err != nil {
		return nil
	}
	e.wire.Store(&b)
	return b
}

// identityMetadata is the decision as Envoy dynamic metadata under the
// ext_authz filter's namespace, for access logs and later filters.
func identityMetadata(d *Decision) *structpb.Struct {
	m := &metadataBuilder{s: structpb.Struct{Fields: make(map[string]*structpb.Value, 10)}}
	m.add("outcome", d.Code.String())
	if d.Model != "" {
		m.add("model", d.Model)
	}
	m.add("reason", string(d.Reason))
	if d.Route != "" {
		m.add("route", d.Route)
	}
	if id := d.Identity; id != nil {
		m.add("subject", id.Subject)
		m.add("method", id.Method.String())
		if id.Issuer != "" {
			m.add("issuer", id.Issuer)
		}
		if id.KeyID != "" {
			m.add("key_id", id.KeyID)
		}
		if len(id.Roles) > 0 {
			m.add("roles", strings.Join(id.Roles, ","))
		}
		if len(id.Groups) > 0 {
			m.add("groups", strings.Join(id.Groups, ","))
		}
	}
	return &m.s
}

// metadataBuilder holds the metadata Struct and its (at most 10) string
// values in one allocation instead of two per value.
type metadataBuilder struct {
	s    structpb.Struct
	n    int
	vals [10]structpb.Value
	strs [10]structpb.Value_StringValue
}

func (m *metadataBuilder) add(key, v string) {
	i := m.n
	if i == len(m.vals) {
		m.s.Fields[key] = structpb.NewStringValue(v)
		return
	}
	m.n++
	m.strs[i].StringValue = v
	m.vals[i].Kind = &m.strs[i]
	m.s.Fields[key] = &m.vals[i]
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

// deniedGRPC builds the precomputed CheckResponse for a denial.
func deniedGRPC(reason Reason, c Code, body string, headers []Header, model string) *authv3.CheckResponse {
	opts := make([]*corev3.HeaderValueOption, 0, len(headers))
	for _, h := range headers {
		opts = append(opts, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	md := map[string]*structpb.Value{
		"outcome": structpb.NewStringValue(c.String()),
		"reason":  structpb.NewStringValue(string(reason)),
	}
	if model != "" {
		md["model"] = structpb.NewStringValue(model)
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c.GRPCCode()), Message: c.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(c.HTTPStatus())},
			Headers: opts,
			Body:    body,
		}},
		DynamicMetadata: &structpb.Struct{Fields: md},
	}
}

package authz

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// GRPC adapts a Server to Envoy's ext_authz v3 Authorization service.
type GRPC struct {
	authv3.UnimplementedAuthorizationServer
	s  *Server
	ok *slotCache[okKey, okParts]
}

// GRPC returns the Envoy ext_authz v3 gRPC front end of s, to register with
// authv3.RegisterAuthorizationServer.
func (s *Server) GRPC() *GRPC {
	return &GRPC{s: s, ok: newSlotCache[okKey, okParts](okCacheSlots)}
}

// Check answers one Envoy ext_authz request. It never returns an error: every
// failure is a denial that Envoy forwards to the client, so Envoy's
// failure_mode_allow never decides.
func (g *GRPC) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
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
		ContextExtensions: attrs.GetContextExtensions(),
	}
	requestID := headers["x-request-id"]
	if requestID == "" {
		requestID = h.GetId()
	}
	d := g.s.decide(ctx, TransportGRPC, &r, requestID)
	if d.Code != Allowed {
		return g.s.deny.grpcResponse(d.Reason), nil
	}
	return g.okResponse(&d), nil
}

// okCacheSlots is the size of the cache of allowed-response parts.
const okCacheSlots = 8192

// okKey identifies the parts of an allowed CheckResponse that do not depend
// on the request's own headers: the identity (shared by every decision for
// the same cached credential), its headers, and the route.
type okKey struct {
	id     *Identity
	set    *Header // &Set[0], nil when nothing is set
	nset   int
	route  string
	reason Reason
}

// okParts are the identity headers as header options and the dynamic
// metadata of an allowed decision. They are shared by every response built
// from them, which only the gRPC encoder reads (concurrent marshalling of
// one message is safe), like the prebuilt denials.
type okParts struct {
	headers []*corev3.HeaderValueOption
	md      *structpb.Struct
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

// okResponse builds the allowed CheckResponse: identity headers with
// OVERWRITE_IF_EXISTS_OR_ADD set explicitly, headers_to_remove, and the
// identity as dynamic metadata. The headers and metadata are built once per
// cached identity and route.
func (g *GRPC) okResponse(d *Decision) *authv3.CheckResponse {
	k := okKey{id: d.Identity, nset: len(d.Set), route: d.Route, reason: d.Reason}
	if len(d.Set) > 0 {
		k.set = &d.Set[0]
	}
	p, ok := g.ok.get(k)
	if !ok {
		p = okParts{headers: headerOptions(d.Set), md: identityMetadata(d)}
		if d.Identity != nil || len(d.Set) == 0 {
			// An identity keeps its key unique while cached; without one
			// (a public route) the key is the route alone.
			g.ok.put(k, p)
		}
	}
	m := &okMessage{}
	m.ok.Headers = p.headers
	m.ok.HeadersToRemove = d.Remove
	m.http.OkResponse = &m.ok
	m.resp.Status = okStatus
	m.resp.HttpResponse = &m.http
	m.resp.DynamicMetadata = p.md
	return &m.resp
}

// headerOptions turns set into header options with OVERWRITE_IF_EXISTS_OR_ADD.
func headerOptions(set []Header) []*corev3.HeaderValueOption {
	n := len(set)
	if n == 0 {
		return nil
	}
	values := make([]corev3.HeaderValue, n)
	options := make([]corev3.HeaderValueOption, n)
	ptrs := make([]*corev3.HeaderValueOption, n)
	for i, h := range set {
		values[i].Key = h.Name
		values[i].Value = h.Value
		options[i].Header = &values[i]
		options[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ptrs[i] = &options[i]
	}
	return ptrs
}

// identityMetadata is the decision as Envoy dynamic metadata under the
// ext_authz filter's namespace, for access logs and later filters.
func identityMetadata(d *Decision) *structpb.Struct {
	f := make(map[string]*structpb.Value, 8)
	f["outcome"] = structpb.NewStringValue(d.Code.String())
	f["reason"] = structpb.NewStringValue(string(d.Reason))
	if d.Route != "" {
		f["route"] = structpb.NewStringValue(d.Route)
	}
	if id := d.Identity; id != nil {
		f["subject"] = structpb.NewStringValue(id.Subject)
		f["method"] = structpb.NewStringValue(id.Method.String())
		if id.Issuer != "" {
			f["issuer"] = structpb.NewStringValue(id.Issuer)
		}
		if id.KeyID != "" {
			f["key_id"] = structpb.NewStringValue(id.KeyID)
		}
		if len(id.Roles) > 0 {
			f["roles"] = structpb.NewStringValue(strings.Join(id.Roles, ","))
		}
		if len(id.Groups) > 0 {
			f["groups"] = structpb.NewStringValue(strings.Join(id.Groups, ","))
		}
	}
	return &structpb.Struct{Fields: f}
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
func deniedGRPC(reason Reason, c Code, body string, headers []Header) *authv3.CheckResponse {
	opts := make([]*corev3.HeaderValueOption, 0, len(headers))
	for _, h := range headers {
		opts = append(opts, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c.GRPCCode()), Message: c.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(c.HTTPStatus())},
			Headers: opts,
			Body:    body,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"outcome": structpb.NewStringValue(c.String()),
			"reason":  structpb.NewStringValue(string(reason)),
		}},
	}
}

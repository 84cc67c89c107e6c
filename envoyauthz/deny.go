package envoyauthz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/authz"
)

// denial returns the CheckResponse of the denied decision d: the prebuilt
// one of its reason, or one built for d when d carries a message, response
// headers or a model of its own.
func (g *Server) denial(d *authz.Decision) *authv3.CheckResponse {
	dn := g.s.DenialFor(d)
	if resp, ok := g.prebuilt[dn]; ok {
		return resp
	}
	return deniedResponse(d.Reason, dn, d.Model)
}

// deniedResponse builds the CheckResponse of a denial.
func deniedResponse(reason authz.Reason, dn *authz.DenialResponse, model string) *authv3.CheckResponse {
	c, headers := dn.Code(), dn.Headers()
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
		Status: &rpcstatus.Status{Code: int32(StatusCode(c)), Message: c.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(c.HTTPStatus())},
			Headers: opts,
			Body:    string(dn.Body()),
		}},
		DynamicMetadata: &structpb.Struct{Fields: md},
	}
}

// StatusCode returns the gRPC status.code of the CheckResponse for outcome
// c; UNAVAILABLE for any code it does not know (the zero Code included).
func StatusCode(c authz.Code) codes.Code {
	switch c {
	case authz.Allowed:
		return codes.OK
	case authz.MissingCredentials, authz.InvalidToken, authz.InvalidAPIKey:
		return codes.Unauthenticated
	case authz.Forbidden:
		return codes.PermissionDenied
	case authz.RateLimited:
		return codes.ResourceExhausted
	case authz.InvalidRequest:
		return codes.InvalidArgument
	default:
		return codes.Unavailable
	}
}

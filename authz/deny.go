package authz

import (
	"encoding/json"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// RetryAfterSeconds is the retry-after value sent with 503 denials.
const RetryAfterSeconds = "1"

// Realm is the realm of the www-authenticate challenges.
const Realm = "extauthz"

// denial is everything a denial sends to the client, built once.
type denial struct {
	code    Code
	body    []byte
	headers []Header // content-type, www-authenticate, retry-after
	grpc    *authv3.CheckResponse
}

// denials holds one prebuilt denial per reason, so a denial costs no
// allocation beyond the transport's own.
type denials struct {
	byReason map[Reason]*denial
	internal *denial
}

func buildDenials() *denials {
	ds := &denials{byReason: make(map[Reason]*denial, len(reasonCodes))}
	for r, c := range reasonCodes {
		if c == Allowed {
			continue
		}
		ds.byReason[r] = newDenial(r, c)
	}
	ds.internal = ds.byReason[ReasonInternalError]
	return ds
}

func newDenial(r Reason, c Code) *denial {
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{c.String(), codeMessages[c]})
	headers := []Header{{"content-type", "application/json"}}
	switch c {
	case MissingCredentials:
		// RFC 6750 section 3.1: no error code when no credential was sent.
		headers = append(headers, Header{"www-authenticate", `Bearer realm="` + Realm + `"`})
	case InvalidToken, InvalidAPIKey:
		headers = append(headers, Header{"www-authenticate", `Bearer realm="` + Realm + `", error="invalid_token", error_description="` + codeMessages[c] + `"`})
	case Forbidden:
		headers = append(headers, Header{"www-authenticate", `Bearer realm="` + Realm + `", error="insufficient_scope"`})
	case Unavailable:
		headers = append(headers, Header{"retry-after", RetryAfterSeconds})
	}
	return &denial{code: c, body: body, headers: headers, grpc: deniedGRPC(r, c, string(body), headers)}
}

func (ds *denials) get(r Reason) *denial {
	if d, ok := ds.byReason[r]; ok {
		return d
	}
	return ds.internal
}

func (ds *denials) grpcResponse(r Reason) *authv3.CheckResponse { return ds.get(r).grpc }

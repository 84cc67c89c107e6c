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
	case Unavailable, RateLimited, codeUnset:
		headers = append(headers, Header{"retry-after", RetryAfterSeconds})
	}
	return &denial{code: c, body: body, headers: headers, grpc: deniedGRPC(r, c, string(body), headers, "")}
}

// forDecision returns the denial for d: the prebuilt one of its reason,
// unless d carries a message of its own (a refused model or tool, a body
// that cannot be checked) or response headers (a 429's retry-after and
// ratelimit-*), which need a denial built for this request. The gRPC
// response is built only when withGRPC is set.
func (ds *denials) forDecision(d *Decision, withGRPC bool) *denial {
	base := ds.get(d.Reason)
	if d.Message == "" && len(d.ResponseHeaders) == 0 {
		return base
	}
	msg := d.Message
	if msg == "" {
		msg = codeMessages[base.code]
	}
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{base.code.String(), msg})
	headers := make([]Header, 0, len(base.headers)+len(d.ResponseHeaders))
	for _, h := range base.headers {
		if !setsHeader(d.ResponseHeaders, h.Name) {
			headers = append(headers, h)
		}
	}
	headers = append(headers, d.ResponseHeaders...)
	dn := &denial{code: base.code, body: body, headers: headers}
	if withGRPC {
		dn.grpc = deniedGRPC(d.Reason, base.code, string(body), headers, d.Model)
	}
	return dn
}

func (ds *denials) get(r Reason) *denial {
	if d, ok := ds.byReason[r]; ok {
		return d
	}
	return ds.internal
}

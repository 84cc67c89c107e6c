package authz

import (
	"encoding/json"
)

// RetryAfterSeconds is the retry-after value sent with 503 denials.
const RetryAfterSeconds = "1"

// Realm is the realm of the www-authenticate challenges.
const Realm = "extauthz"

// DenialResponse is everything a denial sends to the client, in any transport: the
// code (whose HTTP status it is), the JSON body and the response headers
// (content-type, www-authenticate, retry-after, ratelimit-*). The prebuilt
// ones are shared by every check: read-only.
type DenialResponse struct {
	code    Code
	body    []byte
	headers []Header
}

// Code is the denial's public outcome.
func (d *DenialResponse) Code() Code { return d.code }

// Body is the denial's JSON body ({"error", "message"}). Read-only.
func (d *DenialResponse) Body() []byte { return d.body }

// Headers are the denial's response headers. Read-only.
func (d *DenialResponse) Headers() []Header { return d.headers }

// denials holds one prebuilt denial per reason, so a denial costs no
// allocation beyond the transport's own.
type denials struct {
	byReason map[Reason]*DenialResponse
	internal *DenialResponse
}

func buildDenials() *denials {
	ds := &denials{byReason: make(map[Reason]*DenialResponse, len(reasonCodes))}
	for r, c := range reasonCodes {
		if c == Allowed {
			continue
		}
		ds.byReason[r] = newDenial(c)
	}
	ds.internal = ds.byReason[ReasonInternalError]
	return ds
}

func newDenial(c Code) *DenialResponse {
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
	return &DenialResponse{code: c, body: body, headers: headers}
}

// forDecision returns the denial for d: the prebuilt one of its reason,
// unless d carries a message of its own (a refused model or tool, a body
// that cannot be checked) or response headers (a 429's retry-after and
// ratelimit-*), which need a denial built for this request.
func (ds *denials) forDecision(d *Decision) *DenialResponse {
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
	return &DenialResponse{code: base.code, body: body, headers: headers}
}

func (ds *denials) get(r Reason) *DenialResponse {
	if d, ok := ds.byReason[r]; ok {
		return d
	}
	return ds.internal
}

// DenialFor returns what the client is sent for the denied decision d: a
// prebuilt, shared DenialResponse (one per reason, see Denials) unless d carries a
// message or response headers of its own.
func (s *Server) DenialFor(d *Decision) *DenialResponse { return s.deny.forDecision(d) }

// Denials returns the prebuilt denials by reason, so that a front end can
// build its own encoding of each once. The map is the caller's; the
// Denials are shared and read-only.
func (s *Server) Denials() map[Reason]*DenialResponse {
	out := make(map[Reason]*DenialResponse, len(s.deny.byReason))
	for r, d := range s.deny.byReason {
		out[r] = d
	}
	return out
}

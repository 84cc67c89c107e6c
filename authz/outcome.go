package authz

// Code is the public outcome of a check: "allowed" or one of the error codes
// of the response table. It is the `outcome` metric label and the `error`
// field of a denial's JSON body.
//
// The zero Code is not Allowed: a Decision whose code was never set denies,
// as unavailable (503, UNAVAILABLE), like any other internal error. Only an
// explicit Allowed allows.
type Code uint8

// The outcomes, in the order of the response table.
const (
	// codeUnset is the zero value: no outcome was decided. Everything
	// public about it (name, metric label, statuses, denial) is that of
	// Unavailable.
	codeUnset Code = iota
	Allowed
	MissingCredentials
	InvalidToken
	InvalidAPIKey
	Forbidden
	RateLimited
	Unavailable
	// InvalidRequest: the request body (or model header) cannot be checked
	// by a route's LLM policy (400). It comes last so that the values of
	// the codes before it stay stable.
	InvalidRequest
	numCodes
)

var codeNames = [numCodes]string{
	codeUnset:          "unavailable",
	Allowed:            "allowed",
	MissingCredentials: "missing_credentials",
	InvalidToken:       "invalid_token",
	InvalidAPIKey:      "invalid_api_key",
	Forbidden:          "forbidden",
	RateLimited:        "rate_limited",
	Unavailable:        "unavailable",
	InvalidRequest:     "invalid_request",
}

var codeMessages = [numCodes]string{
	codeUnset:          "the authorization service is temporarily unavailable",
	MissingCredentials: "a bearer token or API key is required",
	InvalidToken:       "the bearer token is invalid or expired",
	InvalidAPIKey:      "the API key is invalid, expired or revoked",
	Forbidden:          "the credential is not permitted to access this resource",
	RateLimited:        "too many requests",
	Unavailable:        "the authorization service is temporarily unavailable",
	InvalidRequest:     "the request cannot be checked",
}

// String returns the code's name as it appears in metrics and JSON bodies.
func (c Code) String() string {
	if c < numCodes {
		return codeNames[c]
	}
	return "other"
}

// HTTPStatus returns the status the client receives for a denial with this
// code, or 200 for Allowed. Any other code (the zero Code included) is 503.
func (c Code) HTTPStatus() int {
	switch c {
	case Allowed:
		return 200
	case MissingCredentials, InvalidToken, InvalidAPIKey:
		return 401
	case Forbidden:
		return 403
	case RateLimited:
		return 429
	case InvalidRequest:
		return 400
	default:
		return 503
	}
}

// Reason is the finer, internal cause of a decision. It appears in the
// decision log and in Envoy dynamic metadata, never as a metric label.
type Reason string

// The reasons. Each belongs to exactly one Code (see reasonCodes).
const (
	ReasonPublicRoute Reason = "public_route"
	ReasonAuthorized  Reason = "authorized"

	ReasonNoCredentials Reason = "no_credentials"

	ReasonMalformedCredential Reason = "malformed_credential"
	ReasonMalformedToken      Reason = "malformed_token"
	ReasonTokenTooLarge       Reason = "token_too_large"
	ReasonUnknownIssuer       Reason = "unknown_issuer"
	ReasonAlgorithm           Reason = "disallowed_algorithm"
	ReasonUnknownKID          Reason = "unknown_kid"
	ReasonBadSignature        Reason = "bad_signature"
	ReasonExpiredToken        Reason = "expired_token"
	ReasonNotYetValid         Reason = "token_not_yet_valid"
	ReasonIssuedInFuture      Reason = "issued_in_future"
	ReasonWrongAudience       Reason = "wrong_audience"
	ReasonMissingClaim        Reason = "missing_claim"
	ReasonInvalidToken        Reason = "invalid_token"

	ReasonMalformedKey Reason = "malformed_key"
	ReasonUnknownKey   Reason = "unknown_key"
	ReasonRevokedKey   Reason = "revoked_key"
	ReasonExpiredKey   Reason = "expired_key"

	ReasonNoRoute           Reason = "no_route"
	ReasonNoRole            Reason = "no_role"
	ReasonInsufficientRole  Reason = "insufficient_role"
	ReasonInsufficientPerms Reason = "insufficient_permissions"

	ReasonJWKSUnavailable  Reason = "jwks_unavailable"
	ReasonRedisTimeout     Reason = "redis_timeout"
	ReasonRedisUnavailable Reason = "redis_unavailable"
	ReasonCheckTimeout     Reason = "check_timeout"
	ReasonInternalError    Reason = "internal_error"

	// ReasonRateLimited: the caller spent its rate-limit budget (429).
	ReasonRateLimited Reason = "rate_limited"
	// ReasonRateLimitUnavailable: the rate-limit Redis failed and
	// rate_limits.on_error is deny (503).
	ReasonRateLimitUnavailable Reason = "ratelimit_unavailable"

	// ReasonInactiveToken: the introspection endpoint says the opaque
	// token is not active (or it is expired, for another audience, or has
	// no subject) (401).
	ReasonInactiveToken Reason = "inactive_token"
	// ReasonIntrospectionUnavailable: the introspection endpoint gave no
	// trustworthy answer (down, slow, refusing extauthz's credentials,
	// malformed) (503).
	ReasonIntrospectionUnavailable Reason = "introspection_unavailable"

	// Introspection flood bounds (issue 12, introspect branch).
	// ReasonIntrospectionRateLimited: the miss would exceed
	// introspection.max_requests_per_second; the endpoint was not asked
	// (503).
	ReasonIntrospectionRateLimited Reason = "introspection_rate_limited"
	// ReasonIntrospectionBusy: introspection.max_concurrent requests were
	// in flight for as long as the check could wait; the endpoint was not
	// asked (503).
	ReasonIntrospectionBusy Reason = "introspection_busy"

	// Issue 13, requests that cannot be read one way only (400), refused
	// before route matching so that default_route cannot decide them.
	// ReasonInvalidPath: the path cannot be decoded (bad escape, %25, NUL
	// or control character, not UTF-8, empty).
	ReasonInvalidPath Reason = "invalid_path"
	// ReasonAmbiguousPath: upstreams would read the path in different ways
	// (backslash, encoded separator or delimiter, raw '#', ';', dot or
	// empty segment, not origin form).
	ReasonAmbiguousPath Reason = "ambiguous_path"
	// ReasonInvalidMethod: the method is not an upper-case token.
	ReasonInvalidMethod Reason = "invalid_method"
	// ReasonUntrustedForwardingHeader: a forward-auth check carries a
	// header of the family server.http_forwarded_headers does not trust,
	// or a trusted one twice.
	ReasonUntrustedForwardingHeader Reason = "untrusted_forwarding_header"
	// ReasonMissingForwardingHeader: a forward-auth check lacks the
	// method or URI header of the trusted family.
	ReasonMissingForwardingHeader Reason = "missing_forwarding_header"
)

// reasonCodes lists every reason with the code it implies. Deny responses are
// built once per reason at startup from this table. Read it only through
// ReasonCode, which fails closed for a reason missing from it
// (TestReasonCodes_IndexedOnlyByReasonCode).
var reasonCodes = map[Reason]Code{
	ReasonPublicRoute: Allowed,
	ReasonAuthorized:  Allowed,

	ReasonNoCredentials: MissingCredentials,

	ReasonMalformedCredential: InvalidToken,
	ReasonMalformedToken:      InvalidToken,
	ReasonTokenTooLarge:       InvalidToken,
	ReasonUnknownIssuer:       InvalidToken,
	ReasonAlgorithm:           InvalidToken,
	ReasonUnknownKID:          InvalidToken,
	ReasonBadSignature:        InvalidToken,
	ReasonExpiredToken:        InvalidToken,
	ReasonNotYetValid:         InvalidToken,
	ReasonIssuedInFuture:      InvalidToken,
	ReasonWrongAudience:       InvalidToken,
	ReasonMissingClaim:        InvalidToken,
	ReasonInvalidToken:        InvalidToken,

	ReasonMalformedKey: InvalidAPIKey,
	ReasonUnknownKey:   InvalidAPIKey,
	ReasonRevokedKey:   InvalidAPIKey,
	ReasonExpiredKey:   InvalidAPIKey,

	ReasonNoRoute:           Forbidden,
	ReasonNoRole:            Forbidden,
	ReasonInsufficientRole:  Forbidden,
	ReasonInsufficientPerms: Forbidden,

	ReasonJWKSUnavailable:  Unavailable,
	ReasonRedisTimeout:     Unavailable,
	ReasonRedisUnavailable: Unavailable,
	ReasonCheckTimeout:     Unavailable,
	ReasonInternalError:    Unavailable,

	ReasonPartialBody:       InvalidRequest,
	ReasonBodyTooLarge:      InvalidRequest,
	ReasonContentType:       InvalidRequest,
	ReasonMalformedBody:     InvalidRequest,
	ReasonMissingModel:      InvalidRequest,
	ReasonModelMismatch:     InvalidRequest,
	ReasonMissingBody:       InvalidRequest,
	ReasonModelNotPermitted: Forbidden,
	ReasonToolNotPermitted:  Forbidden,

	ReasonRateLimited:          RateLimited,
	ReasonRateLimitUnavailable: Unavailable,

	ReasonInactiveToken:            InvalidToken,
	ReasonIntrospectionUnavailable: Unavailable,

	// Introspection flood bounds (issue 12, introspect branch).
	ReasonIntrospectionRateLimited: Unavailable,
	ReasonIntrospectionBusy:        Unavailable,

	// Issue 13: paths, methods and forwarding headers.
	ReasonInvalidPath:               InvalidRequest,
	ReasonAmbiguousPath:             InvalidRequest,
	ReasonInvalidMethod:             InvalidRequest,
	ReasonUntrustedForwardingHeader: InvalidRequest,
	ReasonMissingForwardingHeader:   InvalidRequest,
}

// ReasonCode returns the public code of a reason. It is the only reader of
// reasonCodes: a reason missing from the table (a new reason someone forgot
// to add) fails closed as Unavailable, never as the zero Code or an allow.
func ReasonCode(r Reason) Code {
	if c, ok := reasonCodes[r]; ok {
		return c
	}
	return Unavailable
}

// AuthMethod is how the caller authenticated: the `method` metric label and
// the x-auth-method header.
type AuthMethod uint8

// The authentication methods.
const (
	MethodNone AuthMethod = iota
	MethodJWT
	MethodAPIKey
	// MethodMTLS is a peer identity from mTLS (peer_identity), used only
	// when the request carries no credential.
	MethodMTLS
	// MethodOpaque is an opaque bearer token validated by OAuth 2.0 token
	// introspection (introspection section).
	MethodOpaque
	numMethods
)

var methodNames = [numMethods]string{MethodNone: "none", MethodJWT: "jwt", MethodAPIKey: "api_key", MethodMTLS: "mtls", MethodOpaque: "opaque"}

// String returns the method's label value.
func (m AuthMethod) String() string {
	if m < numMethods {
		return methodNames[m]
	}
	return "other"
}

// Transport is the front end a check arrived on.
type Transport uint8

// The transports.
const (
	TransportGRPC Transport = iota
	TransportHTTP
	numTransports
)

var transportNames = [numTransports]string{TransportGRPC: "grpc", TransportHTTP: "http"}

// String returns the transport's label value.
func (t Transport) String() string {
	if t < numTransports {
		return transportNames[t]
	}
	return "other"
}

package jwks

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every rejection of the token itself: a client sent
// a token that cannot be accepted (HTTP 401, invalid_token). The finer errors
// below all wrap it, so errors.Is(err, ErrInvalid) classifies any of them.
var ErrInvalid = errors.New("invalid token")

// The finer token rejections. Each wraps ErrInvalid. Returned errors may wrap
// more detail for logs; they never contain the token, a signature or a key.
var (
	// ErrMalformed means the token is not a well-formed compact JWS with a
	// JSON header and a JSON object payload (including non-canonical base64,
	// an unsupported "crit" header and claims of the wrong shape).
	ErrMalformed = fmt.Errorf("%w: malformed", ErrInvalid)
	// ErrTooLarge means the token is longer than max_token_bytes; it was
	// refused before any decoding.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)
	// ErrUnknownIssuer means no provider is configured for the token's iss.
	ErrUnknownIssuer = fmt.Errorf("%w: unknown issuer", ErrInvalid)
	// ErrAlgorithm means the token's alg is not in the provider's allow-list
	// (none never is; HMAC only for an HMAC provider, and nothing else
	// there) or does not match the selected key.
	ErrAlgorithm = fmt.Errorf("%w: algorithm not allowed", ErrInvalid)
	// ErrUnknownKID means no key of the provider matches the token's kid,
	// even after a (rate-limited) refetch of the provider's keys.
	ErrUnknownKID = fmt.Errorf("%w: unknown key id", ErrInvalid)
	// ErrSignature means the signature does not verify with the selected key.
	ErrSignature = fmt.Errorf("%w: bad signature", ErrInvalid)
	// ErrExpired means exp plus the leeway is not after the current time.
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)
	// ErrNotYetValid means nbf minus the leeway is after the current time.
	ErrNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalid)
	// ErrIssuedInFuture means iat minus the leeway is after the current time.
	ErrIssuedInFuture = fmt.Errorf("%w: issued in the future", ErrInvalid)
	// ErrAudience means aud is missing, is not a string or an array of
	// strings, or names none of the provider's audiences.
	ErrAudience = fmt.Errorf("%w: wrong audience", ErrInvalid)
	// ErrMissingClaim means a required claim (iss, exp, or the subject claim)
	// is missing or has the wrong type.
	ErrMissingClaim = fmt.Errorf("%w: missing claim", ErrInvalid)
)

// ErrNoKeys means the provider selected by the token's iss has never loaded a
// key, so the token cannot be judged (HTTP 503, unavailable). It does not wrap
// ErrInvalid: the fault is on the server side.
var ErrNoKeys = errors.New("no keys loaded for issuer")

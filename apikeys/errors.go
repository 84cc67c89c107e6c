package apikeys

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// Lookup outcomes other than success. authz maps them with errors.Is to the
// public error code and the decision log's reason.
var (
	// ErrMalformed means the credential is not an API key of this prefix:
	// wrong length, characters or checksum. It is decided locally.
	ErrMalformed = errors.New("malformed api key")
	// ErrNotFound means no key has this hash (or id), or it expired and was
	// deleted.
	ErrNotFound = errors.New("api key not found")
	// ErrRevoked means the key was revoked.
	ErrRevoked = errors.New("api key revoked")
	// ErrExpired means the key's expires_at has passed.
	ErrExpired = errors.New("api key expired")
	// ErrUnavailable means the backend could not answer (unreachable, timed
	// out, or replied with an error) and the answer was not cached. The
	// cause is wrapped; a timeout also matches context.DeadlineExceeded.
	ErrUnavailable = errors.New("api key store unavailable")
	// ErrInvalid means CreateOptions (or an id) were refused before reaching
	// the backend.
	ErrInvalid = errors.New("invalid argument")
	// ErrCorrupt means the stored record of a key cannot be decoded: a field
	// edited by hand, or written by an incompatible version (for example a
	// rate_limit that is not valid JSON or is out of range). The key is
	// refused, never allowed with part of its record ignored. An error
	// matching ErrCorrupt also matches ErrNotFound, so callers that do not
	// know it answer as for an unknown key (401 invalid_api_key): retrying
	// cannot help, so it is not ErrUnavailable. Lookup logs it at Warn.
	ErrCorrupt = errors.New("corrupt api key record")
	// ErrTooManyKeys means Create refused a key because its owner already
	// has CreateOptions.MaxLive live keys.
	ErrTooManyKeys = errors.New("too many live api keys for the owner")
)

// KeyError is a lookup refused because the key exists but is revoked or
// expired. It names the key by its public id and owner, never by its secret
// or hash, so a denial can be audited (the decision log's key_id and
// subject). It matches its Err, ErrRevoked or ErrExpired, with errors.Is.
// The negative cache keeps it, so a cached refusal carries the same id and
// owner. A KeyError returned by Lookup is shared and must not be modified.
type KeyError struct {
	// Err is ErrRevoked or ErrExpired.
	Err error
	// ID is the key's public id.
	ID string
	// Owner is the key's owner (what x-auth-subject would have been).
	Owner string
	// Issuer is the owner's namespace (Record.Issuer; "" for the CLI's).
	Issuer string
}

// Error returns "apikeys: key <id>: api key expired" (or revoked).
func (e *KeyError) Error() string {
	return "apikeys: key " + e.ID + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *KeyError) Unwrap() error { return e.Err }

// corruptError is a stored record that cannot be decoded. It matches
// ErrCorrupt, ErrNotFound and its cause, and names the record by its hash
// prefix or id and the broken fields, never by anything secret.
type corruptError struct {
	what string // "record 1a2b3c4d" or "id key_…"
	err  error
}

func (e *corruptError) Error() string {
	return "apikeys: " + e.what + ": " + ErrCorrupt.Error() + ": " + e.err.Error()
}

func (e *corruptError) Unwrap() []error { return []error{ErrCorrupt, ErrNotFound, e.err} }

// backendError is a failed backend operation. It matches ErrUnavailable, its
// cause, and, when the cause is any kind of timeout, context.DeadlineExceeded.
type backendError struct {
	op  string
	err error
}

func (e *backendError) Error() string {
	return "apikeys: " + e.op + ": " + ErrUnavailable.Error() + ": " + e.err.Error()
}

func (e *backendError) Unwrap() []error {
	if isTimeout(e.err) && !errors.Is(e.err, context.DeadlineExceeded) {
		return []error{ErrUnavailable, context.DeadlineExceeded, e.err}
	}
	return []error{ErrUnavailable, e.err}
}

// isTimeout reports whether err is a deadline of any kind: the context's, a
// socket read/write/dial timeout, or go-redis waiting for a pooled
// connection.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

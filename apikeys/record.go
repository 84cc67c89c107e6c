package apikeys

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is what the store knows about one key. Records returned by a Store
// are shared between callers and must not be modified.
type Record struct {
	// ID is the key's public id ("key_" + 12 base62 characters), separate
	// from the secret and safe to log, show and put in x-auth-key-id.
	ID string
	// Owner becomes x-auth-subject.
	Owner string
	// Issuer is the namespace of Owner: the JWT issuer of the caller that
	// minted the key (self-service or token exchange), which becomes
	// x-auth-issuer. It is empty for keys created by the CLI or for an
	// explicit owner by an admin, and for records written before it existed:
	// those owners live in the separate CLI namespace. The same Owner under
	// two issuers is two people.
	Issuer string
	// Groups feed role_mapping like a JWT's groups claim.
	Groups []string
	// Roles are granted directly, in addition to mapped ones.
	Roles       []string
	Description string
	CreatedAt   time.Time
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when the key was revoked; zero means it is not.
	RevokedAt time.Time
	// Hash is the hex SHA-256 of the secret key. The secret itself is never
	// stored.
	Hash string
	// RateLimit is the key's own rate limit, which beats every configured
	// one; nil means the key has none.
	RateLimit *RateLimit
}

// Status is "active", "revoked" or "expired" at time now.
func (r *Record) Status(now time.Time) string {
	switch {
	case !r.RevokedAt.IsZero():
		return "revoked"
	case r.expired(now):
		return "expired"
	}
	return "active"
}

func (r *Record) expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// check returns nil for a usable record, else a *KeyError wrapping
// ErrRevoked or ErrExpired.
func (r *Record) check(now time.Time) error {
	if !r.RevokedAt.IsZero() {
		return &KeyError{Err: ErrRevoked, ID: r.ID, Owner: r.Owner, Issuer: r.Issuer}
	}
	if r.expired(now) {
		return &KeyError{Err: ErrExpired, ID: r.ID, Owner: r.Owner, Issuer: r.Issuer}
	}
	return nil
}

// CreateOptions describe a new key.
type CreateOptions struct {
	// Owner is required: 1-256 printable ASCII characters (it becomes a
	// header value).
	Owner string
	// Issuer is the owner's namespace (Record.Issuer): "" for the CLI
	// namespace, else 1-256 printable ASCII characters without spaces, the
	// minting caller's JWT issuer.
	Issuer string
	// Groups and Roles are sorted and de-duplicated; each is 1-256 printable
	// ASCII characters without spaces or commas.
	Groups, Roles []string
	// Description is free text, at most 1024 bytes of UTF-8 without control
	// characters.
	Description string
	// TTL is the key's lifetime; 0 means it never expires.
	TTL time.Duration
	// RateLimit is the key's own rate limit (nil: none): 1 to 1000000
	// requests per 1s to 24h, burst 0 (same as requests) to 1000000.
	RateLimit *RateLimit
	// MaxLive, when positive, refuses the key with an error matching
	// ErrTooManyKeys if the owner (in its issuer's namespace) already has
	// that many live keys (neither revoked nor expired). The count and the
	// creation are one atomic step, so concurrent creations cannot exceed it.
	MaxLive int
}

const (
	maxNameLen        = 256
	maxListLen        = 64
	maxDescriptionLen = 1024
)

// validate returns a copy of o with lists normalised, or an error matching
// ErrInvalid that names every problem.
func (o CreateOptions) validate() (CreateOptions, error) {
	var errs []error
	bad := func(field, msg string) {
		errs = append(errs, fmt.Errorf("%s: %s", field, msg))
	}
	if !printable(o.Owner, true) {
		bad("owner", "must be 1-256 printable ASCII characters, e.g. alice@example.com")
	}
	if o.Issuer != "" && !printable(o.Issuer, false) {
		bad("issuer", "must be empty or 1-256 printable ASCII characters without spaces or commas, e.g. https://issuer.example")
	}
	norm := func(field string, in []string) []string {
		if len(in) > maxListLen {
			bad(field, fmt.Sprintf("at most %d entries", maxListLen))
			return nil
		}
		out := slices.Clone(in)
		for i, v := range out {
			if !printable(v, false) {
				bad(fmt.Sprintf("%s[%d]", field, i), "must be 1-256 printable ASCII characters without spaces or commas, e.g. eng")
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	o.Groups = norm("groups", o.Groups)
	o.Roles = norm("roles", o.Roles)
	if len(o.Description) > maxDescriptionLen || !utf8.ValidString(o.Description) ||
		strings.ContainsFunc(o.Description, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) {
		bad("description", "must be at most 1024 bytes of text without control characters")
	}
	if o.TTL < 0 {
		bad("ttl", "must not be negative (0 means never), e.g. 720h")
	}
	if o.RateLimit != nil {
		if err := o.RateLimit.check(fieldRateLimit); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("apikeys: create: %w: %w", ErrInvalid, errors.Join(errs...))
	}
	return o, nil
}

// printable reports whether s is 1-256 bytes of visible ASCII; spaces are
// allowed inside s when spaces is true, commas only then too.
func printable(s string, spaces bool) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	if spaces && (s[0] == ' ' || s[len(s)-1] == ' ') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == ',':
			if !spaces {
				return false
			}
		case c < 0x21 || c > 0x7e:
			return false
		}
	}
	return true
}

// newRecord builds the record for a new key.
func newRecord(id string, sum [32]byte, o CreateOptions, now time.Time) *Record {
	now = now.UTC().Truncate(time.Millisecond)
	r := &Record{
		ID:          id,
		Owner:       o.Owner,
		Issuer:      o.Issuer,
		Groups:      o.Groups,
		Roles:       o.Roles,
		Description: o.Description,
		CreatedAt:   now,
		Hash:        hexHash(sum),
	}
	if o.TTL > 0 {
		r.ExpiresAt = now.Add(o.TTL).Truncate(time.Millisecond)
	}
	if o.RateLimit != nil {
		rl := *o.RateLimit // records are shared: never alias the caller's value
		r.RateLimit = &rl
	}
	return r
}

// withRevoked returns a copy of r revoked at t (records are immutable).
func (r *Record) withRevoked(t time.Time) *Record {
	c := *r
	c.RevokedAt = t.UTC().Truncate(time.Millisecond)
	return &c
}

// tombstoneExpiry is when a record revoked at t may be deleted: TombstoneTTL
// later, or at its own expiry if that comes first.
func (r *Record) tombstoneExpiry(t time.Time) time.Time {
	end := t.Add(TombstoneTTL)
	if !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(end) {
		return r.ExpiresAt
	}
	return end
}

// Redis HASH field names of a record (see doc.go).
const (
	fieldID          = "id"
	fieldOwner       = "owner"
	fieldIssuer      = "issuer" // only present for a key minted by a JWT caller
	fieldGroups      = "groups"
	fieldRoles       = "roles"
	fieldDescription = "description"
	fieldCreatedAt   = "created_at"
	fieldExpiresAt   = "expires_at"
	fieldRevokedAt   = "revoked_at"
	fieldRateLimit   = "rate_limit" // only present when the key has one
)

// timeLayout is RFC 3339 in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func encodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // a []string always marshals
	return string(b)
}

func decodeList(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	return l, nil
}

// hashFields returns the record as HSET arguments (field, value, ...). The
// rate_limit field is only written for a key that has a limit, so records
// look the same as before per-key limits existed.
func (r *Record) hashFields() []any {
	f := []any{
		fieldID, r.ID,
		fieldOwner, r.Owner,
		fieldGroups, encodeList(r.Groups),
		fieldRoles, encodeList(r.Roles),
		fieldDescription, r.Description,
		fieldCreatedAt, formatTime(r.CreatedAt),
		fieldExpiresAt, formatTime(r.ExpiresAt),
		fieldRevokedAt, formatTime(r.RevokedAt),
	}
	if r.RateLimit != nil {
		b, _ := r.RateLimit.MarshalJSON() // never fails
		f = append(f, fieldRateLimit, string(b))
	}
	if r.Issuer != "" {
		f = append(f, fieldIssuer, r.Issuer)
	}
	return f
}

// decodeHash turns an HGETALL reply into a Record. An empty reply is
// ErrNotFound.
func decodeHash(hash string, m map[string]string) (*Record, error) {
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	r := &Record{
		ID:          m[fieldID],
		Owner:       m[fieldOwner],
		Issuer:      m[fieldIssuer], // absent in records of the CLI namespace and older ones
		Description: m[fieldDescription],
		Hash:        hash,
	}
	var errs []error
	var err error
	if r.Groups, err = decodeList(m[fieldGroups]); err != nil {
		errs = append(errs, fmt.Errorf("groups: %w", err))
	}
	if r.Roles, err = decodeList(m[fieldRoles]); err != nil {
		errs = append(errs, fmt.Errorf("roles: %w", err))
	}
	if r.CreatedAt, err = parseTime(m[fieldCreatedAt]); err != nil {
		errs = append(errs, fmt.Errorf("created_at: %w", err))
	}
	if r.ExpiresAt, err = parseTime(m[fieldExpiresAt]); err != nil {
		errs = append(errs, fmt.Errorf("expires_at: %w", err))
	}
	if r.RevokedAt, err = parseTime(m[fieldRevokedAt]); err != nil {
		errs = append(errs, fmt.Errorf("revoked_at: %w", err))
	}
	if v := m[fieldRateLimit]; v != "" { // absent or empty: no limit of its own
		rl, err := parseRateLimit([]byte(v))
		if err != nil {
			errs = append(errs, err)
		} else {
			r.RateLimit = &rl
		}
	}
	if !ValidID(r.ID) {
		errs = append(errs, errors.New("id: missing or malformed"))
	}
	if r.Owner == "" {
		errs = append(errs, errors.New("owner: missing"))
	}
	if len(errs) > 0 {
		return nil, &corruptError{what: "record " + HashPrefix(hash), err: errors.Join(errs...)}
	}
	return r, nil
}

// validHexHash reports whether s is 64 lower-case hex characters.
func validHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

package apikeys

import "time"

// KeyView is the one JSON form of a key, shared by `extauthz keys
// create|list|show --json` and the key API (/v1/keys), so scripts read both
// the same way. It never holds the secret or the full hash.
//
// id, owner, status, groups, roles, created_at and hash_prefix are always
// present (groups and roles as [] when empty); issuer, description,
// expires_at, revoked_at and rate_limit are left out when the key has none
// (no issuer: the CLI namespace; no expires_at: never expires). Times are
// RFC 3339 in UTC.
type KeyView struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Issuer string `json:"issuer,omitempty"`
	// Status is "active", "revoked" or "expired" when the view was made.
	Status      string    `json:"status"`
	Groups      []string  `json:"groups"`
	Roles       []string  `json:"roles"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// HashPrefix is the first 8 hex characters of the key's SHA-256, as the
	// logs identify a key.
	HashPrefix string `json:"hash_prefix"`
	// RateLimit is the key's own limit, {"requests":10,"per":"1m","burst":0}.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// CreatedKey is the answer to creating a key: its KeyView and the secret
// key, shown this once.
type CreatedKey struct {
	Key string `json:"key"`
	KeyView
}

// View returns the KeyView of r with its status at now.
func (r *Record) View(now time.Time) KeyView {
	v := KeyView{
		ID: r.ID, Owner: r.Owner, Issuer: r.Issuer, Status: r.Status(now),
		Groups: orEmpty(r.Groups), Roles: orEmpty(r.Roles), Description: r.Description,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), RevokedAt: r.RevokedAt.UTC(),
		HashPrefix: HashPrefix(r.Hash),
	}
	if r.RateLimit != nil {
		rl := *r.RateLimit // records are shared: never alias their values
		v.RateLimit = &rl
	}
	return v
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

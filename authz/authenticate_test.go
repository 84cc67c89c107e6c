package authz

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEngine_Authenticate(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name      string
		headers   map[string]string
		wantSub   string
		wantRoles []string
		reason    Reason
	}{
		{"jwt", map[string]string{"authorization": "Bearer " + jwtAlice}, "alice", []string{"developer", "viewer"}, ""},
		{"api key header", map[string]string{"x-api-key": keyCarol}, "carol", []string{"developer", "viewer"}, ""},
		{"no credential", map[string]string{}, "", nil, ReasonNoCredentials},
		{"expired jwt", map[string]string{"authorization": "Bearer " + jwtExpired}, "", nil, ReasonExpiredToken},
		{"revoked key", map[string]string{"authorization": "Bearer " + keyRevoked}, "", nil, ReasonRevokedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, reason := e.Authenticate(context.Background(), tt.headers)
			if reason != tt.reason {
				t.Fatalf("reason = %q, want %q", reason, tt.reason)
			}
			if tt.reason != "" {
				if id != nil {
					t.Errorf("identity %+v with a refusal", id)
				}
				return
			}
			if id.Subject != tt.wantSub || !cmp.Equal(id.Roles, tt.wantRoles) {
				t.Errorf("identity %s %v, want %s %v", id.Subject, id.Roles, tt.wantSub, tt.wantRoles)
			}
		})
	}
}

func TestEngine_AuthenticateJWT(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name   string
		token  string
		reason Reason
	}{
		{"jwt", jwtAlice, ""},
		{"api key refused", keyCarol, ReasonInvalidToken},
		{"not a jwt", "opaque-token", ReasonMalformedToken},
		{"expired", jwtExpired, ReasonExpiredToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _, reason := e.AuthenticateJWT(context.Background(), tt.token)
			if reason != tt.reason || (id == nil) != (tt.reason != "") {
				t.Errorf("got %v %q, want reason %q", id, reason, tt.reason)
			}
		})
	}
}

func TestEngine_PermitsAndDenial(t *testing.T) {
	e := newTestEngine(t, nil)
	if !e.Permits([]string{"developer"}, "chat:invoke") || e.Permits([]string{"viewer"}, "chat:invoke") {
		t.Error("Permits does not follow the roles")
	}
	status, headers, body := Denial(ReasonNoCredentials)
	want := []Header{{"content-type", "application/json"}, {"www-authenticate", `Bearer realm="extauthz"`}}
	if status != 401 || !cmp.Equal(headers, want) || string(body) != `{"error":"missing_credentials","message":"a bearer token or API key is required"}` {
		t.Errorf("Denial = %d %v %s", status, headers, body)
	}
	if got := ReasonCode("no_such_reason"); got != Unavailable {
		t.Errorf("ReasonCode(unknown) = %v, want unavailable", got)
	}
}

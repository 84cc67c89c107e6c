package identitytest

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// TestNewVerifier: the Verifier returned already verifies the tokens of
// every IdP it was given, and refuses an IdP it does not trust.
func TestNewVerifier(t *testing.T) {
	a, b, stranger := jwkstest.NewServer(t), jwkstest.NewServer(t), jwkstest.NewServer(t)
	deps := jwks.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: jwks.NewMetrics(prometheus.NewRegistry())}
	v := NewVerifier(t, deps, []jwks.ProviderConfig{Provider("a", a), Provider("b", b)}, a, b)
	tests := []struct {
		name    string
		idp     *jwkstest.Server
		wantErr error
	}{
		{"first IdP", a, nil},
		{"second IdP", b, nil},
		{"untrusted IdP", stranger, jwks.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.idp.Sign(tt.idp.Claims("alice", Audience)))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestNewStore: a store on RedisConfig keeps the keys it creates.
func TestNewStore(t *testing.T) {
	s := NewStore(t, RedisConfig(t), apikeys.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: apikeys.NewMetrics(prometheus.NewRegistry())})
	ctx := context.Background()
	key, rec, err := s.Create(ctx, apikeys.CreateOptions{Owner: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx, key)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if got.ID != rec.ID {
		t.Errorf("Lookup ID = %q, want %q", got.ID, rec.ID)
	}
}

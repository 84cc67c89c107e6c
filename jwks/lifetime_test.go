package jwks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// TestVerifier_RefreshOutlivesConstructionContext: the context given to New
// bounds the construction only. The refresh goroutines belong to the
// Verifier and stop only on Close, so a caller that cancels that context (a
// configuration generation replaced by a reload that reuses the Verifier)
// does not freeze key rotation: a new key is fetched on its first token, a
// removed key stops verifying after the refresh, a rotated HMAC secret is
// picked up, and the Verifier stays Ready.
func TestVerifier_RefreshOutlivesConstructionContext(t *testing.T) {
	// start builds a Verifier for a JWKS server and an HMAC secret file
	// under a context that is cancelled once New returns.
	start := func(t *testing.T) (*Verifier, *jwkstest.Server, string) {
		t.Helper()
		idp := jwkstest.NewServer(t)
		secret := writeSecret(t, filepath.Join(t.TempDir(), "secret"), secretA)
		corp := urlProvider("corp", idp)
		corp.RefreshInterval = minRefresh
		cfg := configWith(corp, hmacProvider(secret, "HS256"))
		cfg.Cache.Disabled = true
		o := testOptions()
		o.unknownKIDPeriod = 10 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		v, err := newVerifier(ctx, cfg, newEnv().deps, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		cancel() // the generation that built the Verifier is gone
		if _, err := v.Verify(context.Background(), idp.Sign(claims(idp))); err != nil {
			t.Fatalf("Verify before the rotation: %v", err)
		}
		return v, idp, secret
	}
	tests := []struct {
		name string
		// rotate changes the keys and returns a check that reports nil
		// once the Verifier follows.
		rotate func(t *testing.T, v *Verifier, idp *jwkstest.Server, secret string) func() error
	}{
		{
			name: "a new key is fetched on its first token",
			rotate: func(t *testing.T, v *Verifier, idp *jwkstest.Server, _ string) func() error {
				idp.Rotate()
				return func() error {
					_, err := v.Verify(context.Background(), idp.Sign(claims(idp)))
					return err
				}
			},
		},
		{
			name: "a removed key stops verifying after the refresh",
			rotate: func(t *testing.T, v *Verifier, idp *jwkstest.Server, _ string) func() error {
				old := idp.Sign(claims(idp))
				idp.Rotate() // the new key is never presented: only the refresh sees it
				return func() error {
					if _, err := v.Verify(context.Background(), old); !errors.Is(err, ErrInvalid) {
						return fmt.Errorf("a token of the removed key: Verify = %v, want ErrInvalid", err)
					}
					return nil
				}
			},
		},
		{
			name: "a rotated hmac secret is picked up",
			rotate: func(t *testing.T, v *Verifier, _ *jwkstest.Server, secret string) func() error {
				writeSecret(t, secret, secretB)
				return func() error {
					_, err := v.Verify(context.Background(), signHMAC(t, jwt.SigningMethodHS256, []byte(secretB), hmacClaims(), ""))
					return err
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, idp, secret := start(t)
			check := tt.rotate(t, v, idp, secret)
			deadline := time.Now().Add(3 * minRefresh)
			for {
				err := check()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the Verifier did not follow the rotation within %s: %v", 3*minRefresh, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !v.Ready() {
				t.Error("Ready() = false while refreshing")
			}
		})
	}
}

// TestVerifier_NotReadyOnceRefreshStops: Ready reports the refresh
// goroutines too, so a Verifier whose keys can no longer change is never
// reported ready.
func TestVerifier_NotReadyOnceRefreshStops(t *testing.T) {
	idp := jwkstest.NewServer(t)
	v, err := newVerifier(context.Background(), configWith(urlProvider("corp", idp)), newEnv().deps, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !v.Ready() {
		t.Fatal("Ready() = false after the first fetch")
	}
	v.Close()
	if v.Ready() {
		t.Error("Ready() = true after Close: key refresh has stopped")
	}
}

package introspect

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/secretfile/secretfiletest"
)

// TestNew_RefusesUnsafeClientSecretFile: the client secret file must be a
// small regular file nobody else can write; the error names the config key.
func TestNew_RefusesUnsafeClientSecretFile(t *testing.T) {
	for _, tt := range secretfiletest.UnsafeFiles(t) {
		t.Run(tt.Name, func(t *testing.T) {
			cfg := Config{Endpoint: "https://idp.test/introspect", ClientID: "extauthz", ClientSecretFile: tt.Path, Timeout: 200 * time.Millisecond}
			_, err := New(context.Background(), cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, tt.Want) {
				t.Fatalf("New = %v, want %v", err, tt.Want)
			}
			if !strings.Contains(err.Error(), "client_secret_file") {
				t.Errorf("error %q does not name client_secret_file", err)
			}
		})
	}
}

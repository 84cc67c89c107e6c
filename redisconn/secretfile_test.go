package redisconn_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/redisconn"
	"github.com/extauthz/extauthz/secretfile/secretfiletest"
)

// TestOptions_RefusesUnsafePasswordFile: the password file must be a small
// regular file nobody else can write; the error names password_file.
func TestOptions_RefusesUnsafePasswordFile(t *testing.T) {
	for _, tt := range secretfiletest.UnsafeFiles(t) {
		t.Run(tt.Name, func(t *testing.T) {
			_, err := redisconn.Options(redisconn.Config{Addrs: []string{"r:1"}, PasswordFile: tt.Path}, redisconn.OptionsOverrides{})
			if !errors.Is(err, tt.Want) {
				t.Fatalf("Options = %v, want %v", err, tt.Want)
			}
			if !strings.HasPrefix(err.Error(), "password_file: ") {
				t.Errorf("error %q does not start with password_file", err)
			}
		})
	}
}

package jwks

import (
	"fmt"
	"strings"
	"testing"
)

// TestConfig_ClaimsToHeadersRefusesReservedNames proves that a claim can
// never be written into a header that controls the connection or the
// message framing, carries a credential, or is trusted by the proxy or the
// upstream for routing, whatever its spelling (case, '_' for '-'), and that
// the error names the key and the fix.
func TestConfig_ClaimsToHeadersRefusesReservedNames(t *testing.T) {
	refused := map[string]string{
		// hop-by-hop and connection-level (RFC 9110 7.6.1)
		"connection":        "hop-by-hop",
		"keep-alive":        "hop-by-hop",
		"proxy-connection":  "hop-by-hop",
		"te":                "hop-by-hop",
		"trailer":           "hop-by-hop",
		"trailers":          "hop-by-hop",
		"transfer-encoding": "hop-by-hop",
		"upgrade":           "hop-by-hop",
		"http2-settings":    "hop-by-hop",
		"expect":            "hop-by-hop",
		// credentials
		"authorization":       "credential",
		"proxy-authorization": "credential",
		"proxy-authenticate":  "credential",
		"cookie":              "credential",
		"set-cookie":          "credential",
		"x-api-key":           "credential",
		// framing and routing
		"host":                  "framing or routing",
		"content-length":        "framing or routing",
		"content-type":          "framing or routing",
		"content-encoding":      "framing or routing",
		"forwarded":             "framing or routing",
		"via":                   "framing or routing",
		"max-forwards":          "framing or routing",
		"x-request-id":          "framing or routing",
		"x-real-ip":             "framing or routing",
		"x-forwarded-for":       "framing or routing",
		"x-forwarded-user":      "framing or routing",
		"x-original-uri":        "framing or routing",
		"x-envoy-original-path": "Envoy",
		"x-extauthz-error":      "extauthz",
		// underscore spellings read as the same header by CGI upstreams
		"x_forwarded_for":     "framing or routing",
		"transfer_encoding":   "hop-by-hop",
		"x_api_key":           "credential",
		"proxy_authorization": "credential",
		// any other underscore spelling
		"x-auth_email": "'_'",
		"x_tenant":     "'_'",
	}
	for header, want := range refused {
		t.Run(header, func(t *testing.T) {
			c := Default()
			p := validProvider()
			p.ClaimsToHeaders = map[string]string{"email": header}
			c.Providers = []ProviderConfig{p}
			err := c.Validate("jwt")
			if err == nil {
				t.Fatalf("claims_to_headers email: %s accepted", header)
			}
			msg := err.Error()
			prefix := fmt.Sprintf(`jwt.providers[0].claims_to_headers["email"]: header %q `, header)
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, want) || !strings.Contains(msg, "choose another name, e.g. x-auth-email") {
				t.Errorf("error = %q, want %q… naming %q and the fix", msg, prefix, want)
			}
		})
	}
	for _, header := range []string{":authority", ":path", "Connection", "X-Forwarded-For", "x-auth email", "x-auth-é", ""} {
		t.Run("not a lower-case token "+header, func(t *testing.T) {
			c := Default()
			p := validProvider()
			p.ClaimsToHeaders = map[string]string{"email": header}
			c.Providers = []ProviderConfig{p}
			if err := c.Validate("jwt"); err == nil || !strings.Contains(err.Error(), `claims_to_headers["email"]`) {
				t.Errorf("claims_to_headers email: %q: error %v, want one naming the key", header, err)
			}
		})
	}
	for _, header := range []string{"x-auth-email", "x-user-email", "x-tenant", "x-forwarded", "x-content-type-options-hint"} {
		t.Run("accepted "+header, func(t *testing.T) {
			c := Default()
			p := validProvider()
			p.ClaimsToHeaders = map[string]string{"email": header}
			c.Providers = []ProviderConfig{p}
			if err := c.Validate("jwt"); err != nil {
				t.Errorf("claims_to_headers email: %s refused: %v", header, err)
			}
		})
	}
}

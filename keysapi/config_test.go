package keysapi_test

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/keysapi"
)

func TestConfig_Validate(t *testing.T) {
	known := func(r string) bool { return r == "agent" }
	tests := []struct {
		name string
		cfg  keysapi.ExchangeConfig
		want string
	}{
		{"valid", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agent": time.Minute}}, ""},
		{"unknown role", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agnet": time.Minute}},
			"api.exchange.ttl_by_role.agnet: unknown role; define it under roles or remove the entry"},
		{"zero ttl", keysapi.ExchangeConfig{DefaultTTL: time.Minute, MaxTTL: time.Hour, TTLByRole: map[string]time.Duration{"agent": 0}},
			"api.exchange.ttl_by_role.agent: must be positive, e.g. 2m"},
		{"default above max", keysapi.ExchangeConfig{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour},
			"api.exchange.default_ttl: must not exceed max_ttl (1h0m0s); lower it or raise max_ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := keysapi.Config{Exchange: tc.cfg}.Validate("api", known)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

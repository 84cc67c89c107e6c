package ratelimit_test

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/ratelimit"
)

// authz turns an API key's own limit into a Limit with a plain conversion
// (apikeys.RateLimit is defined as a Limit, with its own JSON form); this
// checks that no field is lost on the way.
func TestLimit_ConvertsFromAPIKeyRateLimit(t *testing.T) {
	in := apikeys.RateLimit{Requests: 10, Per: time.Minute, Burst: 5}
	got := ratelimit.Limit(in)
	if want := (ratelimit.Limit{Requests: 10, Per: time.Minute, Burst: 5}); got != want {
		t.Errorf("ratelimit.Limit(%+v) = %+v, want %+v", in, got, want)
	}
	if got.String() != "10/1m,burst=5" {
		t.Errorf("String() = %q", got.String())
	}
}

package apikeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

// RateLimit is a key's own rate limit: Requests per Per, with up to Burst at
// once (0 means Requests). It is a ratelimit.Limit, with its fields and
// bounds (requests 1 to 1000000, per 1s to 24h, burst 0 to 1000000), so
// ratelimit.Limit(*rec.RateLimit) converts it; this package stores it and
// checks its range but does not count anything.
//
// Its JSON form, in the rate_limit field of Redis, of the embedded store's
// file and of a KeyView, is {"requests":10,"per":"1m","burst":0}.
type RateLimit ratelimit.Limit

// check reports the range problems of l, each as "<path>.<field>: <rule>",
// or nil.
func (l RateLimit) check(path string) error { return ratelimit.Limit(l).Check(path) }

// rateLimitJSON is the stored form of a RateLimit. Pointers tell a missing
// field from a zero one.
type rateLimitJSON struct {
	Requests *int    `json:"requests"`
	Per      *string `json:"per"`
	Burst    *int    `json:"burst"`
}

// MarshalJSON encodes l as {"requests":10,"per":"1m","burst":0}, with per
// in its shortest Go duration form ("1m", "1h30m", "90s" as "1m30s").
func (l RateLimit) MarshalJSON() ([]byte, error) {
	per := shortDuration(l.Per)
	return json.Marshal(rateLimitJSON{Requests: &l.Requests, Per: &per, Burst: &l.Burst})
}

// UnmarshalJSON decodes the form MarshalJSON writes. requests and per are
// required, burst defaults to 0; unknown fields, other types and values out
// of range are errors.
func (l *RateLimit) UnmarshalJSON(b []byte) error {
	v, err := parseRateLimit(b)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

var errNotAnObject = fmt.Errorf(`%s: must be an object with requests and per, e.g. {"requests":10,"per":"1m","burst":0}`, fieldRateLimit)

// parseRateLimit decodes one stored rate_limit value strictly. Its errors
// start with "rate_limit".
func parseRateLimit(b []byte) (RateLimit, error) {
	var j rateLimitJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case !errors.As(err, &te):
			return RateLimit{}, fmt.Errorf("%s: %w", fieldRateLimit, err)
		case te.Field == "per":
			return RateLimit{}, fmt.Errorf(`%s.per: must be a duration string such as "1m"`, fieldRateLimit)
		case te.Field != "":
			return RateLimit{}, fmt.Errorf("%s.%s: must be a whole number", fieldRateLimit, te.Field)
		}
		return RateLimit{}, errNotAnObject
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return RateLimit{}, fmt.Errorf("%s: data after the object", fieldRateLimit)
	}
	if j.Requests == nil || j.Per == nil {
		return RateLimit{}, errNotAnObject
	}
	l := RateLimit{Requests: *j.Requests}
	if j.Burst != nil {
		l.Burst = *j.Burst
	}
	var err error
	if l.Per, err = time.ParseDuration(*j.Per); err != nil {
		return RateLimit{}, fmt.Errorf("%s.per: %q is not a duration such as 1m", fieldRateLimit, *j.Per)
	}
	if err := l.check(fieldRateLimit); err != nil {
		return RateLimit{}, err
	}
	return l, nil
}

// shortDuration formats d without the zero units time.Duration.String
// appends: "1m" rather than "1m0s", "2h" rather than "2h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

package ratelimit_test

import (
	"testing"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/ratelimit"
)

// The config package fills rate_limits.redis from api_keys.redis with a plain
// conversion; this breaks the build if the two schemas drift apart.
func TestRedisConfig_ConvertsFromAPIKeys(t *testing.T) {
	in := apikeys.RedisConfig{Addrs: []string{"redis:6379"}, MasterName: "m", DB: 2, TLS: true, PoolSize: 7}
	out := ratelimit.RedisConfig(in)
	if out.Addrs[0] != "redis:6379" || out.MasterName != "m" || out.DB != 2 || !out.TLS || out.PoolSize != 7 {
		t.Errorf("converted %+v", out)
	}
}

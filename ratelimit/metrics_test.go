package ratelimit

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics_StartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"chat"})
	m.AddRoutes([]string{"chat", "embed"}) // a reload adds embed, keeps chat
	m.count("unknown", resLimited)
	m.count("", resAllowed)
	problems, err := testutil.CollectAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	want := `
# HELP extauthz_ratelimit_decisions_total Rate-limit decisions by route and result (allowed, limited, error_allowed and error_denied when Redis failed and on_error decided).
# TYPE extauthz_ratelimit_decisions_total counter
extauthz_ratelimit_decisions_total{result="allowed",route="chat"} 0
extauthz_ratelimit_decisions_total{result="allowed",route="default_route"} 1
extauthz_ratelimit_decisions_total{result="allowed",route="embed"} 0
extauthz_ratelimit_decisions_total{result="allowed",route="other"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="chat"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="embed"} 0
extauthz_ratelimit_decisions_total{result="error_allowed",route="other"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="chat"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="embed"} 0
extauthz_ratelimit_decisions_total{result="error_denied",route="other"} 0
extauthz_ratelimit_decisions_total{result="limited",route="chat"} 0
extauthz_ratelimit_decisions_total{result="limited",route="default_route"} 0
extauthz_ratelimit_decisions_total{result="limited",route="embed"} 0
extauthz_ratelimit_decisions_total{result="limited",route="other"} 1
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

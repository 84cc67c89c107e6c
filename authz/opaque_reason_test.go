package authz

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/extauthz/extauthz/introspect"
)

// TestOpaqueReason maps every introspect error to a reason whose code
// denies: refusals of the flood bounds are 503 with their own reason, never
// an allow and never a check_timeout in disguise.
func TestOpaqueReason(t *testing.T) {
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		err      error
		want     Reason
		wantCode Code
	}{
		{"inactive", context.Background(), fmt.Errorf("%w: x", introspect.ErrInactive), ReasonInactiveToken, InvalidToken},
		{"rate_limited", context.Background(), fmt.Errorf("%w: %w", introspect.ErrUnavailable, introspect.ErrRateLimited), ReasonIntrospectionRateLimited, Unavailable},
		{"busy_within_deadline", context.Background(), fmt.Errorf("%w: %w", introspect.ErrUnavailable, introspect.ErrBusy), ReasonIntrospectionBusy, Unavailable},
		{"busy_at_deadline", expired, fmt.Errorf("%w: %w: %w", introspect.ErrUnavailable, introspect.ErrBusy, context.Canceled), ReasonIntrospectionBusy, Unavailable},
		{"deadline", expired, fmt.Errorf("%w: %w", introspect.ErrUnavailable, context.Canceled), ReasonCheckTimeout, Unavailable},
		{"unavailable", context.Background(), introspect.ErrUnavailable, ReasonIntrospectionUnavailable, Unavailable},
		{"unknown", context.Background(), errors.New("boom"), ReasonInternalError, Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := opaqueReason(tt.ctx, tt.err)
			if got != tt.want {
				t.Errorf("opaqueReason = %s, want %s", got, tt.want)
			}
			if c, ok := reasonCodes[got]; !ok || c != tt.wantCode {
				t.Errorf("reasonCodes[%s] = %v (%v), want %v", got, c, ok, tt.wantCode)
			}
			if m := refused(MethodOpaque, got).method; got != ReasonInternalError && got != ReasonCheckTimeout && m != MethodOpaque {
				t.Errorf("method of refused opaque token (%s) = %v, want opaque", got, m)
			}
		})
	}
}

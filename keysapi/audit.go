package keysapi

import (
	"context"
	"log/slog"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// audit logs and counts one key lifecycle event. It never logs the key.
func (h *Handler) audit(ctx context.Context, event string, rec *apikeys.Record, actor *authz.Identity) {
	h.deps.Metrics.count(event)
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("key_id", rec.ID),
		slog.String("owner", rec.Owner),
		slog.String("owner_issuer", rec.Issuer),
		slog.String("actor", actor.Subject),
		slog.String("actor_issuer", actor.Issuer),
		slog.String("actor_method", actor.Method.String()),
		slog.Any("roles", nonNil(rec.Roles)),
	}
	if actor.KeyID != "" {
		attrs = append(attrs, slog.String("actor_key_id", actor.KeyID))
	}
	if !rec.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time("expires_at", rec.ExpiresAt.UTC()))
	}
	h.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "apikey "+event, attrs...)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

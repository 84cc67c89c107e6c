package keysapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
)

// storeError answers a store failure: 404 for an unknown id, 400 for
// refused options, else 503 (logged at Warn).
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, apikeys.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, apikeys.ErrTooManyKeys):
		writeError(w, http.StatusConflict, "too_many_keys", "the owner has the most live keys allowed (api.max_keys_per_owner): revoke one or wait for one to expire")
	case errors.Is(err, apikeys.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "apikeys: create: "))
	default:
		h.deps.Logger.LogAttrs(r.Context(), slog.LevelWarn, "key api: store failed", slog.String("op", op), slog.String("err", err.Error()))
		w.Header().Set("retry-after", authz.RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the key store is temporarily unavailable")
	}
}

// decodeJSON strictly decodes one JSON object from the body, answering 400,
// 413 or 415 itself when it cannot.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("content-type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "the body must be application/json")
			return false
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("trailing data after the object")
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is larger than 64 KiB")
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
}

// oauthError writes an RFC 6749 section 5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("pragma", "no-cache")
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
}

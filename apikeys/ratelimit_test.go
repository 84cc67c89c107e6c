package apikeys

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

func TestRateLimit_JSON(t *testing.T) {
	encodes := []struct {
		name string
		in   RateLimit
		want string
	}{
		{"minute", RateLimit{Requests: 10, Per: time.Minute}, `{"requests":10,"per":"1m","burst":0}`},
		{"hour with burst", RateLimit{Requests: 600, Per: time.Hour, Burst: 20}, `{"requests":600,"per":"1h","burst":20}`},
		{"mixed units", RateLimit{Requests: 5, Per: 90 * time.Second}, `{"requests":5,"per":"1m30s","burst":0}`},
		{"hours and minutes", RateLimit{Requests: 1, Per: 90 * time.Minute}, `{"requests":1,"per":"1h30m","burst":0}`},
		{"seconds", RateLimit{Requests: 1_000_000, Per: time.Second, Burst: 1_000_000}, `{"requests":1000000,"per":"1s","burst":1000000}`},
		{"day", RateLimit{Requests: 1, Per: 24 * time.Hour, Burst: 1}, `{"requests":1,"per":"24h","burst":1}`},
	}
	for _, tt := range encodes {
		t.Run("encode "+tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.in)
			if err != nil || string(b) != tt.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tt.want)
			}
			var back RateLimit
			if err := json.Unmarshal(b, &back); err != nil || back != tt.in {
				t.Errorf("round trip = %+v, %v; want %+v", back, err, tt.in)
			}
		})
	}

	decodes := []struct {
		name string
		in   string
		want RateLimit
		err  string // a substring of the error; "" means valid
	}{
		{"burst may be left out", `{"requests":10,"per":"1m"}`, RateLimit{Requests: 10, Per: time.Minute}, ""},
		{"any duration form", ` {"per":"60s","requests":10,"burst":3} `, RateLimit{Requests: 10, Per: time.Minute, Burst: 3}, ""},
		{"not json", `{requests:10}`, RateLimit{}, "rate_limit: invalid character"},
		{"the CLI form", `10/1m`, RateLimit{}, "rate_limit: must be an object with requests and per"},
		{"an array", `[10,"1m"]`, RateLimit{}, "rate_limit: must be an object with requests and per"},
		{"null", `null`, RateLimit{}, "rate_limit: must be an object with requests and per"},
		{"empty object", `{}`, RateLimit{}, "rate_limit: must be an object with requests and per"},
		{"missing per", `{"requests":10}`, RateLimit{}, "must be an object with requests and per"},
		{"per as a number", `{"requests":10,"per":60000000000}`, RateLimit{}, `rate_limit.per: must be a duration string such as "1m"`},
		{"per not a duration", `{"requests":10,"per":"a minute"}`, RateLimit{}, `rate_limit.per: "a minute" is not a duration such as 1m`},
		{"requests as a string", `{"requests":"10","per":"1m"}`, RateLimit{}, "rate_limit.requests: must be a whole number"},
		{"requests fractional", `{"requests":1.5,"per":"1m"}`, RateLimit{}, "rate_limit.requests: must be a whole number"},
		{"burst too large for int", `{"requests":1,"per":"1m","burst":1e30}`, RateLimit{}, "rate_limit.burst: must be a whole number"},
		{"unknown field", `{"requests":10,"per":"1m","window":"1m"}`, RateLimit{}, `unknown field "window"`},
		{"data after the object", `{"requests":10,"per":"1m"}{}`, RateLimit{}, "rate_limit: data after the object"},
		{"zero requests", `{"requests":0,"per":"1m"}`, RateLimit{}, "rate_limit.requests: 0 must be between 1 and 1000000, e.g. 60"},
		{"too many requests", `{"requests":1000001,"per":"1m"}`, RateLimit{}, "rate_limit.requests: 1000001 must be between 1 and 1000000"},
		{"period too short", `{"requests":10,"per":"500ms"}`, RateLimit{}, "rate_limit.per: 500ms must be between 1s and 24h, e.g. 1m"},
		{"period too long", `{"requests":10,"per":"25h"}`, RateLimit{}, "rate_limit.per: 25h0m0s must be between 1s and 24h"},
		{"negative burst", `{"requests":10,"per":"1m","burst":-1}`, RateLimit{}, "rate_limit.burst: -1 must be between 0 (same as requests) and 1000000, e.g. 10"},
	}
	for _, tt := range decodes {
		t.Run("decode "+tt.name, func(t *testing.T) {
			got, err := parseRateLimit([]byte(tt.in))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("parseRateLimit(%s) = %v", tt.in, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("parseRateLimit(%s) = %+v, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("parseRateLimit(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCreateOptions_RateLimitRange(t *testing.T) {
	tests := []struct {
		name string
		rl   RateLimit
		want []string // the problems; nil means valid
	}{
		{"smallest", RateLimit{Requests: 1, Per: time.Second}, nil},
		{"largest", RateLimit{Requests: 1_000_000, Per: 24 * time.Hour, Burst: 1_000_000}, nil},
		{"zero", RateLimit{}, []string{
			"rate_limit.requests: 0 must be between 1 and 1000000, e.g. 60",
			"rate_limit.per: 0s must be between 1s and 24h, e.g. 1m",
		}},
		{"everything out of range", RateLimit{Requests: 1_000_001, Per: 24*time.Hour + time.Second, Burst: 1_000_001}, []string{
			"rate_limit.requests: 1000001 must be between 1 and 1000000, e.g. 60",
			"rate_limit.per: 24h0m1s must be between 1s and 24h, e.g. 1m",
			"rate_limit.burst: 1000001 must be between 0 (same as requests) and 1000000, e.g. 10",
		}},
		{"negative", RateLimit{Requests: -1, Per: -time.Minute, Burst: -1}, []string{
			"rate_limit.requests: -1 must be between 1 and 1000000, e.g. 60",
			"rate_limit.per: -1m0s must be between 1s and 24h, e.g. 1m",
			"rate_limit.burst: -1 must be between 0 (same as requests) and 1000000, e.g. 10",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := tt.rl
			_, err := CreateOptions{Owner: "alice", RateLimit: &rl}.validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want ErrInvalid", err)
			}
			got := strings.Split(strings.TrimPrefix(err.Error(), "apikeys: create: invalid argument: "), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// A key's own limit is stored with it, read back by every replica, and is
// nil for keys without one.
func TestStore_RateLimitRoundTrip(t *testing.T) {
	embeddedFile := func(t *testing.T) Config {
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		return cfg
	}
	tests := []struct {
		name string
		cfg  func(t *testing.T) Config
	}{
		{"redis", func(t *testing.T) Config { return redisConfig(apikeystest.StartRedis(t)) }},
		{"redis cluster", func(t *testing.T) Config { return redisConfig(apikeystest.StartCluster(t)...) }},
		{"embedded file", embeddedFile},
		{"embedded in memory", func(*testing.T) Config { return Default() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			s, other := newStore(t, cfg), newStore(t, cfg)
			if cfg.Redis == nil && cfg.File == "" {
				other = s // nothing is shared between processes
			}
			ctx := context.Background()
			rl := &RateLimit{Requests: 10, Per: time.Minute, Burst: 5}
			key, rec, err := s.Create(ctx, CreateOptions{Owner: "ci-bot", RateLimit: rl})
			if err != nil {
				t.Fatal(err)
			}
			rl.Requests = 99 // the record does not share the caller's value
			want := &RateLimit{Requests: 10, Per: time.Minute, Burst: 5}
			if diff := cmp.Diff(want, rec.RateLimit); diff != "" {
				t.Errorf("created record's limit (-want +got):\n%s", diff)
			}
			plainKey, plain, err := s.Create(ctx, CreateOptions{Owner: "ci-bot"})
			if err != nil {
				t.Fatal(err)
			}
			if plain.RateLimit != nil {
				t.Errorf("key without a limit has %+v", plain.RateLimit)
			}

			got, err := other.Lookup(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rec, got); diff != "" {
				t.Errorf("Lookup on another replica (-want +got):\n%s", diff)
			}
			if got, err := other.Lookup(ctx, plainKey); err != nil || got.RateLimit != nil {
				t.Errorf("Lookup of the key without a limit = %+v, %v", got, err)
			}
			if got, err := other.Get(ctx, rec.ID); err != nil || !cmp.Equal(rec, got) {
				t.Errorf("Get = %+v, %v; want %+v", got, err, rec)
			}
			// Both keys may share a created_at millisecond, so find them by id
			// rather than by position.
			list, err := other.List(ctx, "ci-bot")
			if err != nil || len(list) != 2 {
				t.Fatalf("List = %+v, %v; want 2 records", list, err)
			}
			for _, r := range list {
				if r.ID == rec.ID && !cmp.Equal(want, r.RateLimit) || r.ID != rec.ID && r.RateLimit != nil {
					t.Errorf("List record %s has rate limit %+v", r.ID, r.RateLimit)
				}
			}
			// Revocation keeps the limit on the tombstone.
			if err := s.Revoke(ctx, rec.ID); err != nil {
				t.Fatal(err)
			}
			if got, err := other.Get(ctx, rec.ID); err != nil || !cmp.Equal(want, got.RateLimit) {
				t.Errorf("Get after revoke = %+v, %v", got, err)
			}
		})
	}
}

func TestStore_RateLimitStoredForm(t *testing.T) {
	ctx := context.Background()
	rl := &RateLimit{Requests: 10, Per: time.Minute}
	t.Run("redis", func(t *testing.T) {
		srv := apikeystest.StartServer(t)
		s := newStore(t, redisConfig(srv.URL()))
		_, rec, err := s.Create(ctx, CreateOptions{Owner: "alice", RateLimit: rl})
		if err != nil {
			t.Fatal(err)
		}
		got, err := srv.Client(t).HGet(ctx, recordKeyPfx+rec.Hash, "rate_limit").Result()
		if want := `{"requests":10,"per":"1m","burst":0}`; err != nil || got != want {
			t.Errorf("HGET rate_limit = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("embedded file", func(t *testing.T) {
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		if _, _, err := newStore(t, cfg).Create(ctx, CreateOptions{Owner: "alice", RateLimit: rl}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(cfg.File)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Keys []struct {
				RateLimit json.RawMessage `json:"rate_limit"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(data, &f); err != nil || len(f.Keys) != 1 {
			t.Fatalf("keys file: %v\n%s", err, data)
		}
		var v map[string]any
		if err := json.Unmarshal(f.Keys[0].RateLimit, &v); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]any{"requests": 10.0, "per": "1m", "burst": 0.0}, v); diff != "" {
			t.Errorf("file's rate_limit (-want +got):\n%s", diff)
		}
	})
}

// writeOldRecord stores a key the way a version without per-key limits did
// (no rate_limit field), plus extra fields, and returns the secret.
func writeOldRecord(t *testing.T, srv *apikeystest.Server, id string, extra ...string) string {
	t.Helper()
	key := mustKey(t, "ek")
	h := hexHash(hashKey(key))
	rdb := srv.Client(t)
	ctx := context.Background()
	fields := append([]string{
		"id", id, "owner", "old-timer", "groups", `["eng"]`, "roles", "[]", "description", "",
		"created_at", "2025-01-01T00:00:00.000Z", "expires_at", "", "revoked_at", "",
	}, extra...)
	if err := rdb.HSet(ctx, recordKeyPfx+h, fields).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, idKeyPfx+id, h, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, idsKey, id, "old-timer").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.SAdd(ctx, ownerKeyPfx+"old-timer", id).Err(); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestStore_RecordWithoutRateLimit(t *testing.T) {
	ctx := context.Background()
	t.Run("redis", func(t *testing.T) {
		srv := apikeystest.StartServer(t)
		s := newStore(t, redisConfig(srv.URL()))
		for _, tt := range []struct{ name, id string }{
			{"field absent", "key_o1d000000000"},
			{"field empty", "key_o1d000000001"},
		} {
			var extra []string
			if tt.name == "field empty" {
				extra = []string{"rate_limit", ""}
			}
			key := writeOldRecord(t, srv, tt.id, extra...)
			rec, err := s.Lookup(ctx, key)
			if err != nil || rec.Owner != "old-timer" || rec.RateLimit != nil {
				t.Errorf("%s: Lookup = %+v, %v; want the key without a limit", tt.name, rec, err)
			}
			if rec, err := s.Get(ctx, tt.id); err != nil || rec.RateLimit != nil {
				t.Errorf("%s: Get = %+v, %v", tt.name, rec, err)
			}
		}
		if l, err := s.List(ctx, "old-timer"); err != nil || len(l) != 2 {
			t.Errorf("List = %v, %v", l, err)
		}
	})
	t.Run("embedded file", func(t *testing.T) {
		key := mustKey(t, "ek")
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		old := `{"version":1,"keys":[{"id":"key_o1d000000000","hash":"` + hexHash(hashKey(key)) +
			`","owner":"old-timer","created_at":"2025-01-01T00:00:00Z"}]}`
		if err := os.WriteFile(cfg.File, []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := newStore(t, cfg).Lookup(ctx, key)
		if err != nil || rec.Owner != "old-timer" || rec.RateLimit != nil {
			t.Errorf("Lookup = %+v, %v; want the key without a limit", rec, err)
		}
	})
}

// logRecorder is a slog.Handler that keeps what it is given.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message k=v ..."
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) find(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

// A rate_limit that cannot be decoded refuses the key (fail closed): not
// found for the client, a Warn line and the corrupt result for the operator,
// and never an outage or an allow without the limit.
func TestStore_CorruptRateLimitRefused(t *testing.T) {
	srv := apikeystest.StartServer(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	admin := newStore(t, redisConfig(srv.URL()))
	key, rec, err := admin.Create(ctx, CreateOptions{Owner: "alice", RateLimit: &RateLimit{Requests: 10, Per: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	values := []struct {
		name, value, field string
	}{
		{"the CLI form instead of JSON", "10/1m", "rate_limit: must be an object"},
		{"not JSON", "{requests:10}", "invalid character"},
		{"null", "null", "must be an object"},
		{"out of range", `{"requests":0,"per":"1m"}`, "rate_limit.requests: 0 must be between"},
		{"unknown field", `{"requests":10,"per":"1m","unit":"s"}`, `unknown field "unit"`},
		{"per in nanoseconds", `{"requests":10,"per":60000000000}`, "rate_limit.per: must be a duration string"},
	}
	for _, tt := range values {
		t.Run(tt.name, func(t *testing.T) {
			if err := rdb.HSet(ctx, recordKeyPfx+rec.Hash, fieldRateLimit, tt.value).Err(); err != nil {
				t.Fatal(err)
			}
			logs := &logRecorder{}
			m := NewMetrics(nil)
			s := newStoreWith(t, redisConfig(srv.URL()), Deps{Logger: slog.New(logs), Metrics: m})
			waitLive(t, s)
			for i := range 2 { // from Redis, then from the negative cache
				got, err := s.Lookup(ctx, key)
				if got != nil || !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("Lookup %d = %+v, %v; want an error matching ErrCorrupt and ErrNotFound, not ErrUnavailable", i, got, err)
				}
				if !strings.Contains(err.Error(), tt.field) || !strings.Contains(err.Error(), HashPrefix(rec.Hash)) {
					t.Errorf("Lookup error %q does not name the record and the problem %q", err, tt.field)
				}
			}
			warns := logs.find("api key record is corrupt")
			if len(warns) != 1 || !strings.HasPrefix(warns[0], "WARN ") || !strings.Contains(warns[0], "key_hash="+HashPrefix(rec.Hash)) {
				t.Errorf("logged %q, want one Warn line naming key_hash=%s", warns, HashPrefix(rec.Hash))
			}
			for _, l := range logs.find("") {
				if strings.Contains(l, key) || strings.Contains(l, rec.Hash) {
					t.Errorf("log line shows the key or its full hash: %s", l)
				}
			}
			if r, c := m.lookups[srcRedis][resCorrupt], m.lookups[srcCache][resCorrupt]; testutil.ToFloat64(r) != 1 || testutil.ToFloat64(c) != 1 {
				t.Errorf("corrupt lookups: redis %v, cache %v; want 1 and 1", testutil.ToFloat64(r), testutil.ToFloat64(c))
			}

			if _, err := s.Get(ctx, rec.ID); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get = %v, want ErrCorrupt", err)
			}
			if _, err := s.List(ctx, ""); !errors.Is(err, ErrCorrupt) {
				t.Errorf("List = %v, want ErrCorrupt", err)
			}
			// The list did not drop the key from the indexes as if it were gone.
			if o, err := rdb.HGet(ctx, idsKey, rec.ID).Result(); err != nil || o != "alice" {
				t.Errorf("ids index after List = %q, %v", o, err)
			}
		})
	}

	// Fixing the field (and flushing the caches) makes the key work again.
	if err := rdb.HSet(ctx, recordKeyPfx+rec.Hash, fieldRateLimit, `{"requests":20,"per":"1m"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, EventsChannel, flushAllEvent).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, func() error {
		got, err := admin.Lookup(ctx, key)
		if err != nil {
			return err
		}
		if got.RateLimit == nil || got.RateLimit.Requests != 20 {
			return errors.New("old limit still served")
		}
		return nil
	})
}

func TestStore_EmbeddedFileCorruptRateLimit(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t, "ek")
	file := func(rateLimit string) string {
		return `{"version":1,"keys":[{"id":"key_f11e00000000","hash":"` + hexHash(hashKey(key)) +
			`","owner":"alice","created_at":"2025-01-01T00:00:00Z","rate_limit":` + rateLimit + `}]}`
	}
	bad := []struct{ name, value, msg string }{
		{"string instead of object", `"10/1m"`, "keys[0].rate_limit: must be an object with requests and per"},
		{"out of range", `{"requests":10,"per":"48h"}`, "keys[0].rate_limit.per: 48h0m0s must be between 1s and 24h"},
		{"unknown field", `{"requests":10,"per":"1m","x":1}`, `keys[0].rate_limit: json: unknown field "x"`},
		{"null", `null`, "keys[0].rate_limit: must be an object with requests and per"},
	}
	for _, tt := range bad {
		t.Run("refused at startup: "+tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.File = filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(cfg.File, []byte(file(tt.value)), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := New(ctx, cfg, Deps{})
			if err == nil {
				s.Close()
				t.Fatal("New accepted a keys file with a broken rate_limit")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("New = %v, want it to contain %q", err, tt.msg)
			}
		})
	}

	t.Run("broken on reload: the loaded limit stays in force", func(t *testing.T) {
		cfg := Default()
		cfg.File = filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(cfg.File, []byte(file(`{"requests":10,"per":"1m"}`)), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &logRecorder{}
		s := newStoreWith(t, cfg, Deps{Logger: slog.New(logs)})
		if rec, err := s.Lookup(ctx, key); err != nil || rec.RateLimit == nil || rec.RateLimit.Requests != 10 {
			t.Fatalf("Lookup = %+v, %v", rec, err)
		}
		later := time.Now().Add(time.Second) // a different modification time
		if err := os.WriteFile(cfg.File, []byte(file(`"none"`)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(cfg.File, later, later); err != nil {
			t.Fatal(err)
		}
		eventually(t, 3*filePollInterval, func() error {
			if len(logs.find("cannot reload api keys file")) == 0 {
				return errors.New("no warning about the broken file")
			}
			return nil
		})
		if rec, err := s.Lookup(ctx, key); err != nil || rec.RateLimit == nil || rec.RateLimit.Requests != 10 {
			t.Errorf("Lookup after a broken reload = %+v, %v; want the loaded key with its limit", rec, err)
		}
	})
}

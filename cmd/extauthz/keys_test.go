package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/keysapi"
)

// keysConfig writes a minimal valid configuration whose api_keys section is
// apiKeys (YAML, indented two spaces) and returns its path.
func keysConfig(t *testing.T, apiKeys string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	body := `listen:
  grpc: 127.0.0.1:9001
roles:
  viewer: [models:list]
  developer: [models:list, chat:invoke]
role_mapping:
  default_roles: [viewer]
routes:
  - name: models
    match: {path_prefix: /v1/models}
    require: {any_role: [viewer]}
api_keys:
` + apiKeys
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keysRun runs `extauthz keys args...` and returns its exit code and output.
func keysRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = runKeys(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// keysJSON runs a --json command that must succeed and decodes its output.
func keysJSON[T any](t *testing.T, args ...string) T {
	t.Helper()
	code, out, errOut := keysRun(t, args...)
	if code != 0 {
		t.Fatalf("keys %v: exit %d\n%s", args, code, errOut)
	}
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("keys %v: output is not JSON: %v\n%s", args, err, out)
	}
	return v
}

// testKeysCommands runs the create, list, show and revoke commands against
// the store of cfg, checking with lookup (a server's view of the same store)
// that they take effect.
func testKeysCommands(t *testing.T, cfg string, lookup func(key string) error) {
	created := keysJSON[apikeys.CreatedKey](t, "create", "--config", cfg, "--owner", "alice@example.com",
		"--groups", "eng,ml-team", "--groups", "extra", "--roles", "developer", "--ttl", "720h",
		"--description", "CI runner", "--json")
	if !apikeys.ValidID(created.ID) || created.Key == "" || created.Status != "active" {
		t.Fatalf("create --json = %+v", created)
	}
	if err := apikeys.CheckFormat("ek", created.Key); err != nil {
		t.Errorf("created key is malformed: %v", err)
	}
	if d := created.ExpiresAt.Sub(created.CreatedAt); d != 720*time.Hour {
		t.Errorf("--ttl 720h gives a lifetime of %v", d)
	}
	if err := lookup(created.Key); err != nil {
		t.Fatalf("created key does not work: %v", err)
	}

	// Human output shows the secret once and says so.
	code, out, errOut := keysRun(t, "create", "--owner", "bob", "--config", cfg)
	if code != 0 {
		t.Fatalf("create: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, "shown only this once") || !strings.Contains(out, "\n  ek_") {
		t.Errorf("create output does not show the key once with a warning:\n%s", out)
	}

	want := created.KeyView
	// show, with the flag before and after the id.
	for _, args := range [][]string{
		{"show", "--config", cfg, created.ID, "--json"},
		{"show", "--json", "--config", cfg, created.ID},
		{"show", created.ID, "--config", cfg, "--json"},
	} {
		got := keysJSON[apikeys.KeyView](t, args...)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", args, diff)
		}
	}
	code, out, _ = keysRun(t, "show", created.ID, "--config", cfg)
	if code != 0 || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, created.HashPrefix+"…") {
		t.Errorf("show: exit %d\n%s", code, out)
	}

	list := keysJSON[[]apikeys.KeyView](t, "list", "--config", cfg, "--json")
	if len(list) != 2 || list[0].ID != created.ID || list[1].Owner != "bob" {
		t.Errorf("list --json = %+v, want alice's then bob's key", list)
	}
	mine := keysJSON[[]apikeys.KeyView](t, "list", "--owner", "alice@example.com", "--config", cfg, "--json")
	if len(mine) != 1 || mine[0].ID != created.ID {
		t.Errorf("list --owner = %+v", mine)
	}
	code, out, _ = keysRun(t, "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, created.ID) || !strings.Contains(out, "eng,extra,ml-team") {
		t.Errorf("list: exit %d\n%s", code, out)
	}

	code, out, errOut = keysRun(t, "revoke", created.ID, "--config", cfg)
	if code != 0 || !strings.Contains(out, "Revoked key "+created.ID) {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
	}
	deadline := time.Now().Add(3 * time.Second)
	for err := lookup(created.Key); !errors.Is(err, apikeys.ErrRevoked); err = lookup(created.Key) {
		if time.Now().After(deadline) {
			t.Fatalf("revoked key still answers %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, _ = keysRun(t, "revoke", "--config", cfg, created.ID)
	if code != 0 || !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke: exit %d\n%s", code, out)
	}
	if got := keysJSON[apikeys.KeyView](t, "show", created.ID, "--config", cfg, "--json"); got.Status != "revoked" || got.RevokedAt.IsZero() {
		t.Errorf("show after revoke = %+v", got)
	}

	// list and show never print a secret, nor a full hash.
	for _, args := range [][]string{
		{"list", "--config", cfg}, {"list", "--config", cfg, "--json"},
		{"show", created.ID, "--config", cfg}, {"show", created.ID, "--config", cfg, "--json"},
	} {
		_, out, _ := keysRun(t, args...)
		if strings.Contains(out, created.Key[3:13]) || strings.Contains(out, "ek_") {
			t.Errorf("%v prints a key:\n%s", args, out)
		}
		for _, f := range strings.FieldsFunc(out, func(r rune) bool { return !strings.ContainsRune("0123456789abcdef", r) }) {
			if len(f) > 16 {
				t.Errorf("%v prints a long hex string %q", args, f)
			}
		}
	}

	errTests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", nil, 2, "Usage"},
		{"unknown subcommand", []string{"rotate"}, 2, `unknown command "rotate"`},
		{"missing config", []string{"list"}, 2, "--config is required"},
		{"missing owner", []string{"create", "--config", cfg}, 2, "--owner is required"},
		{"unknown flag", []string{"list", "--config", cfg, "--bogus"}, 2, "bogus"},
		{"bad ttl", []string{"create", "--config", cfg, "--owner", "a", "--ttl", "30d"}, 2, "ttl"},
		{"negative ttl", []string{"create", "--config", cfg, "--owner", "a", "--ttl", "-1h"}, 2, "--ttl must not be negative"},
		{"undefined role", []string{"create", "--config", cfg, "--owner", "a", "--roles", "admn"}, 2, "admn not defined under roles"},
		{"invalid owner", []string{"create", "--config", cfg, "--owner", "a\nb"}, 2, "owner: must be"},
		{"show without id", []string{"show", "--config", cfg}, 2, "missing key ID"},
		{"show two ids", []string{"show", "--config", cfg, "key_aaaaaaaaaaaa", "key_bbbbbbbbbbbb"}, 2, "expected one key ID"},
		{"list with id", []string{"list", "--config", cfg, "key_aaaaaaaaaaaa"}, 2, "unexpected argument"},
		{"show unknown id", []string{"show", "--config", cfg, "key_aaaaaaaaaaaa"}, 1, `no key with id "key_aaaaaaaaaaaa"`},
		{"revoke unknown id", []string{"revoke", "key_aaaaaaaaaaaa", "--config", cfg}, 1, "no key with id"},
		{"missing config file", []string{"list", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "no such file"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := keysRun(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errOut, tt.code, tt.msg)
			}
		})
	}
	if l := keysJSON[[]apikeys.KeyView](t, "list", "--owner", "a", "--config", cfg, "--json"); len(l) != 0 {
		t.Errorf("refused creates left keys: %+v", l)
	}
}

// openTestStore opens the key store of a config the way a server would.
func openTestStore(t *testing.T, c apikeys.Config) *apikeys.Store {
	t.Helper()
	s, err := apikeys.New(context.Background(), c, apikeys.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// redisKeys starts a Redis and returns a configuration whose key store it
// is, with a server's store on it.
func redisKeys(t *testing.T) (cfg string, server *apikeys.Store) {
	t.Helper()
	url := apikeystest.StartRedis(t)
	c := apikeys.Default()
	c.Redis = &apikeys.RedisConfig{Addrs: []string{url}, Timeout: time.Second}
	return keysConfig(t, "  redis:\n    addrs: ["+url+"]\n    timeout: 1s\n"), openTestStore(t, c)
}

func TestRunKeys_Redis(t *testing.T) {
	cfg, server := redisKeys(t)
	testKeysCommands(t, cfg, func(key string) error {
		_, err := server.Lookup(context.Background(), key)
		return err
	})
}

func TestRunKeys_EmbeddedFile(t *testing.T) {
	cfg := keysConfig(t, "  file: keys.json\n") // relative to the config file
	c := apikeys.Default()
	c.File = filepath.Join(filepath.Dir(cfg), "keys.json")
	server := openTestStore(t, c) // a `make run` server sharing the file
	testKeysCommands(t, cfg, func(key string) error {
		_, err := server.Lookup(context.Background(), key)
		return err
	})
	if fi, err := os.Stat(c.File); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keys file: %v, %v; want mode 0600", fi, err)
	}
}

func TestRunKeys_StoreErrors(t *testing.T) {
	tests := []struct {
		name    string
		apiKeys string
		msg     string
	}{
		{"embedded store without file", "  prefix: ek\n", "neither a redis section nor a file"},
		{"redis unreachable", "  redis:\n    addrs: [unix:///nonexistent/r.sock]\n", "cannot reach the key store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := keysConfig(t, tt.apiKeys)
			start := time.Now()
			code, _, errOut := keysRun(t, "create", "--config", cfg, "--owner", "alice")
			if code != 1 || !strings.Contains(errOut, tt.msg) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, errOut, tt.msg)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

// --rate-limit gives a key its own limit, which the server's lookups return
// and show and list print, in both kinds of store; a broken stored limit is
// reported, not ignored.
func TestRunKeys_RateLimit(t *testing.T) {
	stores := []struct {
		name  string
		setup func(t *testing.T) (cfg string, server *apikeys.Store, rdb *redis.Client)
	}{
		{"redis", func(t *testing.T) (string, *apikeys.Store, *redis.Client) {
			srv := apikeystest.StartServer(t)
			c := apikeys.Default()
			c.Redis = &apikeys.RedisConfig{Addrs: []string{srv.URL()}, Timeout: time.Second}
			return keysConfig(t, "  redis:\n    addrs: ["+srv.URL()+"]\n    timeout: 1s\n"), openTestStore(t, c), srv.Client(t)
		}},
		{"embedded file", func(t *testing.T) (string, *apikeys.Store, *redis.Client) {
			cfg := keysConfig(t, "  file: keys.json\n")
			c := apikeys.Default()
			c.File = filepath.Join(filepath.Dir(cfg), "keys.json")
			return cfg, openTestStore(t, c), nil
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			cfg, server, rdb := st.setup(t)
			ctx := context.Background()
			created := keysJSON[apikeys.CreatedKey](t, "create", "--config", cfg, "--owner", "ci-bot", "--rate-limit", "10/1m,burst=5", "--json")
			want := &apikeys.RateLimit{Requests: 10, Per: time.Minute, Burst: 5}
			if diff := cmp.Diff(want, created.RateLimit); diff != "" {
				t.Errorf("create --json rate_limit (-want +got):\n%s", diff)
			}
			rec, err := server.Lookup(ctx, created.Key)
			if err != nil {
				t.Fatalf("Lookup of the created key: %v", err)
			}
			if diff := cmp.Diff(want, rec.RateLimit); diff != "" {
				t.Errorf("the server's record (-want +got):\n%s", diff)
			}
			plain := keysJSON[apikeys.CreatedKey](t, "create", "--config", cfg, "--owner", "ci-bot", "--json")

			// --json carries the stored form, and nothing for a key without.
			for _, tt := range []struct {
				id   string
				want any
			}{
				{created.ID, map[string]any{"requests": 10.0, "per": "1m", "burst": 5.0}},
				{plain.ID, nil},
			} {
				got := keysJSON[map[string]any](t, "show", tt.id, "--config", cfg, "--json")
				if diff := cmp.Diff(tt.want, got["rate_limit"]); diff != "" {
					t.Errorf("show %s --json rate_limit (-want +got):\n%s", tt.id, diff)
				}
			}
			list := keysJSON[[]apikeys.KeyView](t, "list", "--config", cfg, "--json")
			if len(list) != 2 || !cmp.Equal(want, list[0].RateLimit) || list[1].RateLimit != nil {
				t.Errorf("list --json = %+v", list)
			}

			human := []struct {
				args []string
				want string
			}{
				{[]string{"show", created.ID, "--config", cfg}, "rate limit: 10/1m,burst=5 (this key's own"},
				{[]string{"show", plain.ID, "--config", cfg}, "rate limit: - (the configured limits apply)"},
				{[]string{"list", "--config", cfg}, "10/1m,burst=5"},
				{[]string{"list", "--config", cfg}, "RATE LIMIT"},
			}
			for _, tt := range human {
				code, out, errOut := keysRun(t, tt.args...)
				if code != 0 || !strings.Contains(strings.Join(strings.Fields(out), " "), tt.want) {
					t.Errorf("%v: exit %d, want %q in\n%s%s", tt.args, code, tt.want, out, errOut)
				}
			}

			refused := []struct {
				name, value, msg string
			}{
				{"no period", "10", `invalid value "10" for flag -rate-limit: limit "10" must look like 10/1m or 10/1m,burst=5`},
				{"zero requests", "0/1m", "limit.requests: 0 must be between 1 and 1000000"},
				{"period too short", "10/100ms", "limit.per: 100ms must be between 1s and 24h"},
				{"unknown option", "10/1m,bust=3", "the option must be burst=<n>"},
				{"burst out of range", "10/1m,burst=-1", "limit.burst: -1 must be between 0"},
			}
			for _, tt := range refused {
				t.Run(tt.name, func(t *testing.T) {
					code, _, errOut := keysRun(t, "create", "--config", cfg, "--owner", "eve", "--rate-limit", tt.value)
					if code != 2 || !strings.Contains(errOut, tt.msg) {
						t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, errOut, tt.msg)
					}
				})
			}
			if l := keysJSON[[]apikeys.KeyView](t, "list", "--owner", "eve", "--config", cfg, "--json"); len(l) != 0 {
				t.Errorf("refused creates left keys: %+v", l)
			}

			if rdb == nil {
				return
			}
			// A limit broken behind the store's back is reported by show and
			// list, and the server refuses the key.
			if err := rdb.HSet(ctx, "extauthz:{apikeys}:key:"+rec.Hash, "rate_limit", "10/1m").Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.Publish(ctx, apikeys.EventsChannel, "*").Err(); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"show", created.ID, "--config", cfg}, {"list", "--config", cfg}} {
				code, _, errOut := keysRun(t, args...)
				if code != 1 || !strings.Contains(errOut, "corrupt api key record: rate_limit: must be an object") {
					t.Errorf("%v: exit %d, stderr:\n%s\nwant exit 1 naming the corrupt rate_limit", args, code, errOut)
				}
			}
			eventually := time.Now().Add(3 * time.Second)
			for _, err := server.Lookup(ctx, created.Key); !errors.Is(err, apikeys.ErrCorrupt); _, err = server.Lookup(ctx, created.Key) {
				if time.Now().After(eventually) {
					t.Fatalf("the server still answers %v for a key with a corrupt limit", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestRunKeys_RevokeOwner proves that `keys revoke --owner` revokes every
// key of one owner in one namespace (the CLI's, or --issuer's) and prints
// the count, leaving the same name in other namespaces alone.
func TestRunKeys_RevokeOwner(t *testing.T) {
	cfg, s := redisKeys(t)
	ctx := context.Background()
	const iss = "https://idp.example"
	var recs []*apikeys.Record
	for _, o := range []apikeys.CreateOptions{{Owner: "alice"}, {Owner: "alice"}, {Owner: "alice", Issuer: iss, TTL: time.Hour}, {Owner: "bob"}} {
		_, rec, err := s.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	tests := []struct {
		name        string
		args        []string
		wantCode    int
		wantOut     string
		wantRevoked []bool // of recs, after the command
	}{
		{"usage: --issuer needs --owner", []string{"revoke", "--config", cfg, "--issuer", iss}, 2, "", []bool{false, false, false, false}},
		{"CLI namespace", []string{"revoke", "--config", cfg, "--owner", "alice"}, 0, `Revoked 2 keys of owner "alice" (CLI namespace`, []bool{true, true, false, false}},
		{"again: nothing left", []string{"revoke", "--owner=alice", "--config", cfg}, 0, "Revoked 0 keys", []bool{true, true, false, false}},
		{"an issuer's namespace", []string{"revoke", "--config", cfg, "--owner", "alice", "--issuer", iss}, 0, `Revoked 1 keys of owner "alice" of issuer "https://idp.example"`, []bool{true, true, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := keysRun(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Errorf("exit %d, stdout %q stderr %q; want %d and %q", code, out, errOut, tc.wantCode, tc.wantOut)
			}
			var got []bool
			for _, r := range recs {
				rec, err := s.Get(ctx, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, !rec.RevokedAt.IsZero())
			}
			if diff := cmp.Diff(tc.wantRevoked, got); diff != "" {
				t.Errorf("revoked (-want +got):\n%s", diff)
			}
		})
	}
	l := keysJSON[[]apikeys.KeyView](t, "list", "--config", cfg, "--owner", "alice", "--issuer", iss, "--json")
	if len(l) != 1 || l[0].Issuer != iss || l[0].ID != recs[2].ID {
		t.Errorf("list --issuer: %+v", l)
	}
}

// adminAPI is a key-API caller holding apikeys:admin; the test is about the
// answers, not about authentication.
type adminAPI struct{}

func (adminAPI) Authenticate(context.Context, map[string]string) (*authz.Identity, authz.Reason) {
	return &authz.Identity{Method: authz.MethodJWT, Subject: "root", Issuer: "https://issuer.test", Roles: []string{"admin"}}, ""
}
func (adminAPI) AuthenticateJWT(context.Context, string) (*authz.Identity, time.Time, authz.Reason) {
	return nil, time.Time{}, ""
}
func (adminAPI) Permits(_ []string, perm string) bool { return perm == keysapi.PermAdmin }
func (adminAPI) MapRoles(_, roles []string) []string  { return roles }

// TestKeyView_CLIAndAPIAgree: `keys create|show|list --json` and the key
// API show the same key as the same JSON (apikeys.KeyView), whoever created
// it, with and without the optional fields, which are left out when unset.
func TestKeyView_CLIAndAPIAgree(t *testing.T) {
	cfg, server := redisKeys(t)
	h, err := keysapi.New(keysapi.Config{}, keysapi.Deps{
		Auth: func() keysapi.Authenticator { return adminAPI{} }, Store: server, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string, want int) any {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("authorization", "Bearer admin")
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		var v any
		if rr.Code != want || json.Unmarshal(rr.Body.Bytes(), &v) != nil {
			t.Fatalf("%s %s: %d %s, want %d and JSON", method, path, rr.Code, rr.Body, want)
		}
		return v
	}
	withoutKey := func(m map[string]any) map[string]any {
		if _, ok := m["key"].(string); !ok {
			t.Errorf("create answer has no key: %v", m)
		}
		delete(m, "key")
		return m
	}

	created := map[string]map[string]any{ // by case: the create answer without the secret
		"every field": withoutKey(keysJSON[map[string]any](t, "create", "--config", cfg, "--owner", "alice", "--groups", "eng",
			"--roles", "developer", "--ttl", "720h", "--description", "CI runner", "--rate-limit", "10/1m,burst=5", "--json")),
		"no optional field": withoutKey(keysJSON[map[string]any](t, "create", "--config", cfg, "--owner", "bob", "--json")),
		"revoked":           withoutKey(keysJSON[map[string]any](t, "create", "--config", cfg, "--owner", "carol", "--json")),
		"created by the API": withoutKey(api("POST", "/v1/keys",
			`{"owner":"dave","issuer":"https://issuer.test","roles":["developer"],"ttl":"1h"}`, 201).(map[string]any)),
	}
	revoked := created["revoked"]["id"].(string)
	if code, _, errOut := keysRun(t, "revoke", "--config", cfg, revoked); code != 0 {
		t.Fatalf("revoke: exit %d %s", code, errOut)
	}
	created["revoked"]["status"] = "revoked"

	always := []string{"created_at", "groups", "hash_prefix", "id", "owner", "roles", "status"}
	fields := map[string][]string{
		"every field":        append([]string{"description", "expires_at", "rate_limit"}, always...),
		"no optional field":  always,
		"revoked":            append([]string{"revoked_at"}, always...),
		"created by the API": append([]string{"expires_at", "issuer"}, always...),
	}
	for name, want := range created {
		t.Run(name, func(t *testing.T) {
			id := want["id"].(string)
			cli := keysJSON[map[string]any](t, "show", id, "--config", cfg, "--json")
			if diff := cmp.Diff(cli, api("GET", "/v1/keys/"+id, "", 200)); diff != "" {
				t.Errorf("show --json (-) and GET /v1/keys/%s (+) differ:\n%s", id, diff)
			}
			got := slices.Sorted(maps.Keys(cli))
			if diff := cmp.Diff(slices.Sorted(slices.Values(fields[name])), got); diff != "" {
				t.Errorf("fields of show --json (-want +got):\n%s", diff)
			}
			delete(cli, "revoked_at") // not known when it was created
			if diff := cmp.Diff(want, cli); diff != "" {
				t.Errorf("the create answer (-) and show --json (+) differ:\n%s", diff)
			}
		})
	}
	t.Run("list", func(t *testing.T) {
		cli := keysJSON[[]any](t, "list", "--config", cfg, "--json")
		if len(cli) != len(created) {
			t.Fatalf("list --json has %d keys, want %d", len(cli), len(created))
		}
		if diff := cmp.Diff(map[string]any{"keys": cli}, api("GET", "/v1/keys", "", 200)); diff != "" {
			t.Errorf("list --json (-) and GET /v1/keys (+) differ:\n%s", diff)
		}
	})
}

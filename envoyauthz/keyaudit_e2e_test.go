package envoyauthz_test

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// TestCheck_KeyRefusedOnUseIsAudited proves that presenting a revoked or
// expired API key writes a decision line naming the key (key_id, subject)
// with its audit event, on the first refusal and on one answered from the
// store's caches, over a real Redis and the embedded store, without the
// secret or its hash, and without making the denial look authenticated.
func TestCheck_KeyRefusedOnUseIsAudited(t *testing.T) {
	backends := []struct {
		name  string
		redis bool
	}{
		{"embedded", false},
		{"redis", true},
	}
	const ttl = 300 * time.Millisecond
	cases := []struct {
		name string
		// make returns a key that is refused when presented.
		make   func(t *testing.T, st *stack) (string, *apikeys.Record)
		reason string
		event  string
	}{
		{"revoked", func(t *testing.T, st *stack) (string, *apikeys.Record) {
			secret, rec, err := st.store.Create(context.Background(), apikeys.CreateOptions{Owner: "dave@example.com", Groups: []string{"eng"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.store.Revoke(context.Background(), rec.ID); err != nil {
				t.Fatal(err)
			}
			return secret, rec
		}, "revoked_key", "revoked_on_use"},
		{"expired while cached", func(t *testing.T, st *stack) (string, *apikeys.Record) {
			secret, rec, err := st.store.Create(context.Background(), apikeys.CreateOptions{Owner: "erin@example.com", Groups: []string{"eng"}, TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.store.Lookup(context.Background(), secret); err != nil {
				t.Fatalf("Lookup before expiry: %v", err)
			}
			time.Sleep(time.Until(rec.ExpiresAt) + 20*time.Millisecond)
			return secret, rec
		}, "expired_key", "expired_on_use"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := apikeys.Default()
			var srv *apikeystest.Server
			if b.redis {
				srv = apikeystest.StartServer(t)
				cfg.Redis = &apikeys.RedisConfig{Addrs: []string{srv.URL()}, Timeout: 500 * time.Millisecond}
			}
			st := newStack(t, cfg)
			if b.redis {
				waitCaching(t, st, srv)
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					secret, rec := tc.make(t, st)
					for i, rid := range []string{rec.ID + "-1", rec.ID + "-2"} { // the second is a cache hit
						resp, err := st.client.Check(context.Background(), checkRequest("GET", "/v1/models", map[string]string{
							"authorization": "Bearer " + secret, "x-request-id": rid}))
						if err != nil {
							t.Fatalf("Check: %v", err)
						}
						if resp.GetDeniedResponse() == nil {
							t.Fatalf("check %d of a %s key was not denied: %v", i, tc.name, resp)
						}
						line := decisionLine(t, st.logs.String(), rid)
						want := map[string]any{
							"reason": tc.reason, "event": tc.event, "method": "api_key",
							"key_id": rec.ID, "subject": rec.Owner,
						}
						got := map[string]any{}
						for k := range want {
							got[k] = line[k]
						}
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("check %d: decision line (-want +got):\n%s", i, diff)
						}
						if _, ok := line["issuer"]; ok {
							t.Errorf("check %d: a refused key's line has an issuer: %v", i, line)
						}
					}
					logs := st.logs.String()
					if strings.Contains(logs, secret) || strings.Contains(logs, rec.Hash) {
						t.Errorf("the log contains the key or its full hash")
					}
				})
			}

			// An unknown key names nothing: there is no key to audit.
			rid := "unknown-" + b.name
			if _, err := st.client.Check(context.Background(), checkRequest("GET", "/v1/models", map[string]string{
				"x-api-key": unknownKey(t, st), "x-request-id": rid})); err != nil {
				t.Fatal(err)
			}
			line := decisionLine(t, st.logs.String(), rid)
			for _, k := range []string{"event", "key_id", "subject"} {
				if v, ok := line[k]; ok {
					t.Errorf("unknown key's decision line has %s=%v", k, v)
				}
			}
			if line["reason"] != "unknown_key" {
				t.Errorf("unknown key's reason = %v, want unknown_key", line["reason"])
			}
		})
	}
}

// waitCaching waits until a Redis store caches answers (its invalidation
// subscription is up): a probe key still resolves after its record is
// deleted behind the store's back.
func waitCaching(t *testing.T, st *stack, srv *apikeystest.Server) {
	t.Helper()
	ctx := context.Background()
	rdb := srv.Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		secret, rec, err := st.store.Create(ctx, apikeys.CreateOptions{Owner: "probe"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.store.Lookup(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Del(ctx, "extauthz:{apikeys}:key:"+rec.Hash).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.store.Lookup(ctx, secret); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the store did not start caching within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unknownKey returns a well-formed key that the store does not know: one
// created in another store.
func unknownKey(t *testing.T, st *stack) string {
	t.Helper()
	other, err := apikeys.New(context.Background(), apikeys.Default(), apikeys.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	secret, _, err := other.Create(context.Background(), apikeys.CreateOptions{Owner: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// decisionLine returns the decision log line of the request with id rid.
func decisionLine(t *testing.T, logs, rid string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v", err)
		}
		if m["msg"] == "decision" && m["request_id"] == rid {
			return m
		}
	}
	t.Fatalf("no decision line for request %s in:\n%s", rid, logs)
	return nil
}

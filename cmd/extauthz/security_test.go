package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// signDev signs claims with the development key (kid dev-1), for tokens the
// token command will not mint (expired ones).
func signDev(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "dev", "private.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("examples/dev/private.pem: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "dev-1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unknownKey returns a well-formed API key (valid checksum) that no store
// issued.
func unknownKey(t *testing.T) string {
	t.Helper()
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	r := make([]byte, 30)
	if _, err := rand.Read(r); err != nil {
		t.Fatal(err)
	}
	b := []byte("ek_")
	for _, c := range r {
		b = append(b, base62[int(c)%62])
	}
	sum := uint64(crc32.ChecksumIEEE(b))
	var cs [6]byte
	for i := 5; i >= 0; i-- {
		cs[i] = base62[sum%62]
		sum /= 62
	}
	return string(append(b, cs[:]...))
}

// keysCLI runs the built binary's keys subcommand and returns its stdout.
func keysCLI(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(binary, append([]string{"keys"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("extauthz keys %s: %v\n%s", args[0], err, errb.String())
	}
	return out.Bytes()
}

// get fetches an admin URL and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServe_NoSecretsInLogsMetricsOrRedis plants secrets — a Redis password
// (in password_file, enforced by the real redis-server), API keys, JWTs
// (valid, expired, garbage, tampered, of a provider without keys), a cookie
// and a query parameter — runs every outcome over gRPC and HTTP with the log
// at debug level, takes Redis away, and then searches the whole process
// output, /metrics and /readyz for each secret, for "Bearer ", for the full
// SHA-256 of the keys and for every token's signature. Redis itself must hold
// the keys' SHA-256 only.
func TestServe_NoSecretsInLogsMetricsOrRedis(t *testing.T) {
	srv := apikeystest.StartServer(t)
	password := "redis-pw-" + hex.EncodeToString(must(t, 16))
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "requirepass", password).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket(), Password: password})
	t.Cleanup(func() { rdb.Close() })

	dir := t.TempDir()
	jwksDoc, err := os.ReadFile(filepath.Join("..", "..", "examples", "dev", "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "jwks.json"), jwksDoc)
	writeFile(t, filepath.Join(dir, "redis.pw"), []byte(password+"\n"))
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, []byte(`listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0, admin: 127.0.0.1:0}
server: {check_timeout: 500ms}
log: {level: debug}
jwt:
  providers:
    - {name: dev, issuer: https://issuer.dev.local, audiences: [llm-gateway], jwks_file: jwks.json, claims_to_headers: {email: x-auth-email}}
    - {name: down, issuer: https://down.test, audiences: [llm-gateway], jwks_url: "http://127.0.0.1:1/jwks.json", refresh_interval: 1h}
api_keys:
  redis: {addrs: ["`+srv.URL()+`"], password_file: redis.pw, timeout: 200ms}
`+defaultPolicy))

	var created struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	if err := json.Unmarshal(keysCLI(t, "create", "--config", cfg, "--owner", "carol", "--groups", "eng", "--json"), &created); err != nil {
		t.Fatal(err)
	}
	var revoked struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	if err := json.Unmarshal(keysCLI(t, "create", "--config", cfg, "--owner", "dave", "--json"), &revoked); err != nil {
		t.Fatal(err)
	}
	keysCLI(t, "revoke", "--config", cfg, revoked.ID)
	var spare struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(keysCLI(t, "create", "--config", cfg, "--owner", "erin", "--json"), &spare); err != nil {
		t.Fatal(err)
	}

	p := startProc(t, cfg)
	client, _ := p.client(t)

	alice := mintToken(t, "alice", "eng")
	bob := mintToken(t, "bob", "")
	now := time.Now()
	expired := signDev(t, jwt.MapClaims{"iss": "https://issuer.dev.local", "aud": "llm-gateway", "sub": "alice", "exp": now.Add(-time.Hour).Unix()})
	down := signDev(t, jwt.MapClaims{"iss": "https://down.test", "aud": "llm-gateway", "sub": "alice", "exp": now.Add(time.Hour).Unix()})
	aseg := strings.Split(alice, ".")
	tampered := aseg[0] + "." + aseg[1] + "." + aseg[2][:len(aseg[2])-8] + "AAAAAAAA"
	garbage := "garbageHeaderSecret.garbagePayloadSecret.garbageSignatureSecret"
	unknown := unknownKey(t)
	malformed := "ek_malformedKeySecretmalformedKeySecret"
	cookie := "session=cookieSecret" + hex.EncodeToString(must(t, 8))
	query := "querySecret" + hex.EncodeToString(must(t, 8))

	// Wait until the key store answers (it connects in the background).
	if !eventually(10*time.Second, func() bool {
		_, st := check(t, client, checkReq("GET", "/v1/models", map[string]string{"x-api-key": created.Key}))
		return st == 200
	}) {
		t.Fatal("the API key was not allowed within 10s")
	}

	type call struct {
		name    string
		method  string
		path    string
		headers map[string]string
		want    int
	}
	calls := []call{
		{"allowed jwt", "POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + alice, "cookie": cookie}, 200},
		{"allowed api key (x-api-key)", "GET", "/v1/models?api_key=" + query, map[string]string{"x-api-key": created.Key}, 200},
		{"allowed api key (bearer)", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + created.Key}, 200},
		{"public route with a credential", "GET", "/healthz?token=" + query, map[string]string{"authorization": "Bearer " + alice}, 200},
		{"forbidden", "POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + bob}, 403},
		{"expired jwt", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + expired}, 401},
		{"garbage jwt", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + garbage}, 401},
		{"tampered jwt", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + tampered}, 401},
		{"unknown api key", "GET", "/v1/models", map[string]string{"x-api-key": unknown}, 401},
		{"malformed api key", "GET", "/v1/models", map[string]string{"x-api-key": malformed}, 401},
		{"revoked api key", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + revoked.Key}, 401},
		{"missing credentials", "GET", "/v1/models", map[string]string{"cookie": cookie}, 401},
		{"jwt of a provider without keys", "GET", "/v1/models", map[string]string{"authorization": "Bearer " + down}, 503},
	}
	do := func(c call) {
		t.Helper()
		if _, st := check(t, client, checkReq(c.method, c.path, c.headers)); st != c.want {
			t.Errorf("gRPC %s: status %d, want %d", c.name, st, c.want)
		}
		r, _ := http.NewRequest("GET", "http://"+p.http+"/", nil)
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		r.Header.Set("x-forwarded-method", c.method)
		r.Header.Set("x-forwarded-uri", c.path)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("HTTP %s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		for _, s := range []string{c.headers["authorization"], c.headers["x-api-key"], query} {
			if s != "" && (bytes.Contains(body, []byte(s)) || strings.Contains(fmt.Sprint(resp.Header), s)) {
				t.Errorf("HTTP %s: the response echoes a credential", c.name)
			}
		}
	}
	for _, c := range calls {
		do(c)
	}
	readyBefore, readyBodyBefore := get(t, "http://"+p.admin+"/readyz")

	// Redis holds the SHA-256 of each key, never the key.
	sum := func(k string) string { h := sha256.Sum256([]byte(k)); return hex.EncodeToString(h[:]) }
	var dump strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 0).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		dump.WriteString(k + "\n")
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "string":
			dump.WriteString(rdb.Get(ctx, k).Val() + "\n")
		case "set":
			dump.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), "\n") + "\n")
		default:
			t.Errorf("unexpected Redis type %s for %s", typ, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	stored := dump.String()
	if !strings.Contains(stored, "extauthz:{apikeys}:key:"+sum(created.Key)) {
		t.Fatalf("Redis has no record under the key's SHA-256; the check below would prove nothing:\n%s", stored)
	}
	for _, k := range []string{created.Key, revoked.Key, spare.Key} {
		if strings.Contains(stored, k) || strings.Contains(stored, k[len("ek_"):len(k)-6]) {
			t.Errorf("Redis holds an API key secret")
		}
	}
	if strings.Contains(stored, password) {
		t.Error("Redis data holds the Redis password")
	}

	// Take Redis away: an uncached key is 503 and readiness reports why.
	srv.Kill()
	if _, st := check(t, client, checkReq("GET", "/v1/models", map[string]string{"x-api-key": spare.Key})); st != 503 {
		t.Errorf("uncached key with Redis down: status %d, want 503", st)
	}
	var readyAfter int
	var readyBodyAfter string
	eventually(10*time.Second, func() bool {
		readyAfter, readyBodyAfter = get(t, "http://"+p.admin+"/readyz")
		return strings.Contains(readyBodyAfter, "unreachable")
	})
	if readyAfter != 503 || !strings.Contains(readyBodyAfter, "unreachable") {
		t.Errorf("readyz with Redis down = %d %s, want 503 naming the key store", readyAfter, readyBodyAfter)
	}
	_, metrics := get(t, "http://"+p.admin+"/metrics")

	secrets := map[string]string{
		"redis password":             password,
		"api key":                    created.Key,
		"api key body":               created.Key[len("ek_"):],
		"revoked api key":            revoked.Key,
		"spare api key":              spare.Key,
		"unknown api key":            unknown,
		"malformed api key":          malformed,
		"api key sha256":             sum(created.Key),
		"revoked api key sha256":     sum(revoked.Key),
		"unknown api key sha256":     sum(unknown),
		"jwt":                        alice,
		"jwt signature":              aseg[2],
		"jwt payload":                aseg[1],
		"forbidden jwt signature":    strings.Split(bob, ".")[2],
		"expired jwt signature":      strings.Split(expired, ".")[2],
		"tampered jwt signature":     strings.Split(tampered, ".")[2],
		"jwt without keys signature": strings.Split(down, ".")[2],
		"garbage jwt":                "garbageSignatureSecret",
		"garbage jwt header":         "garbageHeaderSecret",
		"cookie":                     cookie[len("session="):],
		"query string":               query,
		"bearer scheme":              "Bearer ",
	}
	logs := strings.Join(p.log(), "\n")
	if !strings.Contains(logs, `"msg":"decision"`) || !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatalf("the log holds no decision or no debug line; the search proves nothing:\n%s", logs)
	}
	for where, text := range map[string]string{
		"process output":       logs,
		"/metrics":             metrics,
		"/readyz (Redis up)":   readyBodyBefore,
		"/readyz (Redis down)": readyBodyAfter,
	} {
		for name, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the %s", where, name)
			}
		}
	}
	if readyBefore != 503 {
		// The provider without keys keeps the process not ready.
		t.Errorf("readyz = %d with a provider that never loads keys, want 503", readyBefore)
	}
	t.Logf("searched %d log lines, %d bytes of metrics and two /readyz bodies for %d secrets", len(p.log()), len(metrics), len(secrets))
}

func must(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServe_Limits: the gRPC listener refuses a CheckRequest larger than
// server.grpc_max_recv_bytes with RESOURCE_EXHAUSTED before decoding it, and
// the HTTP listener refuses request headers beyond server.max_header_bytes
// with 431; requests under the limits are decided as usual.
func TestServe_Limits(t *testing.T) {
	p := startProc(t, devConfig(t, defaultPolicy, ", grpc_max_recv_bytes: 65536, max_header_bytes: 8192"))
	p.waitReady(t)
	client, _ := p.client(t)
	alice := mintToken(t, "alice", "eng")

	t.Run("gRPC CheckRequest over grpc_max_recv_bytes", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			pad    int
			want   codes.Code
			status int
		}{
			{"48 KiB of headers is decided", 48 << 10, codes.OK, 200},
			{"80 KiB of headers is refused", 80 << 10, codes.ResourceExhausted, 0},
			{"1 MiB of headers is refused", 1 << 20, codes.ResourceExhausted, 0},
		} {
			req := checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + alice, "x-pad": strings.Repeat("p", tc.pad)})
			resp, err := client.Check(context.Background(), req)
			if got := status.Code(err); got != tc.want {
				t.Errorf("%s: RPC status %v (%v), want %v", tc.name, got, err, tc.want)
				continue
			}
			if err == nil && (resp.GetDeniedResponse() != nil || resp.GetStatus().GetCode() != 0) {
				t.Errorf("%s: denied %v, want allowed", tc.name, resp.GetStatus())
			}
		}
		// The server is still healthy and answers the next call.
		if _, st := check(t, client, checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + alice})); st != 200 {
			t.Errorf("check after the refused requests: %d, want 200", st)
		}
	})

	t.Run("HTTP headers over max_header_bytes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			pad  int
			want int
		}{
			// Go's HTTP server allows max_header_bytes plus 4 KiB of slack.
			{"4 KiB of headers is decided", 4 << 10, 200},
			{"16 KiB of headers is refused", 16 << 10, http.StatusRequestHeaderFieldsTooLarge},
			{"1 MiB of headers is refused", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
		} {
			r, _ := http.NewRequest("GET", "http://"+p.http+"/", nil)
			r.Header.Set("authorization", "Bearer "+alice)
			r.Header.Set("x-forwarded-method", "POST")
			r.Header.Set("x-forwarded-uri", "/v1/chat/completions")
			r.Header.Set("x-pad", strings.Repeat("p", tc.pad))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
		}
	})
}

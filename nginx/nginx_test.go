// Package nginx_test runs nginx/extauthz.conf in the real nginx binary:
// against a stand-in for extauthz's HTTP contract (every denial code,
// timeouts), and end to end against the real extauthz server built from this
// repository, with an upstream that records what reaches it. Everything
// listens on 127.0.0.1 and is stopped by PID when the test ends.
//
// Without nginx the tests skip, unless EXTAUTHZ_REQUIRE_NGINX=1 (CI), where
// they fail.
package nginx_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/extauthz/extauthz/jwks/jwkstest"
)

// nginxBinary returns the nginx executable, or skips (fails under
// EXTAUTHZ_REQUIRE_NGINX=1) when there is none.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("EXTAUTHZ_REQUIRE_NGINX") == "1" {
		t.Fatal("nginx not found and EXTAUTHZ_REQUIRE_NGINX=1 (apt-get install nginx)")
	}
	t.Skip("nginx not found (apt-get install nginx); set EXTAUTHZ_REQUIRE_NGINX=1 to fail instead")
	return ""
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// renderConf returns extauthz.conf with its three addresses replaced. Each
// must occur exactly once, so an edit that renames them fails here rather
// than leaving the test to run against the defaults.
func renderConf(t *testing.T, listen, authz, upstream string) string {
	t.Helper()
	data, err := os.ReadFile("extauthz.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	for _, r := range []struct{ old, new string }{
		{"listen 8080;", "listen " + listen + ";"},
		{"server 127.0.0.1:9002;", "server " + authz + ";"},
		{"server 127.0.0.1:8000;", "server " + upstream + ";"},
	} {
		if n := strings.Count(conf, r.old); n != 1 {
			t.Fatalf("extauthz.conf: %q occurs %d times, want 1", r.old, n)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	return conf
}

// process is a child process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startProcess starts args[0] and stops it by PID (SIGTERM, then SIGKILL
// after 10s) when the test ends, printing its log if the test failed.
func startProcess(t *testing.T, name, logPath string, args ...string) *process {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.log())
		}
	})
	return p
}

func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) log() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// waitFor polls ready until it reports true, failing if p exits first or
// 30 seconds pass.
func waitFor(t *testing.T, p *process, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		if p.exited() {
			t.Fatalf("%s exited while waiting for %s:\n%s", p.name, what, p.log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s:\n%s", p.name, what, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nginxServer is a running nginx.
type nginxServer struct {
	base     string // http://127.0.0.1:port
	errorLog string // path of its error log
}

func (n nginxServer) errorLogContains(s string) bool {
	data, err := os.ReadFile(n.errorLog)
	return err == nil && strings.Contains(string(data), s)
}

// startNginx runs extauthz.conf in nginx, with authz as extauthz's HTTP
// listener and upstream as the model server.
func startNginx(t *testing.T, authz, upstream string) nginxServer {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	if err := os.WriteFile(filepath.Join(dir, "extauthz.conf"), []byte(renderConf(t, listen, authz, upstream)), 0o644); err != nil {
		t.Fatal(err)
	}
	var temps strings.Builder
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p := filepath.Join(dir, "tmp", kind)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", kind, p)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody and could not use the
		// temporary directory.
		user = "user root;\n"
	}
	main := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
%[3]s    include %[2]s/extauthz.conf;
}
`, user, dir, temps.String())
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "-e", filepath.Join(dir, "error.log"), "-p", dir + "/", "-c", conf}
	if out, err := exec.Command(args[0], append(args[1:], "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	p := startProcess(t, "nginx", filepath.Join(dir, "nginx.out"), append(args, "-g", "daemon off;")...)
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", data)
		}
	})
	waitFor(t, p, "its listener", func() bool {
		c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
	return nginxServer{base: "http://" + listen, errorLog: filepath.Join(dir, "error.log")}
}

// seenRequest is one request as the upstream received it.
type seenRequest struct {
	Method string
	URI    string
	Header http.Header
	Body   string
}

// upstream is the model server: it records every request and answers 200.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(body)})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// take returns and forgets the requests seen so far.
func (u *upstream) take() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// request is what a test case sends through nginx.
type request struct {
	method string
	path   string
	header map[string]string
	body   string
}

func (r request) do(t *testing.T, base string) (*http.Response, []byte) {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var reqBody io.Reader
	if r.body != "" {
		reqBody = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(method, base+r.path, reqBody)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// denial is what a client must receive for a denied request.
type denial struct {
	status int
	code   string // the JSON body's error and X-Extauthz-Error
	// wwwAuthenticate is the exact WWW-Authenticate, sent once; "" means
	// no such header.
	wwwAuthenticate string
	retryAfter      string // "" means no such header
}

// checkDenial checks status, headers and the JSON body of a denial, and
// that the body does not echo the credential.
func checkDenial(t *testing.T, resp *http.Response, body []byte, want denial, credential string) {
	t.Helper()
	if resp.StatusCode != want.status {
		t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, want.status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json", ct)
	}
	var got struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Errorf("body %q is not JSON: %v", body, err)
	}
	if got.Error != want.code || got.Message == "" {
		t.Errorf("body = %s, want error %q and a message", body, want.code)
	}
	if h := resp.Header.Get("X-Extauthz-Error"); h != want.code {
		t.Errorf("x-extauthz-error = %q, want %q", h, want.code)
	}
	var wantWWW []string
	if want.wwwAuthenticate != "" {
		wantWWW = []string{want.wwwAuthenticate}
	}
	if diff := cmp.Diff(wantWWW, resp.Header.Values("Www-Authenticate")); diff != "" {
		t.Errorf("www-authenticate (-want +got):\n%s", diff)
	}
	if h := resp.Header.Get("Retry-After"); h != want.retryAfter {
		t.Errorf("retry-after = %q, want %q", h, want.retryAfter)
	}
	if h := resp.Header.Get("Cache-Control"); h != "no-store" {
		t.Errorf("cache-control = %q, want no-store", h)
	}
	if credential != "" && strings.Contains(string(body), credential) {
		t.Errorf("body %s echoes the credential", body)
	}
}

// identityHeaders are the headers the upstream may only get from extauthz.
var identityHeaders = []string{
	"X-Auth-Subject", "X-Auth-Method", "X-Auth-Issuer", "X-Auth-Groups",
	"X-Auth-Roles", "X-Auth-Key-Id", "X-Auth-Email",
	"Authorization", "X-Api-Key",
}

// forged is what a client might send to pass as someone else: every
// identity header extauthz sets, one it never sets (an upstream may still
// read it), and underscore spellings that CGI, WSGI and Rack upstreams read
// as x-auth-*.
var forged = map[string]string{
	"X-Auth-Subject":  "mallory",
	"X-Auth-Method":   "api_key",
	"X-Auth-Issuer":   "https://evil.test",
	"X-Auth-Groups":   "platform-admins",
	"X-Auth-Roles":    "admin",
	"X-Auth-Key-Id":   "forged",
	"X-Auth-Email":    "mallory@evil.test",
	"X-Auth-Anything": "evil",
	"X-Auth-Tenant":   "evil",
	"x_auth_subject":  "evil",
	"x_auth_roles":    "admin",
	"X-Auth_Groups":   "platform-admins",
}

// identityLike reports whether an upstream may read a header name as an
// x-auth-* header: case-insensitively, with '_' as '-'.
func identityLike(name string) bool {
	return strings.HasPrefix(strings.ReplaceAll(strings.ToLower(name), "_", "-"), "x-auth-")
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// checkUpstream checks that exactly one request reached the upstream, with
// the given URI and identity headers ("" = absent; every identity header
// not listed must be absent).
func checkUpstream(t *testing.T, u *upstream, wantURI string, want map[string]string) {
	t.Helper()
	seen := u.take()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(seen))
	}
	if seen[0].URI != wantURI {
		t.Errorf("upstream URI = %q, want %q", seen[0].URI, wantURI)
	}
	got := map[string]string{}
	wantAll := map[string]string{}
	for _, h := range identityHeaders {
		got[h] = strings.Join(seen[0].Header.Values(h), " | ")
		wantAll[h] = want[h]
	}
	for h, v := range want {
		got[h] = strings.Join(seen[0].Header.Values(h), " | ")
		wantAll[h] = v
	}
	if diff := cmp.Diff(wantAll, got); diff != "" {
		t.Errorf("headers at the upstream (-want +got):\n%s", diff)
	}
	// Nothing else that an upstream may read as an identity header, in
	// any spelling, whether or not extauthz could have set it.
	for name, vs := range seen[0].Header {
		if identityLike(name) && want[http.CanonicalHeaderKey(name)] == "" {
			t.Errorf("header %s: %q reached the upstream, but extauthz did not set it", name, vs)
		}
	}
}

func checkNoUpstream(t *testing.T, u *upstream) {
	t.Helper()
	if seen := u.take(); len(seen) != 0 {
		t.Errorf("upstream saw %d requests, want none: %+v", len(seen), seen)
	}
}

// TestConf_DenialTranslation proves how extauthz.conf turns each answer of
// extauthz's HTTP contract into the client's response, including the 429
// and 503 that auth_request alone would turn into a bare 500. The
// authorization server here is a stand-in that answers as PRODUCT.md says
// extauthz does; TestConf_WithExtauthz uses the real one.
func TestConf_DenialTranslation(t *testing.T) {
	type answer struct {
		status int
		header map[string]string
		delay  time.Duration
	}
	answers := map[string]answer{
		"allow": {status: 200, header: map[string]string{
			"X-Auth-Subject": "alice", "X-Auth-Method": "jwt", "X-Auth-Roles": "developer",
		}},
		"missing_credentials": {status: 401, header: map[string]string{"Www-Authenticate": `Bearer realm="extauthz"`}},
		"invalid_token":       {status: 401, header: map[string]string{"Www-Authenticate": `Bearer error="invalid_token"`}},
		"invalid_api_key":     {status: 401, header: map[string]string{"Www-Authenticate": `Bearer error="invalid_token"`}},
		"forbidden":           {status: 403, header: map[string]string{"Www-Authenticate": `Bearer error="insufficient_scope"`}},
		"rate_limited":        {status: 429, header: map[string]string{"Retry-After": "7", "Ratelimit-Limit": "10", "Ratelimit-Remaining": "0", "Ratelimit-Reset": "42"}},
		"invalid_request":     {status: 400},
		"unavailable":         {status: 503, header: map[string]string{"Retry-After": "2"}},
		// An error code outside the contract is not echoed.
		`"><script>`: {status: 403},
		// Slower than the check location's 500ms read timeout.
		"slow": {status: 200, delay: 1500 * time.Millisecond, header: map[string]string{"X-Auth-Subject": "alice"}},
		// A status auth_request does not understand and nothing intercepts.
		"teapot": {status: http.StatusTeapot},
	}
	var mu sync.Mutex
	var checks []http.Header
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		checks = append(checks, r.Header.Clone())
		mu.Unlock()
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		a, ok := answers[key]
		if !ok {
			a, key = answers["missing_credentials"], "missing_credentials"
		}
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if a.status != 200 {
			w.Header().Set("X-Extauthz-Error", key)
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(a.status)
		if a.status != 200 {
			// auth_request discards this body: the client must get
			// nginx's, never this one.
			_, _ = io.WriteString(w, `{"error":"from-the-authz-server"}`)
		}
	}))
	t.Cleanup(authz.Close)
	up := newUpstream(t)
	ngx := startNginx(t, authz.Listener.Addr().String(), up.addr())
	base := ngx.base

	bearer := func(v string) map[string]string { return map[string]string{"Authorization": "Bearer " + v} }
	tests := []struct {
		name string
		req  request
		want denial // zero: allowed
	}{
		{"no credential is 401 missing_credentials", request{path: "/v1/models"},
			denial{401, "missing_credentials", `Bearer realm="extauthz"`, ""}},
		{"bad token is 401 invalid_token with one www-authenticate", request{path: "/v1/models", header: bearer("invalid_token")},
			denial{401, "invalid_token", `Bearer error="invalid_token"`, ""}},
		{"bad api key is 401 invalid_api_key", request{path: "/v1/models", header: bearer("invalid_api_key")},
			denial{401, "invalid_api_key", `Bearer error="invalid_token"`, ""}},
		{"not permitted is 403 forbidden", request{method: "POST", path: "/v1/chat/completions", header: bearer("forbidden")},
			denial{403, "forbidden", `Bearer error="insufficient_scope"`, ""}},
		{"rate limited is 429 with extauthz's retry-after", request{path: "/v1/models", header: bearer("rate_limited")},
			denial{429, "rate_limited", "", "7"}},
		{"body that cannot be checked is 400 invalid_request", request{method: "POST", path: "/v1/chat/completions", header: bearer("invalid_request")},
			denial{400, "invalid_request", "", ""}},
		{"unavailable is 503 with extauthz's retry-after", request{path: "/v1/models", header: bearer("unavailable")},
			denial{503, "unavailable", "", "2"}},
		{"unknown error code is 503 unavailable, not echoed", request{path: "/v1/models", header: bearer(`"><script>`)},
			denial{503, "unavailable", "", "1"}},
		{"check slower than the timeout is 503 unavailable", request{path: "/v1/models", header: bearer("slow")},
			denial{503, "unavailable", "", "1"}},
		{"unexpected status is 503 unavailable", request{path: "/v1/models", header: bearer("teapot")},
			denial{503, "unavailable", "", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.req.do(t, base)
			checkDenial(t, resp, body, tt.want, "")
			checkNoUpstream(t, up)
		})
	}

	t.Run("rate limited answer carries the budget headers", func(t *testing.T) {
		resp, _ := request{path: "/v1/models", header: bearer("rate_limited")}.do(t, base)
		got := map[string]string{}
		for _, h := range []string{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"} {
			got[h] = resp.Header.Get(h)
		}
		if diff := cmp.Diff(map[string]string{"Ratelimit-Limit": "10", "Ratelimit-Remaining": "0", "Ratelimit-Reset": "42"}, got); diff != "" {
			t.Errorf("ratelimit headers (-want +got):\n%s", diff)
		}
	})

	t.Run("invalid request, rate limited and unavailable answers are not logged as nginx errors", func(t *testing.T) {
		for _, status := range []string{"400", "429", "503"} {
			if msg := "auth request unexpected status: " + status; ngx.errorLogContains(msg) {
				t.Errorf("error.log contains %q", msg)
			}
		}
		// The same check does see what it looks for.
		if msg := "auth request unexpected status: 418"; !ngx.errorLogContains(msg) {
			t.Errorf("error.log lacks %q", msg)
		}
	})

	t.Run("allowed request carries the identity and the original request to the check", func(t *testing.T) {
		mu.Lock()
		checks = nil
		mu.Unlock()
		req := request{method: "POST", path: "/v1/chat/completions?stream=true", header: merge(forged, bearer("allow"), map[string]string{
			"X-Request-Id": "req-42",
			"Cookie":       "session=secret",
		})}
		resp, body := req.do(t, base)
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d, want 200 (body %s)", resp.StatusCode, body)
		}
		checkUpstream(t, up, "/v1/chat/completions?stream=true", map[string]string{
			"X-Auth-Subject": "alice", "X-Auth-Method": "jwt", "X-Auth-Roles": "developer",
		})
		mu.Lock()
		defer mu.Unlock()
		if len(checks) != 1 {
			t.Fatalf("authz server saw %d checks, want 1", len(checks))
		}
		got := map[string]string{}
		for _, h := range []string{"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", "Authorization", "X-Request-Id", "Cookie", "X-Auth-Subject", "Content-Length"} {
			got[h] = checks[0].Get(h)
		}
		want := map[string]string{
			"X-Forwarded-Method": "POST",
			"X-Forwarded-Uri":    "/v1/chat/completions?stream=true",
			"X-Forwarded-Host":   strings.Split(strings.TrimPrefix(base, "http://"), ":")[0],
			"Authorization":      "Bearer allow",
			"X-Request-Id":       "req-42",
			// Neither cookies nor forged identity reach extauthz, and the
			// check has no body.
			"Cookie":         "",
			"X-Auth-Subject": "",
			"Content-Length": "",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("check request headers (-want +got):\n%s", diff)
		}
	})

	t.Run("the check location is not reachable from outside", func(t *testing.T) {
		resp, _ := request{path: "/_extauthz", header: bearer("allow")}.do(t, base)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status = %d, want 404", resp.StatusCode)
		}
		checkNoUpstream(t, up)
	})
}

const (
	issuer   = "https://issuer.test"
	audience = "llm-gateway"
)

// sign signs claims with key, failing t on error.
func sign(t *testing.T, key *jwkstest.Key, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := key.Sign(claims, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(sub string, groups []string, mutate func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":   issuer,
		"aud":   audience,
		"sub":   sub,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"email": sub + "@example.com",
	}
	if groups != nil {
		c["groups"] = groups
	}
	if mutate != nil {
		mutate(c)
	}
	return c
}

// extauthzServer is the extauthz binary built from this repository, with
// its config file.
type extauthzServer struct {
	bin, config string
	httpAddr    string
	adminAddr   string
	logPath     string
}

// buildExtauthz builds cmd/extauthz into dir and writes config (with %s for
// the gRPC, HTTP and admin listen addresses) to dir/config.yaml.
func buildExtauthz(t *testing.T, dir, config string) *extauthzServer {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found: %v", err)
	}
	e := &extauthzServer{
		bin:       filepath.Join(dir, "extauthz"),
		config:    filepath.Join(dir, "config.yaml"),
		httpAddr:  freeAddr(t),
		adminAddr: freeAddr(t),
		logPath:   filepath.Join(dir, "extauthz.log"),
	}
	build := exec.Command(goBin, "build", "-o", e.bin, "./cmd/extauthz")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/extauthz: %v\n%s", err, out)
	}
	if err := os.WriteFile(e.config, fmt.Appendf(nil, config, freeAddr(t), e.httpAddr, e.adminAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs an extauthz command with --config and returns its standard output.
func (e *extauthzServer) run(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(e.bin, append(args, "--config", e.config)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("extauthz %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// serve starts `extauthz serve` and waits until /readyz answers 200.
func (e *extauthzServer) serve(t *testing.T) *process {
	t.Helper()
	p := startProcess(t, "extauthz", e.logPath, e.bin, "serve", "--config", e.config)
	waitFor(t, p, "/readyz", func() bool {
		resp, err := http.Get("http://" + e.adminAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

const extauthzConfig = `
listen:
  grpc: %s
  http: %s
  admin: %s
server:
  check_timeout: 300ms
log:
  level: info
jwt:
  providers:
    - name: test
      issuer: ` + issuer + `
      audiences: [` + audience + `]
      jwks_file: jwks.json
      algorithms: [RS256]
      groups_claim: groups
      claims_to_headers:
        email: x-auth-email
api_keys:
  file: keys.json
roles:
  viewer: [models:list]
  developer: [models:list, chat:invoke, "tool:search_docs"]
role_mapping:
  rules:
    - groups: [eng]
      roles: [developer]
  default_roles: [viewer]
routes:
  - name: docs
    match: {path_prefix: /docs}
    public: true
  - name: chat
    match: {path_prefix: /v1/chat/completions, methods: [POST]}
    require: {permissions: [chat:invoke]}
  - name: responses
    match: {path_prefix: /v1/responses, methods: [POST]}
    require: {permissions: [chat:invoke], tools: true}
  - name: models
    match: {path_prefix: /v1/models, methods: [GET]}
    require: {any_role: [viewer, developer]}
default_route: deny
headers:
  prefix: x-auth-
  strip_credentials: true
`

// TestConf_WithExtauthz runs nginx with extauthz.conf in front of the real
// extauthz server and proves, end to end: a valid token reaches the
// upstream with extauthz's identity and nothing the client forged; every
// denial reaches the client as status, WWW-Authenticate and JSON body
// without touching the upstream; and when extauthz goes away, nginx fails
// closed with 503.
func TestConf_WithExtauthz(t *testing.T) {
	nginxBinary(t) // skip before building anything
	dir := t.TempDir()
	key := jwkstest.MustKey(t, "RS256")
	if err := jwkstest.WriteJWKSFile(filepath.Join(dir, "jwks.json"), key); err != nil {
		t.Fatal(err)
	}
	// Same kid, another key: a token the JWKS cannot verify.
	impostor := jwkstest.MustKey(t, "RS256")
	impostor.KID = key.KID
	ez := buildExtauthz(t, dir, extauthzConfig)
	var apiKey struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	out := ez.run(t, "keys", "create", "--owner", "batch-job", "--roles", "developer", "--json")
	if err := json.Unmarshal(out, &apiKey); err != nil || apiKey.Key == "" || apiKey.ID == "" {
		t.Fatalf("keys create --json printed %q (%v), want a key and an id", out, err)
	}
	authz := ez.serve(t)
	up := newUpstream(t)
	base := startNginx(t, ez.httpAddr, up.addr()).base

	alice := sign(t, key, claims("alice", []string{"eng"}, nil)) // developer
	bob := sign(t, key, claims("bob", nil, nil))                 // viewer only
	forgedSig := sign(t, impostor, claims("alice", []string{"eng"}, nil))
	expired := sign(t, key, claims("alice", []string{"eng"}, func(c jwt.MapClaims) {
		c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		c["nbf"] = time.Now().Add(-2 * time.Hour).Unix()
		c["exp"] = time.Now().Add(-time.Hour).Unix()
	}))
	wrongAudience := sign(t, key, claims("alice", []string{"eng"}, func(c jwt.MapClaims) { c["aud"] = "someone-else" }))
	bearer := func(v string) map[string]string { return map[string]string{"Authorization": "Bearer " + v} }

	aliceIdentity := map[string]string{
		"X-Auth-Subject": "alice",
		"X-Auth-Method":  "jwt",
		"X-Auth-Issuer":  issuer,
		"X-Auth-Groups":  "eng",
		"X-Auth-Roles":   "developer,viewer",
		"X-Auth-Email":   "alice@example.com",
	}

	allowed := []struct {
		name    string
		req     request
		wantURI string
		want    map[string]string // identity headers at the upstream
	}{
		{
			name:    "valid token reaches the upstream with its identity, without the credential",
			req:     request{path: "/v1/models", header: merge(bearer(alice), map[string]string{"X-Request-Id": "req-1"})},
			wantURI: "/v1/models",
			want:    aliceIdentity,
		},
		{
			name:    "valid token overwrites or removes every forged identity header",
			req:     request{method: "POST", path: "/v1/chat/completions", header: merge(forged, bearer(alice))},
			wantURI: "/v1/chat/completions",
			want:    aliceIdentity,
		},
		{
			name:    "valid API key reaches the upstream with its identity, without the key",
			req:     request{method: "POST", path: "/v1/chat/completions", header: merge(forged, map[string]string{"X-Api-Key": apiKey.Key})},
			wantURI: "/v1/chat/completions",
			want: map[string]string{
				"X-Auth-Subject": "batch-job",
				"X-Auth-Method":  "api_key",
				"X-Auth-Roles":   "developer,viewer",
				"X-Auth-Key-Id":  apiKey.ID,
			},
		},
		{
			name:    "public extauthz route removes forged identity headers",
			req:     request{path: "/docs/index.html", header: forged},
			wantURI: "/docs/index.html",
			want:    nil,
		},
		{
			name:    "public nginx location removes forged identity headers without a check",
			req:     request{path: "/healthz", header: merge(forged, bearer(forgedSig))},
			wantURI: "/health",
			want:    nil,
		},
	}
	for _, tt := range allowed {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.req.do(t, base)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", resp.StatusCode, body)
			}
			checkUpstream(t, up, tt.wantURI, tt.want)
		})
	}

	t.Run("only the allow-listed client headers reach the upstream", func(t *testing.T) {
		client := map[string]string{
			"Content-Type":    "application/json",
			"Accept":          "text/event-stream",
			"User-Agent":      "openai-python/1.0",
			"Traceparent":     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"X-Custom":        "not listed",
			"Cookie":          "session=secret",
			"X-Forwarded-For": "10.0.0.1",
		}
		const prompt = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
		resp, body := request{method: "POST", path: "/v1/chat/completions", header: merge(forged, client, bearer(alice)), body: prompt}.do(t, base)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %s)", resp.StatusCode, body)
		}
		seen := up.take()
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d requests, want 1", len(seen))
		}
		got := map[string]string{"body": seen[0].Body, "Content-Length": seen[0].Header.Get("Content-Length")}
		for h := range client {
			got[h] = seen[0].Header.Get(h)
		}
		want := map[string]string{
			// The body and its framing are nginx's own, not a client header.
			"body":           prompt,
			"Content-Length": fmt.Sprint(len(prompt)),
			"Content-Type":   "application/json",
			"Accept":         "text/event-stream",
			"User-Agent":     "openai-python/1.0",
			"Traceparent":    client["Traceparent"],
			"X-Custom":       "",
			"Cookie":         "",
			// nginx's own value, not the client's.
			"X-Forwarded-For": "127.0.0.1",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("client headers at the upstream (-want +got):\n%s", diff)
		}
		for name, vs := range seen[0].Header {
			if identityLike(name) && aliceIdentity[http.CanonicalHeaderKey(name)] != strings.Join(vs, " | ") {
				t.Errorf("header %s: %q reached the upstream, want extauthz's %q", name, vs, aliceIdentity[http.CanonicalHeaderKey(name)])
			}
		}
	})

	t.Run("request id reaches the upstream", func(t *testing.T) {
		resp, _ := request{path: "/v1/models", header: merge(bearer(alice), map[string]string{"X-Request-Id": "req-42"})}.do(t, base)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200", resp.StatusCode)
		}
		seen := up.take()
		if len(seen) != 1 || seen[0].Header.Get("X-Request-Id") != "req-42" {
			t.Errorf("upstream saw %+v, want one request with x-request-id req-42", seen)
		}
	})

	denied := []struct {
		name       string
		req        request
		credential string
		want       denial
	}{
		{
			name: "no credential is 401 missing_credentials",
			req:  request{path: "/v1/models"},
			want: denial{status: 401, code: "missing_credentials"},
		},
		{
			name: "no credential with forged identity headers is 401",
			req:  request{path: "/v1/models", header: forged},
			want: denial{status: 401, code: "missing_credentials"},
		},
		{
			name:       "token signed by another key is 401 invalid_token",
			req:        request{path: "/v1/models", header: merge(forged, bearer(forgedSig))},
			credential: forgedSig,
			want:       denial{status: 401, code: "invalid_token"},
		},
		{
			name:       "expired token is 401 invalid_token",
			req:        request{path: "/v1/models", header: bearer(expired)},
			credential: expired,
			want:       denial{status: 401, code: "invalid_token"},
		},
		{
			name:       "token for another audience is 401 invalid_token",
			req:        request{path: "/v1/models", header: bearer(wrongAudience)},
			credential: wrongAudience,
			want:       denial{status: 401, code: "invalid_token"},
		},
		{
			name:       "API key with a broken checksum is 401 invalid_api_key",
			req:        request{path: "/v1/models", header: map[string]string{"X-Api-Key": apiKey.Key[:len(apiKey.Key)-4] + "AAAA"}},
			credential: apiKey.Key[:len(apiKey.Key)-4],
			want:       denial{status: 401, code: "invalid_api_key"},
		},
		{
			name:       "authenticated but not permitted is 403 forbidden",
			req:        request{method: "POST", path: "/v1/chat/completions", header: bearer(bob)},
			credential: bob,
			want:       denial{status: 403, code: "forbidden"},
		},
		{
			name:       "no route matched is 403 forbidden",
			req:        request{path: "/admin/keys", header: bearer(alice)},
			credential: alice,
			want:       denial{status: 403, code: "forbidden"},
		},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.req.do(t, base)
			// extauthz chooses the exact WWW-Authenticate; the contract
			// fixes its scheme and, for bad credentials and 403s, its error.
			www := resp.Header.Values("Www-Authenticate")
			if len(www) != 1 || !strings.HasPrefix(www[0], "Bearer") {
				t.Errorf("www-authenticate = %q, want one Bearer challenge", www)
			}
			switch tt.want.code {
			case "invalid_token":
				if len(www) == 1 && !strings.Contains(www[0], `error="invalid_token"`) {
					t.Errorf("www-authenticate = %q, want error=\"invalid_token\"", www[0])
				}
			case "forbidden":
				if len(www) == 1 && !strings.Contains(www[0], `error="insufficient_scope"`) {
					t.Errorf("www-authenticate = %q, want error=\"insufficient_scope\"", www[0])
				}
			}
			if len(www) == 1 {
				tt.want.wwwAuthenticate = www[0]
			}
			checkDenial(t, resp, body, tt.want, tt.credential)
			checkNoUpstream(t, up)
		})
	}

	// auth_request sends no body: a route with a body policy cannot be
	// enforced behind nginx, so extauthz refuses the request instead of
	// checking "no tools" (before issue 12, run_shell passed).
	t.Run("body policy behind nginx is 400 invalid_request, not an unchecked allow", func(t *testing.T) {
		resp, body := request{method: "POST", path: "/v1/responses", header: merge(bearer(alice), map[string]string{"Content-Type": "application/json"}),
			body: `{"model":"m","tools":[{"type":"function","function":{"name":"run_shell"}}]}`}.do(t, base)
		checkDenial(t, resp, body, denial{status: 400, code: "invalid_request"}, alice)
		checkNoUpstream(t, up)
	})

	t.Run("extauthz down is 503 unavailable, fail closed", func(t *testing.T) {
		authz.stop()
		resp, body := request{path: "/v1/models", header: bearer(alice)}.do(t, base)
		checkDenial(t, resp, body, denial{status: 503, code: "unavailable", retryAfter: "1"}, alice)
		checkNoUpstream(t, up)
	})
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/secretfile/secretfiletest"
)

// binary is the extauthz binary the process tests run, built once.
var binary string

func TestMain(m *testing.M) {
	// The development key and secret fixtures must not be group-writable,
	// whatever the umask of the checkout.
	if err := secretfiletest.ProtectFixtures("../../examples/dev/private.pem", "../../config/testdata/*secret*.txt"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "extauthz-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "extauthz")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building extauthz:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is an extauthz serve process started by a test.
type proc struct {
	cmd   *exec.Cmd
	cfg   string
	grpc  string
	http  string
	admin string
	mu    sync.Mutex
	lines []string
	done  chan struct{}
	err   error
}

// devConfig returns a config using the development JWKS, with listeners on
// free loopback ports and the given extra YAML appended.
func devConfig(t *testing.T, routesAndRoles string, server string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"jwks.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "dev", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0, admin: 127.0.0.1:0}
server: {check_timeout: 300ms` + server + `}
jwt:
  providers:
    - name: dev
      issuer: https://issuer.dev.local
      audiences: [llm-gateway]
      jwks_file: jwks.json
      claims_to_headers: {email: x-auth-email}
api_keys: {file: keys.json}
` + routesAndRoles
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const defaultPolicy = `roles: {viewer: [models:list], developer: [models:list, chat:invoke]}
role_mapping:
  rules: [{groups: [eng], roles: [developer]}]
  default_roles: [viewer]
routes:
  - {name: health, match: {path_prefix: /healthz}, public: true}
  - {name: chat, match: {path_prefix: /v1/chat/completions, methods: [POST]}, require: {permissions: [chat:invoke]}}
  - {name: models, match: {path_prefix: /v1/models}, require: {any_role: [viewer]}}
`

func startProc(t *testing.T, cfgPath string) *proc {
	t.Helper()
	p := &proc{cfg: cfgPath, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve", "--config", cfgPath)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "extauthz serving" {
				p.grpc, _ = m["grpc"].(string)
				p.http, _ = m["http"].(string)
				p.admin, _ = m["admin"].(string)
				once.Do(func() { close(started) })
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", strings.Join(p.log(), "\n"))
		}
	})
	select {
	case <-started:
	case <-p.done:
		t.Fatalf("extauthz exited early: %v\n%s", p.err, strings.Join(p.log(), "\n"))
	case <-time.After(20 * time.Second):
		t.Fatal("extauthz did not start within 20s")
	}
	return p
}

func (p *proc) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// eventually polls cond until it holds, for at most within, and reports
// whether it did: tests wait for a condition, never for a fixed time, so a
// busy machine only makes them slower.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// waitLog waits until a log line contains all of subs.
func (p *proc) waitLog(t *testing.T, subs ...string) string {
	t.Helper()
	var found string
	if !eventually(10*time.Second, func() bool {
		for _, l := range p.log() {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				found = l
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no log line with %q", subs)
	}
	return found
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	if !eventually(10*time.Second, func() bool {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatal("extauthz did not become ready within 10s")
	}
}

func (p *proc) client(t *testing.T) (authv3.AuthorizationClient, healthpb.HealthClient) {
	t.Helper()
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
}

func mintToken(t *testing.T, sub, groups string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args := []string{"token", "--key", "../../examples/dev/private.pem", "--kid", "dev-1",
		"--iss", "https://issuer.dev.local", "--aud", "llm-gateway", "--sub", sub, "--claim", "email=" + sub + "@example.com"}
	if groups != "" {
		args = append(args, "--groups", groups)
	}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("token: exit %d: %s", code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func checkReq(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "llm.test", Headers: headers},
	}}}
}

func check(t *testing.T, c authv3.AuthorizationClient, r *authv3.CheckRequest) (code int32, status int) {
	t.Helper()
	resp, err := c.Check(context.Background(), r)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return resp.GetStatus().GetCode(), int(d.GetStatus().GetCode())
	}
	return resp.GetStatus().GetCode(), 200
}

// scrape returns the admin /metrics as metric families.
func (p *proc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value returns the counter/gauge value (or histogram count) of the series
// with exactly these labels.
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("metric %s not exported", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestServe_ChecksMetricsHealthAndAuditLog(t *testing.T) {
	p := startProc(t, devConfig(t, defaultPolicy, ""))
	p.waitReady(t)
	authz, health := p.client(t)

	hr, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", hr.GetStatus(), err)
	}

	alice := mintToken(t, "alice", "eng")
	bob := mintToken(t, "bob", "")
	type call struct {
		name       string
		req        *authv3.CheckRequest
		wantCode   int32
		wantStatus int
	}
	calls := []call{
		{"developer may chat", checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + alice}), 0, 200},
		{"developer may chat again", checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + alice, "x-request-id": "req-42"}), 0, 200},
		{"viewer may list models", checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + bob}), 0, 200},
		{"viewer may not chat", checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + bob}), 7, 403},
		{"tampered token", checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + alice[:len(alice)-4] + "AAAA"}), 16, 401},
		{"garbage token", checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer x.y.z"}), 16, 401},
		{"no credential", checkReq("GET", "/v1/models", nil), 16, 401},
		{"public", checkReq("GET", "/healthz", nil), 0, 200},
	}
	for _, c := range calls {
		code, status := check(t, authz, c.req)
		if code != c.wantCode || status != c.wantStatus {
			t.Errorf("%s: got code %d status %d, want %d %d", c.name, code, status, c.wantCode, c.wantStatus)
		}
	}

	// The HTTP front end makes the same decisions.
	for _, tt := range []struct {
		header, value string
		want          int
	}{{"authorization", "Bearer " + alice, 200}, {"authorization", "Bearer x.y.z", 401}} {
		r, _ := http.NewRequest("GET", "http://"+p.http+"/", nil)
		r.Header.Set(tt.header, tt.value)
		r.Header.Set("x-forwarded-method", "POST")
		r.Header.Set("x-forwarded-uri", "/v1/chat/completions")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("HTTP mode %s: status %d, want %d", tt.value[:10], resp.StatusCode, tt.want)
		}
		if tt.want == 200 && resp.Header.Get("x-auth-subject") != "alice" {
			t.Errorf("HTTP mode allowed without x-auth-subject: %v", resp.Header)
		}
	}

	mf := p.scrape(t)
	for _, tt := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"transport": "grpc", "method": "jwt", "outcome": "allowed"}, 3},
		{map[string]string{"transport": "grpc", "method": "jwt", "outcome": "forbidden"}, 1},
		{map[string]string{"transport": "grpc", "method": "jwt", "outcome": "invalid_token"}, 2},
		{map[string]string{"transport": "grpc", "method": "none", "outcome": "missing_credentials"}, 1},
		{map[string]string{"transport": "grpc", "method": "none", "outcome": "allowed"}, 1},
		{map[string]string{"transport": "http", "method": "jwt", "outcome": "allowed"}, 1},
		{map[string]string{"transport": "http", "method": "jwt", "outcome": "invalid_token"}, 1},
		{map[string]string{"transport": "http", "method": "api_key", "outcome": "unavailable"}, 0},
	} {
		if got := value(t, mf, "extauthz_check_requests_total", tt.labels); got != tt.want {
			t.Errorf("extauthz_check_requests_total%v = %v, want %v", tt.labels, got, tt.want)
		}
	}
	if got := value(t, mf, "extauthz_check_duration_seconds", map[string]string{"transport": "grpc", "outcome": "allowed"}); got != 4 {
		t.Errorf("duration samples for grpc/allowed = %v, want 4", got)
	}
	for _, name := range []string{"extauthz_build_info", "extauthz_config_reloads_total", "extauthz_jwks_refresh_total", "extauthz_jwks_keys",
		"extauthz_apikey_lookups_total", "extauthz_redis_errors_total", "extauthz_token_cache_hits_total", "extauthz_token_cache_misses_total",
		"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := mf[name]; !ok {
			t.Errorf("metric %s is not exported", name)
		}
	}

	// One audit line per decision, with the request id, and never a
	// credential.
	p.waitLog(t, `"request_id":"req-42"`, `"decision":"allowed"`, `"subject":"alice"`, `"route":"chat"`)
	decisions := 0
	for _, l := range p.log() {
		if strings.Contains(l, `"msg":"decision"`) {
			decisions++
		}
		for _, secret := range []string{alice, bob, alice[len(alice)-20:], "Bearer"} {
			if strings.Contains(l, secret) {
				t.Errorf("log line contains a credential: %s", l)
			}
		}
	}
	if decisions != len(calls)+2 {
		t.Errorf("decision log lines = %d, want %d", decisions, len(calls)+2)
	}
}

func TestServe_ReloadSwapsPolicyWithoutDroppingConnections(t *testing.T) {
	cfg := devConfig(t, defaultPolicy, ", shutdown_delay: 0s")
	p := startProc(t, cfg)
	p.waitReady(t)
	authz, _ := p.client(t)
	bob := mintToken(t, "bob", "") // viewer only
	chat := checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + bob})
	if _, st := check(t, authz, chat); st != 403 {
		t.Fatalf("before reload: status %d, want 403", st)
	}

	// Checks keep flowing on the same connection during the reloads.
	stop := make(chan struct{})
	var rpcErrs, total int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := authz.Check(context.Background(), chat); err != nil {
				rpcErrs++
			}
			total++
		}
	}()

	// A valid new policy: viewers may now chat.
	b, _ := os.ReadFile(cfg)
	newPolicy := strings.Replace(string(b), "viewer: [models:list]", "viewer: [models:list, chat:invoke]", 1)
	if err := os.WriteFile(cfg, []byte(newPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reloaded", "sighup")
	if _, st := check(t, authz, chat); st != 200 {
		t.Errorf("after valid reload: status %d, want 200", st)
	}

	// An invalid file is rejected and the running policy keeps serving.
	if err := os.WriteFile(cfg, []byte(newPolicy+"\nbogus_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reload rejected", "bogus_key")
	if _, st := check(t, authz, chat); st != 200 {
		t.Errorf("after rejected reload: status %d, want 200 (old config)", st)
	}
	close(stop)
	wg.Wait()
	if rpcErrs > 0 || total == 0 {
		t.Errorf("%d of %d checks failed at the RPC level during reloads", rpcErrs, total)
	}
	mf := p.scrape(t)
	if got := value(t, mf, "extauthz_config_reloads_total", map[string]string{"result": "success"}); got != 1 {
		t.Errorf("reloads success = %v, want 1", got)
	}
	if got := value(t, mf, "extauthz_config_reloads_total", map[string]string{"result": "failure"}); got != 1 {
		t.Errorf("reloads failure = %v, want 1", got)
	}
}

func TestServe_GracefulShutdownReportsNotReadyFirst(t *testing.T) {
	p := startProc(t, devConfig(t, defaultPolicy, ", shutdown_delay: 1500ms"))
	p.waitReady(t)
	authz, health := p.client(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "shutting down")
	// During the delay: not ready on both health surfaces, but checks are
	// still answered.
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "shutting down") {
		t.Errorf("readyz during shutdown = %d %s, want 503 shutting down", resp.StatusCode, body)
	}
	hr, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health during shutdown = %v, %v; want NOT_SERVING", hr.GetStatus(), err)
	}
	if _, st := check(t, authz, checkReq("GET", "/healthz", nil)); st != 200 {
		t.Errorf("check during shutdown delay: status %d, want 200", st)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("exit: %v, want 0", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit within 10s of SIGTERM")
	}
	p.waitLog(t, `"msg":"stopped"`)
}

func TestServe_NotReadyUntilJWKSLoads(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	// A JWKS URL where nothing listens: the server starts, is not ready, and
	// answers JWT checks with 503 unavailable, never an allow.
	y := `listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}
jwt:
  providers:
    - {name: idp, issuer: https://issuer.dev.local, audiences: [llm-gateway], jwks_url: "http://127.0.0.1:1/jwks.json", refresh_interval: 1h}
` + defaultPolicy
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, cfg)
	authz, health := p.client(t)
	time.Sleep(1500 * time.Millisecond)
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz = %d, want 503", resp.StatusCode)
	}
	hr, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health = %v, %v; want NOT_SERVING", hr.GetStatus(), err)
	}
	tok := mintToken(t, "alice", "eng")
	code, st := check(t, authz, checkReq("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + tok}))
	if code != 14 || st != 503 {
		t.Errorf("JWT check with no JWKS: code %d status %d, want 14 503", code, st)
	}
}

func TestMetricsLint(t *testing.T) {
	m := newMetrics()
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}

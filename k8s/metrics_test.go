package k8s_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

var (
	// metricNameRE finds the exported metric names an expression uses.
	metricNameRE = regexp.MustCompile(`\b(?:extauthz|go|process)_[a-z0-9_]+\b`)
	// recordedNameRE finds recording-rule names (level:metric:operations).
	recordedNameRE = regexp.MustCompile(`\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b`)
	// selectorRE finds a series name with its label matchers.
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	// matcherRE splits one label matcher.
	matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	// promDurationRE matches a Prometheus duration such as 5m or 1h30m.
	promDurationRE = regexp.MustCompile(`^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$`)
)

// targetLabels are attached by Prometheus and the ServiceMonitor, not by the
// server.
var targetLabels = map[string]bool{
	"job": true, "instance": true, "namespace": true, "pod": true,
	"service": true, "container": true, "endpoint": true,
}

// family is what a scrape says about one metric: its type and, per label,
// every value that occurs.
type family struct {
	typ    dto.MetricType
	labels map[string]map[string]bool
}

// TestPrometheusRule_MetricsExistInTheServer runs the real server on the
// shipped configuration (with a local JWKS file, a throw-away Redis and
// loopback ports), scrapes /metrics and checks that every metric an alert or
// recording rule uses exists, and that every label value a matcher compares
// with is one the server exports. All series are pre-initialised, so a
// mistyped name or outcome shows up even at zero traffic.
func TestPrometheusRule_MetricsExistInTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	families := scrapeServer(t)

	pr := one[*prometheusRule](t, load(t, "base"), "extauthz")
	// Which raw metrics each recorded series derives from.
	sources := map[string][]string{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				sources[r.Record] = append(metricNameRE.FindAllString(r.Expr, -1), recordedNameRE.FindAllString(r.Expr, -1)...)
			}
		}
	}
	var resolve func(name string) []string
	resolve = func(name string) []string {
		if srcs, ok := sources[name]; ok {
			var out []string
			for _, s := range srcs {
				out = append(out, resolve(s)...)
			}
			return out
		}
		return []string{baseName(name, families)}
	}

	checked := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			what := r.Record + r.Alert
			for _, name := range metricNameRE.FindAllString(r.Expr, -1) {
				if _, ok := families[baseName(name, families)]; !ok {
					t.Errorf("%s: metric %s is not exported by the server", what, name)
				}
				checked++
			}
			for _, m := range selectorRE.FindAllStringSubmatch(r.Expr, -1) {
				srcs := resolve(m[1])
				for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
					label, op, value := mm[1], mm[2], mm[3]
					if targetLabels[label] {
						continue
					}
					if err := checkMatcher(families, srcs, label, op, value); err != nil {
						t.Errorf("%s: %s{%s%s%q}: %v", what, m[1], label, op, value, err)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no metric or matcher found in the rules: the parsing above is broken")
	}
	t.Logf("checked %d metric references and matchers against %d exported families", checked, len(families))
}

// baseName maps a histogram's _bucket/_sum/_count series to its family.
func baseName(name string, families map[string]family) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			if f, ok := families[b]; ok && (f.typ == dto.MetricType_HISTOGRAM || f.typ == dto.MetricType_SUMMARY) {
				return b
			}
		}
	}
	return name
}

// checkMatcher reports whether label op value can ever select a series of
// one of the source families.
func checkMatcher(families map[string]family, srcs []string, label, op, value string) error {
	values := map[string]bool{}
	hasLabel := false
	for _, s := range srcs {
		if f, ok := families[s]; ok {
			if vs, ok := f.labels[label]; ok {
				hasLabel = true
				for v := range vs {
					values[v] = true
				}
			}
		}
	}
	if !hasLabel {
		return fmt.Errorf("no series of %v has the label %s", srcs, label)
	}
	var want []string
	switch op {
	case "=", "!=":
		want = []string{value}
	case "=~", "!~":
		if !regexp.MustCompile(`^[a-z0-9_|]+$`).MatchString(value) {
			return nil // a real regular expression: not checked
		}
		want = strings.Split(value, "|")
	}
	for _, v := range want {
		if !values[v] {
			return fmt.Errorf("the server never exports %s=%q (it exports %v)", label, v, keysOf(values))
		}
	}
	return nil
}

// scrapeServer builds cmd/extauthz, runs it and returns its metric families.
func scrapeServer(t *testing.T) map[string]family {
	t.Helper()
	if _, err := os.Stat("../cmd/extauthz"); errors.Is(err, os.ErrNotExist) {
		t.Skip("cmd/extauthz does not exist yet")
	}
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("EXTAUTHZ_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not found and EXTAUTHZ_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server not found")
	}

	dir := shortTempDir(t)
	bin := filepath.Join(dir, "extauthz")
	// With -race when the test runs under it: the build then reuses the
	// packages go test has compiled and only links.
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/extauthz")...)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/extauthz: %v\n%s", err, out)
	}

	sock := startRedis(t, redisServer, dir)
	writeJWKS(t, filepath.Join(dir, "jwks.json"))
	ports := freePorts(t, 3)
	cfgPath := filepath.Join(dir, "config.yaml")
	writeTestConfig(t, configOf(t, load(t, "base")), cfgPath, sock, ports)

	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = envWithout(os.Environ(), "REDIS_PASSWORD")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		if err := <-exited; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("extauthz did not stop cleanly on SIGTERM: %v\n%s", err, logs.String())
		}
	})

	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("extauthz exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get(admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("extauthz not ready after 30s (last: %v)\n%s", errOrStatus(resp, err), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	resp, err := client.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	families := map[string]family{}
	for name, mf := range mfs {
		f := family{typ: mf.GetType(), labels: map[string]map[string]bool{}}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if f.labels[lp.GetName()] == nil {
					f.labels[lp.GetName()] = map[string]bool{}
				}
				f.labels[lp.GetName()][lp.GetValue()] = true
			}
		}
		families[name] = f
	}
	return families
}

func errOrStatus(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// shortTempDir makes a temporary directory with a short path (unix socket
// paths are limited to about 100 bytes).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "k8s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startRedis runs a throw-away redis-server on a unix socket in dir and
// returns the socket's path.
func startRedis(t *testing.T, bin, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			_, err = c.Write([]byte("PING\r\n"))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && rerr == nil && strings.HasPrefix(line, "+PONG") {
				return sock
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer PING within 10s\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeJWKS writes a JWKS with one fresh P-256 public key.
func writeJWKS(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k8s-test",
		"x": b64(pub[1:33]), "y": b64(pub[33:]),
	}}}
	data, err := json.Marshal(jwks)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// writeTestConfig turns the shipped configuration into one that runs on
// this machine: loopback ports, the local JWKS file instead of the IdP's
// URL, the throw-away Redis, and no shutdown delay. Everything else (routes,
// roles, timeouts) is what the cluster runs.
func writeTestConfig(t *testing.T, shipped []byte, path, redisSock string, ports []int) {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(shipped, &cfg); err != nil {
		t.Fatal(err)
	}
	// The shipped listeners on loopback ports; one turned off stays off.
	shippedListen, _ := cfg["listen"].(map[string]any)
	listen := map[string]any{}
	for i, name := range []string{"grpc", "http", "admin"} {
		listen[name] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		if addr, set := shippedListen[name]; set && addr == "" {
			listen[name] = ""
		}
	}
	cfg["listen"] = listen
	server, _ := cfg["server"].(map[string]any)
	if server == nil {
		server = map[string]any{}
		cfg["server"] = server
	}
	server["shutdown_delay"] = "0s"
	jwt, _ := cfg["jwt"].(map[string]any)
	providers, _ := jwt["providers"].([]any)
	if len(providers) == 0 {
		t.Fatal("the shipped config has no jwt.providers")
	}
	for _, p := range providers {
		pm := p.(map[string]any)
		delete(pm, "jwks_url")
		delete(pm, "discovery")
		delete(pm, "refresh_interval")
		pm["jwks_file"] = filepath.Join(filepath.Dir(path), "jwks.json")
	}
	keys, _ := cfg["api_keys"].(map[string]any)
	redis, _ := keys["redis"].(map[string]any)
	if redis == nil {
		t.Fatal("the shipped config has no api_keys.redis")
	}
	redis["addrs"] = []string{"unix://" + redisSock}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func envWithout(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}

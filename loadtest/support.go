package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// clients are the connections to one server.
type clients struct{ conns []*grpc.ClientConn }

// dial opens n connections to addr and waits until each is ready.
func dial(ctx context.Context, addr string, n int) (*clients, error) {
	c := &clients{}
	for range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, conn)
		conn.Connect()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			if !conn.WaitForStateChange(wctx, s) {
				cancel()
				c.close()
				return nil, fmt.Errorf("connect to %s: still %s after 5s", addr, s)
			}
		}
		cancel()
	}
	return c, nil
}

func (c *clients) close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// createKey runs `extauthz keys create` and returns the secret; with revoke
// the key is revoked at once (for the denial mix).
func createKey(ctx context.Context, bin, cfg, owner, groups string, revoke bool) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "keys", "create", "--config", cfg, "--owner", owner, "--groups", groups, "--json").Output()
	if err != nil {
		return "", fmt.Errorf("extauthz keys create: %w%s", err, stderrOf(err))
	}
	var v struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Key == "" {
		return "", fmt.Errorf("extauthz keys create: unexpected output (%v)", err)
	}
	if revoke {
		if out, err := exec.CommandContext(ctx, bin, "keys", "revoke", "--config", cfg, v.ID).CombinedOutput(); err != nil {
			return "", fmt.Errorf("extauthz keys revoke: %w: %s", err, out)
		}
	}
	return v.Key, nil
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

func lookRedis() (string, error) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found (-redis=off uses the embedded key store): %w", err)
	}
	return p, nil
}

// startRedis starts a redis-server of our own on a unix socket in dir (no
// TCP port, no persistence), on the load generator's CPU: it is only asked
// when a key is not cached.
func startRedis(ctx context.Context, pin pinner, bin, dir string) (*process, string, error) {
	sock := filepath.Join(dir, "redis.sock")
	p, err := start("redis-server", pin.command(1, bin,
		"--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir), filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return p, sock, nil
		}
		select {
		case <-p.exited:
			return nil, "", fmt.Errorf("redis-server exited: %s", p.tail())
		case <-ctx.Done():
			p.stop()
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("redis-server did not create %s within 5s", sock)
		}
	}
}

// profile fetches a CPU profile of d from extauthz's admin port in the
// background; the returned function waits for it and writes it to path.
func profile(ctx context.Context, admin string, d time.Duration, path string) func() error {
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			secs := max(1, int(d.Round(time.Second)/time.Second))
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("pprof: %s: %s", resp.Status, bytes.TrimSpace(b))
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			logf("  wrote %s", path)
			return f.Close()
		}()
	}()
	return func() error { return <-errc }
}

// side aggregates one server's runs of one scenario.
type side struct {
	rps           []float64 // per round
	lat           []time.Duration
	checks        int
	errors, wrong int
	denied        int
	cpu, elapsed  time.Duration
	cpuKnown      bool
}

func (s *side) add(r result) {
	s.rps = append(s.rps, r.rps())
	s.lat = append(s.lat, r.lat...)
	s.checks += r.checks
	s.errors += r.errors
	s.wrong += r.wrong
	s.denied += r.denied
	s.cpu += r.cpu
	s.elapsed += r.elapsed
	s.cpuKnown = r.cpuKnown && (s.cpuKnown || len(s.rps) == 1)
}

func (s *side) cpuPerCheck() time.Duration {
	if !s.cpuKnown || s.checks == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.checks)
}

// busy is the fraction of one CPU the server used while measured: near 1
// means the server was the bottleneck, well below 1 the load generator or
// the neighbours were.
func (s *side) busy() float64 {
	if !s.cpuKnown || s.elapsed == 0 {
		return 0
	}
	return s.cpu.Seconds() / s.elapsed.Seconds()
}

// row is one scenario: the floor and extauthz.
type row struct {
	s          scenario
	floor, ext side
	ratios     []float64 // extauthz/floor throughput, per round
}

func (r *row) add(ext bool, res result) {
	if ext {
		r.ext.add(res)
	} else {
		r.floor.add(res)
	}
	if n := len(r.ext.rps); n == len(r.floor.rps) && n > len(r.ratios) {
		r.ratios = append(r.ratios, r.ext.rps[n-1]/r.floor.rps[n-1])
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

// printTable writes the result table (and what each scenario is).
func printTable(w io.Writer, o *options, rows []row) {
	header := []string{"scenario", "server", "checks/s", "p50", "p99", "errors", "wrong", "denied", "cpu/check", "cpu busy", "rps vs floor", "cpu vs floor"}
	var lines [][]string
	for _, r := range rows {
		slices.SortFunc(r.floor.lat, func(a, b time.Duration) int { return int(a - b) })
		slices.SortFunc(r.ext.lat, func(a, b time.Duration) int { return int(a - b) })
		for _, sd := range []struct {
			name string
			s    *side
		}{{"floor", &r.floor}, {"extauthz", &r.ext}} {
			wrong, rpsRatio, cpuRatio := "-", "", ""
			if sd.name == "extauthz" {
				wrong = fmt.Sprint(sd.s.wrong)
				rpsRatio = fmt.Sprintf("%.2f×", median(r.ratios))
				if f := r.floor.cpuPerCheck(); f > 0 && sd.s.cpuPerCheck() > 0 {
					cpuRatio = fmt.Sprintf("%.2f×", float64(sd.s.cpuPerCheck())/float64(f))
				}
			}
			busy := "-"
			if b := sd.s.busy(); b > 0 {
				busy = fmt.Sprintf("%.0f%%", 100*b)
			}
			lines = append(lines, []string{
				r.s.name, sd.name, fmt.Sprintf("%.0f", median(sd.s.rps)),
				fmtDur(percentile(sd.s.lat, 0.50)), fmtDur(percentile(sd.s.lat, 0.99)),
				fmt.Sprint(sd.s.errors), wrong, fmt.Sprint(sd.s.denied),
				fmtDur(sd.s.cpuPerCheck()), busy, rpsRatio, cpuRatio,
			})
		}
	}
	gogc := o.gogc
	if gogc == "" {
		gogc = "inherited"
		if v := os.Getenv("GOGC"); v != "" {
			gogc += " (" + v + ")"
		}
	}
	fmt.Fprintf(w, "\n%d round(s) of %s per server and scenario; %d connections x %d callers; GOGC of the servers %s; checks/s is the median over rounds, rps vs floor the median of the per-round ratios\n\n",
		o.rounds, o.duration, o.conns, o.concurrency, gogc)
	if o.markdown {
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
		for _, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
		for _, l := range lines {
			fmt.Fprintln(tw, strings.Join(l, "\t")+"\t")
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "  %-22s %s\n", r.s.name, r.s.about)
	}
}

// cacheCounters returns the non-zero cache and lookup counters of an
// extauthz (token cache hits and misses, API-key lookups by source and
// result), so the table can show which caches answered.
func cacheCounters(ctx context.Context, admin string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "extauthz_token_cache_") && !strings.HasPrefix(line, "extauthz_apikey_lookups_total{") {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 && f[1] != "0" {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return out, nil
}

// Command loadtest measures extauthz end to end against a do-nothing
// ext_authz server (the floor, loadtest/floor) under the same closed-loop
// gRPC load, and prints how close extauthz comes to the floor.
//
//	make loadtest                            # full run, a few minutes
//	make loadtest LOADTEST_ARGS=-short       # under 30 seconds
//	go run ./loadtest -duration 10s -rounds 5 -concurrency 64
//
// It builds bin-less: `go build` of ./cmd/extauthz and ./loadtest/floor into
// a temporary directory (or uses -bin), mints development JWTs with
// examples/dev/private.pem, creates API keys with `extauthz keys create`
// (in a redis-server of its own on a unix socket when one is installed, else
// in the embedded store), and starts the floor and extauthz on free
// 127.0.0.1 ports. With taskset available (-pin, the default) every server
// runs on CPU 0 and the load generator on CPU 1, so each server has one core
// of its own and the client cannot steal it.
//
// Each round runs every scenario against the floor and against extauthz,
// back to back (the order alternates between rounds), with a warm-up before
// each measurement. The table reports the median throughput over the
// rounds, latency percentiles over all measured checks, RPC errors (which
// must be zero), denials, wrong answers (an allow where a denial was due or
// the reverse; extauthz only), the server CPU time per check (from
// /proc/PID/task/*/schedstat), and the ratios to the floor. On a shared
// machine the throughput of both sides moves with the neighbours' load; the
// ratios of adjacent runs, and CPU time per check, move much less.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	conns       int
	concurrency int
	tokens      int
	scenarios   string
	sampleRate  float64
	bin         string
	floorBin    string
	redis       string
	pin         bool
	short       bool
	profileDir  string
	markdown    bool
	keep        bool
	gogc        string
}

var logOut io.Writer = os.Stderr

func logf(format string, a ...any) { fmt.Fprintf(logOut, format+"\n", a...) }

const (
	fullScenarios  = "jwt_cached,jwt_distinct,api_key,mix_10pct_denials,jwt_distinct_overflow,jwt_cached_log_all"
	shortScenarios = "jwt_cached,jwt_distinct,api_key,mix_10pct_denials"
)

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measurement per run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each measurement")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every scenario on the floor and on extauthz")
	fs.IntVar(&o.conns, "conns", 4, "gRPC connections per server (Envoy opens one per worker thread)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent callers, spread over the connections")
	fs.IntVar(&o.tokens, "tokens", 10000, "distinct JWTs of jwt_distinct")
	fs.StringVar(&o.scenarios, "scenarios", fullScenarios, "comma-separated scenarios to run")
	fs.Float64Var(&o.sampleRate, "allow-sample-rate", 0.01, "log.allow_sample_rate of extauthz (denials are always logged; jwt_cached_log_all uses 1)")
	fs.StringVar(&o.bin, "bin", "", "extauthz binary to measure (default: go build ./cmd/extauthz)")
	fs.StringVar(&o.floorBin, "floor-bin", "", "floor binary (default: go build ./loadtest/floor)")
	fs.StringVar(&o.redis, "redis", "auto", "API keys in a redis-server of our own: auto (when installed), on, off (embedded store)")
	fs.BoolVar(&o.pin, "pin", true, "pin servers to CPU 0 and this load generator to CPU 1 with taskset")
	fs.BoolVar(&o.short, "short", false, "quick run (under 30s): 1 round of 1s, 1000 tokens, the four main scenarios")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU profiles (last round, from /debug/pprof) into this directory: extauthz per scenario, and the floor")
	fs.BoolVar(&o.markdown, "markdown", false, "print the table as Markdown")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, server logs)")
	fs.StringVar(&o.gogc, "gogc", "", "GOGC of both servers (default: inherited, normally 100)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("duration", func() { o.duration = time.Second })
		def("warmup", func() { o.warmup = 300 * time.Millisecond })
		def("rounds", func() { o.rounds = 1 })
		def("tokens", func() { o.tokens = 1000 })
		def("scenarios", func() { o.scenarios = shortScenarios })
	}
	switch {
	case o.duration <= 0 || o.warmup < 0 || o.rounds < 1 || o.conns < 1 || o.concurrency < 1 || o.tokens < 1:
		return nil, fmt.Errorf("-duration, -rounds, -conns, -concurrency and -tokens must be positive")
	case o.sampleRate < 0 || o.sampleRate > 1:
		return nil, fmt.Errorf("-allow-sample-rate must be within 0..1")
	case o.redis != "auto" && o.redis != "on" && o.redis != "off":
		return nil, fmt.Errorf("-redis must be auto, on or off")
	}
	return o, nil
}

// run is main without the exit, for the test: 0 when every check was
// answered without an RPC error or a wrong decision, 1 otherwise, 2 for bad
// flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	logOut = stderr
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "loadtest: %s\n", err)
		}
		return 2
	}
	rows, err := measure(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %s\n", err)
		return 1
	}
	printTable(stdout, o, rows)
	for _, r := range rows {
		if r.floor.errors+r.ext.errors+r.ext.wrong > 0 {
			fmt.Fprintln(stderr, "loadtest: FAILED: RPC errors or wrong decisions (see the table)")
			return 1
		}
	}
	return 0
}

// target is one running server and the client connections to it.
type target struct {
	name string
	proc *process
	addr string
	adm  string // admin address (extauthz only)
	cl   *clients
}

// measure sets everything up, runs the rounds and tears everything down.
func measure(ctx context.Context, o *options) ([]row, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "extauthz-loadtest-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	// Build.
	bin, floorBin := o.bin, o.floorBin
	if bin == "" {
		logf("building ./cmd/extauthz and ./loadtest/floor ...")
		if bin, err = build(ctx, root, tmp, "./cmd/extauthz", "extauthz"); err != nil {
			return nil, err
		}
	}
	if floorBin == "" {
		if floorBin, err = build(ctx, root, tmp, "./loadtest/floor", "floor"); err != nil {
			return nil, err
		}
	}

	// Tokens, minted on every CPU before this process is pinned.
	dev := filepath.Join(root, "examples", "dev")
	sg, err := loadSigner(filepath.Join(dev, "private.pem"), filepath.Join(dev, "jwks.json"))
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, s := range strings.Split(o.scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			wanted[s] = true
		}
	}
	nDistinct := 0
	if wanted["jwt_distinct"] || wanted["jwt_distinct_overflow"] {
		nDistinct = o.tokens
	}
	t0 := time.Now()
	distinct, err := sg.tokens(nDistinct, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, fmt.Errorf("mint tokens: %w", err)
	}
	var mixUsers []string
	for i := range 10 {
		t, err := sg.token(fmt.Sprintf("mix-%d", i), []string{"eng"})
		if err != nil {
			return nil, err
		}
		mixUsers = append(mixUsers, t)
	}
	viewer, err := sg.token("viewer-only", nil) // no group: viewer, not allowed to chat
	if err != nil {
		return nil, err
	}
	if nDistinct > 0 {
		logf("minted %d RS256 tokens in %s", nDistinct, time.Since(t0).Round(time.Millisecond))
	}

	pin := newPinner(o.pin)
	pin.gogc = o.gogc
	var procs []*process
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()

	// API keys: a redis-server of our own, or the embedded store.
	redisSocket := ""
	if o.redis != "off" {
		if path, lerr := lookRedis(); lerr == nil {
			p, sock, err := startRedis(ctx, pin, path, tmp)
			if err != nil {
				return nil, err
			}
			procs = append(procs, p)
			redisSocket = sock
		} else if o.redis == "on" {
			return nil, lerr
		}
	}
	keysSection := keysYAML(redisSocket, filepath.Join(tmp, "keys.json"))
	store := "embedded store"
	if redisSocket != "" {
		store = "redis-server on a unix socket"
	}

	variants := map[string]variant{
		"default": {name: "default", sampleRate: o.sampleRate, cacheEntries: max(2*o.tokens, 10000)},
		"log_all": {name: "log_all", sampleRate: 1, cacheEntries: max(2*o.tokens, 10000)},
		"small":   {name: "small", sampleRate: o.sampleRate, cacheEntries: max(o.tokens/2, 1)},
	}
	writeConfig := func(v variant, grpcAddr, adminAddr string) (string, error) {
		path := filepath.Join(tmp, "config-"+v.name+".yaml")
		cfg := configYAML(v, grpcAddr, adminAddr, filepath.Join(dev, "jwks.json"), keysSection)
		return path, os.WriteFile(path, []byte(cfg), 0o600)
	}
	keyCfg, err := writeConfig(variants["default"], "127.0.0.1:1", "")
	if err != nil {
		return nil, err
	}
	apiKey, err := createKey(ctx, bin, keyCfg, "loadtest", "eng", false)
	if err != nil {
		return nil, err
	}
	revokedKey, err := createKey(ctx, bin, keyCfg, "revoked", "eng", true)
	if err != nil {
		return nil, err
	}

	// Scenarios.
	var all []scenario
	one := checkRequest(0, "authorization", "Bearer "+mixUsers[0])
	all = append(all, scenario{name: "jwt_cached", variant: "default",
		about: "one JWT, verified once then served from the token cache",
		reqs:  []request{newRequest(one, true)}})
	if nDistinct > 0 {
		reqs := make([]request, len(distinct))
		for i, t := range distinct {
			reqs[i] = newRequest(checkRequest(i, "authorization", "Bearer "+t), true)
		}
		all = append(all,
			scenario{name: "jwt_distinct", variant: "default", reqs: reqs,
				about: fmt.Sprintf("%d distinct JWTs in turn; jwt.cache.max_entries %d holds them all", len(reqs), variants["default"].cacheEntries)},
			scenario{name: "jwt_distinct_overflow", variant: "small", reqs: reqs,
				about: fmt.Sprintf("the same %d JWTs with max_entries %d: the LRU never hits, every check verifies RS256", len(reqs), variants["small"].cacheEntries)})
	}
	all = append(all, scenario{name: "api_key", variant: "default",
		about: "one API key (" + store + "), served from the positive cache",
		reqs:  []request{newRequest(checkRequest(0, "x-api-key", apiKey), true)}})
	var mix []request
	for i := range 100 {
		var r request
		switch {
		case i%10 == 8:
			r = newRequest(checkRequest(i, "x-api-key", apiKey), true)
		case i%10 != 9:
			r = newRequest(checkRequest(i, "authorization", "Bearer "+mixUsers[i%len(mixUsers)]), true)
		// One in ten is denied, each kind in turn.
		case i%40 == 9:
			r = newRequest(checkRequest(i, "", ""), false) // missing_credentials
		case i%40 == 19:
			r = newRequest(checkRequest(i, "authorization", "Bearer "+viewer), false) // forbidden
		case i%40 == 29:
			r = newRequest(checkRequest(i, "authorization", "Bearer "+badSignature(mixUsers[0])), false) // invalid_token
		default:
			r = newRequest(checkRequest(i, "x-api-key", revokedKey), false) // invalid_api_key (revoked)
		}
		mix = append(mix, r)
	}
	all = append(all, scenario{name: "mix_10pct_denials", variant: "default", reqs: mix,
		about: "10 JWTs and an API key allowed; 10% denied: no credential, forbidden, bad RS256 signature, revoked key"})
	all = append(all, scenario{name: "jwt_cached_log_all", variant: "log_all",
		about: "jwt_cached with log.allow_sample_rate 1: every allowed decision writes its log line (to a file)",
		reqs:  []request{newRequest(one, true)}})
	var scenarios []scenario
	for _, s := range all {
		if wanted[s.name] {
			scenarios = append(scenarios, s)
			delete(wanted, s.name)
		}
	}
	for s := range wanted {
		return nil, fmt.Errorf("unknown scenario %q (known: %s)", s, fullScenarios)
	}
	if len(scenarios) == 0 {
		return nil, fmt.Errorf("no scenario selected")
	}

	// Servers, on CPU 0.
	floorAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	floorAdmin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	fp, err := start("floor", pin.command(0, floorBin, "-listen", floorAddr, "-pprof", floorAdmin), filepath.Join(tmp, "floor.log"))
	if err != nil {
		return nil, err
	}
	procs = append(procs, fp)
	floor := &target{name: "floor", proc: fp, addr: floorAddr, adm: floorAdmin}
	exts := map[string]*target{}
	for _, s := range scenarios {
		if exts[s.variant] != nil {
			continue
		}
		grpcAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		adminAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cfg, err := writeConfig(variants[s.variant], grpcAddr, adminAddr)
		if err != nil {
			return nil, err
		}
		p, err := start("extauthz", pin.command(0, bin, "serve", "--config", cfg), filepath.Join(tmp, "extauthz-"+s.variant+".log"))
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		exts[s.variant] = &target{name: "extauthz", proc: p, addr: grpcAddr, adm: adminAddr}
	}
	for _, t := range append([]*target{floor}, mapValues(exts)...) {
		if err := t.proc.waitServing(ctx, t.addr, 15*time.Second); err != nil {
			return nil, err
		}
	}

	// This process becomes the load generator, on CPU 1.
	if pin.taskset != "" {
		if err := pin.pinSelf(1); err != nil {
			return nil, err
		}
		runtime.GOMAXPROCS(1)
	}
	for _, t := range append([]*target{floor}, mapValues(exts)...) {
		if t.cl, err = dial(ctx, t.addr, o.conns); err != nil {
			return nil, err
		}
		defer t.cl.close()
	}

	pinned := "not pinned (taskset missing or -pin=false)"
	if pin.taskset != "" {
		pinned = "servers on CPU 0, load generator on CPU 1 (taskset)"
	}
	logf("%d CPUs, %s; %d connections x %d callers, %d round(s) of %s (+%s warm-up)",
		runtime.NumCPU(), pinned, o.conns, o.concurrency, o.rounds, o.duration, o.warmup)

	// Prime every cache once.
	for _, s := range scenarios {
		ext := exts[s.variant]
		if errs, wrong, err := prime(ctx, ext.cl.conns, s.reqs, o.concurrency, true); errs+wrong > 0 {
			return nil, fmt.Errorf("%s: priming extauthz: %d RPC errors, %d wrong decisions (%v)", s.name, errs, wrong, err)
		}
	}

	rows := make([]row, len(scenarios))
	for i, s := range scenarios {
		rows[i] = row{s: s}
	}
	for round := range o.rounds {
		for i, s := range scenarios {
			ext := exts[s.variant]
			order := []*target{floor, ext}
			if round%2 == 1 {
				order = []*target{ext, floor}
			}
			for _, t := range order {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				var stopProfile func() error
				if o.profileDir != "" && round == o.rounds-1 && (t == ext || i == 0) {
					// extauthz for every scenario, the floor for the first.
					stopProfile = profile(ctx, t.adm, o.warmup+o.duration, filepath.Join(o.profileDir, s.name+"-"+t.name+".pprof"))
				}
				pid := t.proc.pid()
				res := runLoad(ctx, loadSpec{
					conns: t.cl.conns, reqs: s.reqs, workers: o.concurrency,
					warmup: o.warmup, measure: o.duration, check: t == ext,
					cpu:     func() (time.Duration, bool) { return cpuTime(pid) },
					timeout: 5 * time.Second,
				})
				if stopProfile != nil {
					if err := stopProfile(); err != nil {
						logf("  profile: %v", err)
					}
				}
				rows[i].add(t == ext, res)
				logf("round %d/%d  %-22s %-8s %8.0f checks/s  p99 %-8s cpu/check %-7s busy %3.0f%%  generator busy %3.0f%%  errors %d",
					round+1, o.rounds, s.name, t.name, res.rps(), fmtDur(percentile(res.lat, 0.99)), fmtDur(res.cpuPerCheck()),
					100*res.cpu.Seconds()/res.elapsed.Seconds(), 100*res.genCPU.Seconds()/res.elapsed.Seconds(), res.errors)
			}
		}
	}
	for name, t := range exts {
		counters, err := cacheCounters(ctx, t.adm)
		if err != nil {
			logf("metrics of extauthz (%s): %v", name, err)
			continue
		}
		logf("extauthz (%s config) counters since start, priming included:", name)
		for _, c := range counters {
			logf("  %s", c)
		}
	}
	return rows, nil
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

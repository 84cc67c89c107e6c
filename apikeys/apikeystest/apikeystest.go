// Package apikeystest starts real Redis servers for tests: a standalone
// server on a unix socket (StartRedis, StartServer), a three-master Redis
// Cluster (StartCluster), a Sentinel (StartSentinel), and a proxy that can
// cut one client off (NewProxy).
//
// Every helper needs the redis-server binary. When it is missing the test is
// skipped, unless EXTAUTHZ_REQUIRE_REDIS=1 (set in CI), in which case it
// fails. Everything started is stopped, by process id, in t.Cleanup.
package apikeystest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/logtest"
)

const startTimeout = 10 * time.Second

// RequireRedis skips (or, with EXTAUTHZ_REQUIRE_REDIS=1, fails) the test if
// redis-server is not installed, and returns its path.
func RequireRedis(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("EXTAUTHZ_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not found and EXTAUTHZ_REQUIRE_REDIS=1: %v", err)
		}
		t.Skipf("redis-server not found (set EXTAUTHZ_REQUIRE_REDIS=1 to fail instead): %v", err)
	}
	return path
}

// StartRedis starts a standalone redis-server listening only on a unix socket
// in a short temporary directory, with persistence off, waits until it
// answers PING and returns its address as a "unix:///…/r.sock" URL, which
// api_keys.redis.addrs accepts. The server is killed in t.Cleanup.
func StartRedis(t testing.TB) string {
	t.Helper()
	return StartServer(t).URL()
}

// Server is a redis-server process owned by one test. It can be stopped and
// started again on the same socket, to test outages.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	socket string
	args   []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *logtest.Buffer
	// exited is closed when the current process has exited.
	exited chan struct{}
}

// StartServer is StartRedis returning the Server, for tests that stop and
// restart it.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := RequireRedis(t)
	dir := shortTempDir(t)
	s := &Server{t: t, bin: bin, dir: dir, socket: filepath.Join(dir, "r.sock")}
	s.args = []string{
		"--port", "0",
		"--unixsocket", s.socket,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--dbfilename", "dump.rdb",
		"--daemonize", "no",
		"--loglevel", "warning",
	}
	t.Cleanup(s.kill)
	s.Start()
	return s
}

// URL returns "unix://" + the socket path.
func (s *Server) URL() string { return "unix://" + s.socket }

// Socket returns the socket path.
func (s *Server) Socket() string { return s.socket }

// Start starts the server (again) on the same socket and waits until it
// answers PING. Data saved by Stop is loaded back.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("redis-server already running")
	}
	s.cmd, s.out, s.exited = start(s.t, s.bin, s.args...)
	if err := waitPing(s.exited, &redis.Options{Network: "unix", Addr: s.socket}); err != nil {
		s.killLocked()
		s.t.Fatalf("redis-server on %s: %v\n%s", s.socket, err, s.out.String())
	}
}

// Stop shuts the server down cleanly (SHUTDOWN SAVE), so the next Start has
// the same data, and waits until the process has exited and the socket is
// gone: clients then see connection errors.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.socket, MaxRetries: -1})
	_ = c.ShutdownSave(context.Background()).Err() // the connection closes: an error is expected
	_ = c.Close()
	select {
	case <-s.exited:
	case <-time.After(startTimeout):
		s.t.Errorf("redis-server did not shut down; killing it")
	}
	s.killLocked()
}

// Kill kills the server at once (SIGKILL); data written since the last Stop
// is lost.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) kill() { s.Kill() }

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	_ = os.Remove(s.socket)
}

// Client returns a go-redis client of the server, closed in t.Cleanup, for
// inspecting or changing data behind the store's back.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.socket})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start runs a redis-server and returns it with its output and a channel
// closed when it exits.
func start(t testing.TB, bin string, args ...string) (*exec.Cmd, *logtest.Buffer, chan struct{}) {
	t.Helper()
	out := &logtest.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return cmd, out, exited
}

// waitPing waits until a server answers PING, or exits, or startTimeout.
func waitPing(exited <-chan struct{}, opt *redis.Options) error {
	opt.MaxRetries = -1
	opt.DialTimeout = 200 * time.Millisecond
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within %s: %w", startTimeout, err)
}

// shortTempDir returns a fresh directory under the system temp dir with a
// short path (unix socket paths are limited to about 100 bytes), removed in
// t.Cleanup.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rds")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// StartCluster starts a Redis Cluster of three masters (no replicas) on free
// loopback TCP ports, assigns the 16384 slots, waits until every node reports
// cluster_state:ok and knows the others, and returns the nodes' host:port
// addresses (api_keys.redis.addrs). The nodes are killed in t.Cleanup.
func StartCluster(t testing.TB) []string {
	t.Helper()
	bin := RequireRedis(t)
	dir := shortTempDir(t)
	ports := freePorts(t, 6) // 3 client ports, 3 cluster-bus ports
	addrs := make([]string, 3)
	clients := make([]*redis.Client, 3)
	for i := range 3 {
		port, bus := ports[i], ports[3+i]
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd, out, exited := start(t, bin,
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
			"--cluster-node-timeout", "2000",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--daemonize", "no",
			"--loglevel", "warning",
		)
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		if err := waitPing(exited, &redis.Options{Addr: addrs[i]}); err != nil {
			t.Fatalf("cluster node %s: %v\n%s", addrs[i], err, out.String())
		}
		clients[i] = redis.NewClient(&redis.Options{Addr: addrs[i]})
		t.Cleanup(func() { _ = clients[i].Close() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 16384
	for i, c := range clients {
		lo, hi := i*slots/3, (i+1)*slots/3
		args := make([]any, 0, 2+hi-lo)
		args = append(args, "cluster", "addslots")
		for s := lo; s < hi; s++ {
			args = append(args, s)
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("cluster addslots on %s: %v", addrs[i], err)
		}
	}
	for i := 1; i < 3; i++ {
		// The bus port is not the default port+10000: name it.
		if err := clients[0].Do(ctx, "cluster", "meet", "127.0.0.1", ports[i], ports[3+i]).Err(); err != nil {
			t.Fatalf("cluster meet %s: %v", addrs[i], err)
		}
	}
	for {
		ready := true
		for _, c := range clients {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ready = false
				break
			}
			nodes, err := c.ClusterNodes(ctx).Result()
			if err != nil || strings.Count(nodes, "master") != 3 || strings.Contains(nodes, "handshake") {
				ready = false
				break
			}
		}
		if ready {
			return addrs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redis cluster did not become ready: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartSentinel starts a master redis-server and one Sentinel monitoring it
// (quorum 1) on free loopback TCP ports, waits until the Sentinel reports the
// master, and returns the Sentinel's address (api_keys.redis.addrs) and the
// master name (api_keys.redis.master_name). Both are killed in t.Cleanup.
func StartSentinel(t testing.TB) (sentinelAddr, masterName string) {
	t.Helper()
	bin := RequireRedis(t)
	dir := shortTempDir(t)
	ports := freePorts(t, 2)
	masterAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	sentinelAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	masterName = "extauthz-test"

	cmd, out, exited := start(t, bin,
		"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if err := waitPing(exited, &redis.Options{Addr: masterAddr}); err != nil {
		t.Fatalf("sentinel master %s: %v\n%s", masterAddr, err, out.String())
	}

	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		ports[1], dir, masterName, ports[0], masterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatalf("sentinel config: %v", err)
	}
	scmd, sout, sexited := start(t, bin, conf, "--sentinel")
	t.Cleanup(func() {
		_ = scmd.Process.Kill()
		<-sexited
	})
	if err := waitPing(sexited, &redis.Options{Addr: sentinelAddr}); err != nil {
		t.Fatalf("sentinel %s: %v\n%s", sentinelAddr, err, sout.String())
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr})
	defer sc.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		cancel()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == masterAddr {
			return sentinelAddr, masterName
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not report master %s: %v %v\n%s", masterName, addr, err, sout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

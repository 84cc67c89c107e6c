package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// moduleRoot returns the directory of the extauthz go.mod, so the tool works
// from any directory of the module.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the extauthz module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// build compiles pkg (relative to root) into dir and returns the binary.
func build(ctx context.Context, root, dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.String())
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

// pinner runs processes on one CPU with taskset, when it is available and
// pinning is on.
type pinner struct {
	taskset string // "" when not pinning
	gogc    string // GOGC of the servers; "" inherits this process's
}

func newPinner(on bool) pinner {
	if !on {
		return pinner{}
	}
	p, err := exec.LookPath("taskset")
	if err != nil {
		return pinner{}
	}
	return pinner{taskset: p}
}

// command returns the command running bin with args, on cpu when pinning.
// taskset execs bin, so the process keeps the PID the command reports.
func (p pinner) command(cpu int, bin string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if p.taskset == "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command(p.taskset, append([]string{"-c", strconv.Itoa(cpu), bin}, args...)...)
	}
	if p.gogc != "" {
		cmd.Env = append(os.Environ(), "GOGC="+p.gogc)
	}
	return cmd
}

// pinSelf moves every thread of this process to cpu.
func (p pinner) pinSelf(cpu int) error {
	if p.taskset == "" {
		return nil
	}
	out, err := exec.Command(p.taskset, "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %w: %s", err, out)
	}
	return nil
}

// process is a child process this tool started; stop ends it by PID.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string // file holding its stdout and stderr
	exited chan struct{}
	err    error
}

// start runs cmd with its output in logPath.
func start(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 10s, then kills.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last lines of the process's output, for error messages.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// waitServing waits until the gRPC health service at addr reports SERVING.
func (p *process) waitServing(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not serving on %s within %s (last: %v):\n%s", p.name, addr, timeout, err, p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuTime returns the CPU time the process has used so far: the sum over
// its threads of /proc/PID/task/TID/schedstat (nanoseconds on a CPU). ok is
// false where that is not available.
func cpuTime(pid int) (time.Duration, bool) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread just exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		total += ns
	}
	return time.Duration(total), true
}

package apikeystest

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// Proxy forwards connections from its own unix socket to a Redis unix
// socket, and can cut them: one client (say, one replica) loses Redis while
// every other client keeps it. Close it with t.Cleanup (done by NewProxy).
type Proxy struct {
	socket string
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to the Redis server at target (a socket path or a
// unix:// URL) and returns it. Point a client at Proxy.URL.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	if len(target) > len("unix://") && target[:len("unix://")] == "unix://" {
		target = target[len("unix://"):]
	}
	socket := filepath.Join(shortTempDir(t), "p.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{socket: socket, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL returns "unix://" + the proxy's socket path.
func (p *Proxy) URL() string { return "unix://" + p.socket }

// Cut closes every proxied connection and refuses new ones (they are
// accepted and closed at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

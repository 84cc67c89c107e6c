package apikeys_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/apikeys/apikeystest"
)

// startTLSRedis starts a redis-server that listens only on TLS on a free
// loopback port, with a server certificate issued for 127.0.0.1 by a fresh
// CA, and returns its address and the CA's PEM file. The server is killed,
// by process id, in t.Cleanup.
func startTLSRedis(t *testing.T) (addr, caFile string) {
	t.Helper()
	bin := apikeystest.RequireRedis(t)
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile = write("ca.pem", "CERTIFICATE", caDER)
	certFile := write("redis.crt", "CERTIFICATE", der)
	keyFile := write("redis.key", "PRIVATE KEY", keyDER)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr, caFile
		}
		select {
		case <-exited:
			t.Fatalf("redis-server with TLS exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server with TLS did not answer within 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStore_RedisTLS: with api_keys.redis.tls and the server's CA in
// ca_file, the store works over TLS; without the CA the server is not
// trusted, and without tls the plaintext connection fails: in both cases
// the store is unavailable (503, never an allow) rather than insecure.
func TestStore_RedisTLS(t *testing.T) {
	addr, caFile := startTLSRedis(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		tls     bool
		caFile  string
		wantErr error
	}{
		{"tls with the server's CA", true, caFile, nil},
		{"tls without the CA: not trusted", true, "", apikeys.ErrUnavailable},
		{"plaintext to the TLS port", false, "", apikeys.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apikeys.Default()
			cfg.Redis = &apikeys.RedisConfig{Addrs: []string{addr}, TLS: tc.tls, CAFile: tc.caFile, Timeout: 500 * time.Millisecond}
			s, err := apikeys.New(ctx, cfg, apikeys.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Ping(ctx); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Ping = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			key, _, err := s.Create(ctx, apikeys.CreateOptions{Owner: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := s.Lookup(ctx, key); err != nil || rec.Owner != "alice" {
				t.Errorf("Lookup over TLS = %v, %v", rec, err)
			}
		})
	}
}

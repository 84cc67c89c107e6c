package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for cn with the given SANs.
func (ca *testCA) issue(t *testing.T, cn string, serial int64, spiffe string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if spiffe != "" {
		u, _ := url.Parse(spiffe)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestServe_MutualTLS(t *testing.T) {
	ca := newTestCA(t)
	cfgPath := devConfig(t, defaultPolicy, "")
	dir := filepath.Dir(cfgPath)
	srvCert, srvKey := ca.issue(t, "extauthz", 10, "", true)
	writeFile(t, filepath.Join(dir, "tls.crt"), srvCert)
	writeFile(t, filepath.Join(dir, "tls.key"), srvKey)
	writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
	b, _ := os.ReadFile(cfgPath)
	y := strings.Replace(string(b), "listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0, admin: 127.0.0.1:0}",
		`listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
  tls:
    cert_file: tls.crt
    key_file: tls.key
    client_ca_file: ca.crt
    allowed_clients: ["spiffe://cluster.local/ns/istio-system/sa/*"]
    reload_interval: 1s`, 1)
	if err := os.WriteFile(cfgPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, cfgPath)
	p.waitReady(t)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	clientCert := func(spiffe string, serial int64) []tls.Certificate {
		c, k := ca.issue(t, "client", serial, spiffe, false)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pair}
	}
	otherCA := newTestCA(t)
	foreign, foreignKey := otherCA.issue(t, "client", 99, "spiffe://cluster.local/ns/istio-system/sa/gateway", false)
	foreignPair, _ := tls.X509KeyPair(foreign, foreignKey)

	check := func(certs []tls.Certificate) (*tls.ConnectionState, error) {
		var state *tls.ConnectionState
		cfg := &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1",
			VerifyConnection: func(cs tls.ConnectionState) error { state = &cs; return nil }}
		conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = authv3.NewAuthorizationClient(conn).Check(ctx, checkReq("GET", "/healthz", nil))
		return state, err
	}
	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{"allowed SPIFFE ID", clientCert("spiffe://cluster.local/ns/istio-system/sa/ingressgateway", 20), true},
		{"SPIFFE ID outside the allow-list", clientCert("spiffe://cluster.local/ns/default/sa/attacker", 21), false},
		{"no client certificate", nil, false},
		{"certificate from another CA", []tls.Certificate{foreignPair}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := check(tt.certs)
			if (err == nil) != tt.wantOK {
				t.Errorf("Check err = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}

	// The HTTP listener is TLS with the same policy.
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: clientCert("spiffe://cluster.local/ns/istio-system/sa/ingressgateway", 22)}}}
	req, err := http.NewRequest("GET", "https://"+p.http+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-forwarded-method", "GET")
	req.Header.Set("x-forwarded-uri", "/healthz")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("HTTPS check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS check status %d, want 200", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + p.http + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}

	// Rotating the certificate files is picked up without a restart.
	newCert, newKey := ca.issue(t, "extauthz", 11, "", true)
	writeFile(t, filepath.Join(dir, "tls.key"), newKey)
	writeFile(t, filepath.Join(dir, "tls.crt"), newCert)
	good := clientCert("spiffe://cluster.local/ns/istio-system/sa/ingressgateway", 23)
	var rotErr error
	if !eventually(10*time.Second, func() bool {
		var st *tls.ConnectionState
		st, rotErr = check(good)
		return rotErr == nil && st != nil && st.PeerCertificates[0].SerialNumber.Int64() == 11
	}) {
		t.Fatalf("rotated certificate not served within 10s (err %v)", rotErr)
	}
	p.waitLog(t, "tls: certificate reloaded")
}

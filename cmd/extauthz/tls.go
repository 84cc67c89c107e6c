package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/secretfile"
)

// serverTLS serves the check listeners' certificate and client CAs from
// files, reloading them when they change so that a rotated certificate
// (cert-manager, Istio, a mounted Secret) is picked up without a restart.
type serverTLS struct {
	cfg    config.TLS
	logger *slog.Logger

	mu        sync.Mutex
	checked   time.Time
	stamp     string // mtimes and sizes of the files at the last load
	cert      *tls.Certificate
	clientCAs *x509.CertPool
}

func newServerTLS(cfg config.TLS, logger *slog.Logger) (*serverTLS, error) {
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 10 * time.Second
	}
	s := &serverTLS{cfg: cfg, logger: logger}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// config returns the tls.Config for a listener speaking protos (ALPN).
func (s *serverTLS) config(protos []string) *tls.Config {
	min := uint16(tls.VersionTLS12)
	if s.cfg.MinVersion == "1.3" {
		min = tls.VersionTLS13
	}
	base := &tls.Config{MinVersion: min, NextProtos: protos}
	return &tls.Config{
		MinVersion: min,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			c := base.Clone()
			c.Certificates = []tls.Certificate{*cert}
			if pool != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = pool
				c.VerifyConnection = s.verifyClient
			}
			return c, nil
		},
	}
}

// current returns the certificate and client CAs, reloading the files when
// the reload interval has passed and they changed. A file that fails to load
// keeps the previous, working material.
func (s *serverTLS) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) >= s.cfg.ReloadInterval {
		s.checked = time.Now()
		if st := s.fileStamp(); st != s.stamp {
			if err := s.loadLocked(); err != nil {
				s.logger.Error("tls: reloading certificate failed, keeping the previous one", "err", err)
			} else {
				s.logger.Info("tls: certificate reloaded", "not_after", s.cert.Leaf.NotAfter)
			}
		}
	}
	return s.cert, s.clientCAs
}

func (s *serverTLS) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked = time.Now()
	return s.loadLocked()
}

func (s *serverTLS) loadLocked() error {
	stamp := s.fileStamp()
	certPEM, err := os.ReadFile(s.cfg.CertFile)
	if err != nil {
		return fmt.Errorf("listen.tls.cert_file: %w", err)
	}
	keyPEM, err := secretfile.Read("listen.tls.key_file", s.cfg.KeyFile)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
	}
	var pool *x509.CertPool
	if s.cfg.ClientCAFile != "" {
		b, err := os.ReadFile(s.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("client_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return errors.New("client_ca_file: no PEM certificate found")
		}
	}
	s.cert, s.clientCAs, s.stamp = &cert, pool, stamp
	return nil
}

func (s *serverTLS) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return b.String()
}

// verifyClient enforces allowed_clients on a verified client certificate.
func (s *serverTLS) verifyClient(cs tls.ConnectionState) error {
	if len(s.cfg.AllowedClients) == 0 {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: client certificate required")
	}
	leaf := cs.PeerCertificates[0]
	for _, id := range clientIdentities(leaf) {
		for _, allowed := range s.cfg.AllowedClients {
			if identityMatches(allowed, id) {
				return nil
			}
		}
	}
	return fmt.Errorf("tls: client %q is not in listen.tls.allowed_clients", firstIdentity(leaf))
}

// clientIdentities lists a certificate's URI SANs (SPIFFE IDs), DNS SANs and
// subject common name.
func clientIdentities(c *x509.Certificate) []string {
	var ids []string
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	return ids
}

func firstIdentity(c *x509.Certificate) string {
	if ids := clientIdentities(c); len(ids) > 0 {
		return ids[0]
	}
	return c.Subject.String()
}

// identityMatches compares exactly, or by prefix when allowed ends in *.
func identityMatches(allowed, id string) bool {
	if p, ok := strings.CutSuffix(allowed, "*"); ok {
		return strings.HasPrefix(id, p)
	}
	return allowed == id
}

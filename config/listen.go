package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/extauthz/extauthz/secretfile"
)

// Listen holds the listener addresses (host:port).
type Listen struct {
	GRPC  string `yaml:"grpc"`  // ext_authz v3 gRPC and grpc.health.v1
	HTTP  string `yaml:"http"`  // HTTP forward-auth; empty: off
	Admin string `yaml:"admin"` // /metrics /healthz /readyz; empty: off
	API   string `yaml:"api"`   // key API and token exchange (/v1/keys, /v1/token); empty: off
	// TLS, when CertFile is set, serves the gRPC and HTTP listeners over TLS
	// (the admin listener stays plain, for probes and Prometheus).
	TLS TLS `yaml:"tls"`
}

// TLS configures the check listeners' TLS and, with ClientCAFile, mutual TLS.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain
	KeyFile  string `yaml:"key_file"`  // PEM private key
	// ClientCAFile turns on mTLS: a client must present a certificate that
	// chains to one of these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowedClients, when set, further restricts mTLS clients to these
	// identities: a SPIFFE ID or other URI SAN (spiffe://cluster.local/ns/
	// istio-system/sa/istio-ingressgateway-service-account), a DNS SAN, or
	// the subject common name. A trailing * matches any suffix.
	AllowedClients []string `yaml:"allowed_clients"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ReloadInterval is how often the files are checked for changes (default
	// 10s); a rotated certificate is served without a restart.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Enabled reports whether the check listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// defaultListen returns the listen section before the file is applied.
func defaultListen() Listen {
	return Listen{GRPC: "127.0.0.1:9001", HTTP: "127.0.0.1:9002", Admin: "127.0.0.1:9090"}
}

// Validate reports every problem of the listen section at path.
func (l Listen) Validate(path string) error {
	return errors.Join(
		checkAddr(path+".grpc", l.GRPC, true),
		checkAddr(path+".http", l.HTTP, false),
		checkAddr(path+".admin", l.Admin, false),
		checkAddr(path+".api", l.API, false),
		l.TLS.Validate(path+".tls"),
	)
}

func checkAddr(key, addr string, required bool) error {
	if addr == "" {
		if required {
			return fmt.Errorf("%s: must be set, e.g. 127.0.0.1:9001", key)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%s: %q must be host:port, e.g. 127.0.0.1:9001 or 0.0.0.0:9001 (in a pod)", key, addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%s: %q has an invalid host", key, addr)
	}
	return nil
}

// Validate reports every problem of the listen.tls section at path.
func (t TLS) Validate(path string) error {
	var errs []error
	if t.CertFile == "" {
		if t.KeyFile != "" || t.ClientCAFile != "" || len(t.AllowedClients) > 0 {
			errs = append(errs, fmt.Errorf("%s.cert_file: must be set when key_file, client_ca_file or allowed_clients is", path))
		}
		return errors.Join(errs...)
	}
	if t.KeyFile == "" {
		errs = append(errs, fmt.Errorf("%s.key_file: must be set with cert_file", path))
	}
	for key, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "client_ca_file": t.ClientCAFile} {
		if f == "" {
			continue
		}
		if key == "key_file" {
			// The private key: a small regular file nobody else can write.
			if _, err := secretfile.Read(path+".key_file", f); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %v", path, key, err))
		}
	}
	if len(t.AllowedClients) > 0 && t.ClientCAFile == "" {
		errs = append(errs, fmt.Errorf("%s.allowed_clients: needs client_ca_file (client certificates are only verified with mTLS on)", path))
	}
	for i, c := range t.AllowedClients {
		if c == "" || strings.Contains(strings.TrimSuffix(c, "*"), "*") {
			errs = append(errs, fmt.Errorf("%s.allowed_clients[%d]: %q must be a non-empty identity, optionally ending in *", path, i, c))
		}
	}
	switch t.MinVersion {
	case "", "1.2", "1.3":
	default:
		errs = append(errs, fmt.Errorf("%s.min_version: %q must be 1.2 or 1.3", path, t.MinVersion))
	}
	if t.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("%s.reload_interval: must not be negative, e.g. 10s", path))
	}
	return errors.Join(errs...)
}

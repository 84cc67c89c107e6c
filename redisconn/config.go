package redisconn

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DefaultTimeout is the bound of every Redis call when Config.Timeout is 0.
const DefaultTimeout = 200 * time.Millisecond

// maxTimeout bounds Config.Timeout.
const maxTimeout = 10 * time.Second

// Config is a `redis:` section (api_keys.redis, rate_limits.redis). Zero
// values mean the default.
type Config struct {
	// Addrs with one entry is a standalone server (host:port, a unix socket
	// path, or unix:///path); with several, the seed nodes of a Redis Cluster;
	// with MasterName set, the Sentinels.
	Addrs []string `yaml:"addrs"`
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string `yaml:"master_name"`
	// Username is the ACL user (Redis 6+); empty means "default".
	Username string `yaml:"username"`
	// PasswordFile holds the password (trailing newline ignored). It is read
	// again whenever a new connection is made, so a rotated secret is picked
	// up. When empty, OptionsOverrides.Password is used (the Deps.Password of
	// apikeys and ratelimit; extauthz serve takes it from the environment
	// variable REDIS_PASSWORD).
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (standalone and Sentinel only).
	DB int `yaml:"db"`
	// TLS turns on TLS (1.2 or later) with server verification.
	TLS bool `yaml:"tls"`
	// CAFile is a PEM bundle of CAs to verify the server with instead of the
	// system pool. Requires TLS.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds every Redis call, including dialling (default 200ms).
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the number of connections per node (default: go-redis's,
	// 10 per CPU).
	PoolSize int `yaml:"pool_size"`
}

// ErrNoAddrs is wrapped by the problem Validate reports for an empty Addrs,
// so that a caller can add advice of its own (for example that the section
// may be left out).
var ErrNoAddrs = errors.New("must list at least one address, e.g. [redis:6379]")

// Validate reports every problem of the section, each as "<path>.<key>:
// <rule>, <example>", for example "api_keys.redis.timeout: must be positive
// and at most 10s, e.g. 200ms". path is where the section sits in the
// configuration file ("api_keys.redis"). It returns nil for a valid section.
func (c Config) Validate(path string) []error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, msg)) }
	if len(c.Addrs) == 0 {
		errs = append(errs, fmt.Errorf("%s.addrs: %w", path, ErrNoAddrs))
	}
	unix := 0
	for i, a := range c.Addrs {
		p := fmt.Sprintf("addrs[%d]", i)
		if sock, ok := unixPath(a); ok {
			unix++
			if !strings.HasPrefix(sock, "/") {
				bad(p, fmt.Sprintf("%q must be an absolute socket path, e.g. unix:///run/redis.sock", a))
			}
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" || strings.Contains(a, "://") {
			bad(p, fmt.Sprintf("%q must be host:port, a socket path or unix:///path, e.g. redis:6379", a))
		}
	}
	if unix > 0 && (len(c.Addrs) > 1 || c.MasterName != "") {
		bad("addrs", "a unix socket can only be used alone, for a standalone server")
	}
	if c.DB < 0 {
		bad("db", "must not be negative, e.g. 0")
	}
	if c.DB != 0 && c.Mode() == ModeCluster {
		bad("db", "must be 0 for Redis Cluster (several addrs)")
	}
	if c.CAFile != "" && !c.TLS {
		bad("ca_file", "requires tls: true")
	}
	if c.TLS && unix > 0 {
		bad("tls", "cannot be used with a unix socket")
	}
	if c.Timeout < 0 || c.Timeout > maxTimeout {
		bad("timeout", "must be positive and at most 10s, e.g. 200ms")
	}
	if c.PoolSize < 0 {
		bad("pool_size", "must not be negative (0 means 10 per CPU), e.g. 50")
	}
	return errs
}

// CallTimeout returns Timeout, or DefaultTimeout when it is 0: the bound of
// every Redis call made with the options of Options.
func (c Config) CallTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// The topologies Mode reports.
const (
	ModeStandalone = "standalone"
	ModeSentinel   = "sentinel"
	ModeCluster    = "cluster"
)

// Mode says which topology c selects: ModeSentinel with MasterName set,
// ModeCluster with several addresses, otherwise ModeStandalone. It is meant
// for log lines.
func (c Config) Mode() string {
	switch {
	case c.MasterName != "":
		return ModeSentinel
	case len(c.Addrs) > 1:
		return ModeCluster
	}
	return ModeStandalone
}

// unixPath reports whether addr names a unix socket ("/path" or
// "unix:///path") and returns its path.
func unixPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return p, true
	}
	if strings.HasPrefix(addr, "/") {
		return addr, true
	}
	return "", false
}

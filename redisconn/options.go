package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/secretfile"
)

// minDialTimeout is the least time a dial gets: a new connection costs a
// TCP (and TLS) handshake, which a 100ms call timeout can be too short for
// after a failover. A caller's context deadline still applies.
const minDialTimeout = time.Second

// OptionsOverrides are what differs between the users of one Config. Zero
// values mean the default.
type OptionsOverrides struct {
	// ClientName is sent with CLIENT SETNAME, so that CLIENT LIST shows who
	// holds a connection (default "extauthz").
	ClientName string
	// MaxRetries is how often a failed command is retried on another
	// connection: 0 means once (enough for a connection broken by a Redis
	// restart or failover), -1 means never (for commands that must not run
	// twice, such as a counter update that may already have been applied).
	MaxRetries int
	// Password authenticates when Config.PasswordFile is empty.
	Password string
}

// Options turns c into go-redis options for redis.NewUniversalClient, which
// picks standalone, Sentinel or Cluster as Config.Mode says. Every call is
// bounded by c.CallTimeout: go-redis honours context deadlines
// (ContextTimeoutEnabled) and the socket read, write and pool timeouts equal
// it too; dialling gets at least a second. A password file is read now (an
// unreadable one is an error) and again for every new connection; when a
// later read fails, the last good password is kept.
//
// c should have passed Validate. Errors name the key that caused them
// ("password_file: open /run/pw: no such file or directory"), never a
// password; callers add the section's path.
func Options(c Config, o OptionsOverrides) (*redis.UniversalOptions, error) {
	timeout := c.CallTimeout()
	addrs := make([]string, len(c.Addrs))
	for i, a := range c.Addrs {
		if p, ok := unixPath(a); ok {
			a = p // go-redis dials "unix" for an address starting with "/"
		}
		addrs[i] = a
	}
	name := o.ClientName
	if name == "" {
		name = "extauthz"
	}
	retries := o.MaxRetries
	if retries == 0 {
		retries = 1
	}
	opts := &redis.UniversalOptions{
		Addrs:                 addrs,
		MasterName:            c.MasterName,
		Username:              c.Username,
		DB:                    c.DB,
		ClientName:            name,
		ContextTimeoutEnabled: true,
		DialTimeout:           max(timeout, minDialTimeout), // callers' deadlines still apply
		DialerRetries:         1,                            // fail fast; the caller decides what happens next
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		PoolSize:              c.PoolSize,
		MaxRetries:            retries,
	}
	if c.PasswordFile != "" {
		pw, err := readPassword(c.PasswordFile)
		if err != nil {
			return nil, err // names password_file
		}
		var mu sync.Mutex
		user, file := c.Username, c.PasswordFile
		opts.CredentialsProvider = func() (string, string) {
			mu.Lock()
			defer mu.Unlock()
			if p, err := readPassword(file); err == nil {
				pw = p // picked up by the next connection; on error keep the last good one
			}
			return user, pw
		}
	} else {
		opts.Password = o.Password
	}
	if c.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file: no PEM certificate in %s", c.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLSConfig = tc
	}
	return opts, nil
}

func readPassword(file string) (string, error) {
	b, err := secretfile.Read("password_file", file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

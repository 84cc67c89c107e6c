package ratelimit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// clientOptions turns the connection settings into go-redis options, as the
// apikeys store does for api_keys.redis: every call is bounded by the
// timeout (ContextTimeoutEnabled, socket deadlines), and a password file is
// re-read for every new connection.
//
// Unlike the key store, nothing is retried: a counter update that timed out
// may still have been applied, a retry could count the request twice, and
// on_error decides faster than a second attempt would.
func clientOptions(cfg *RedisConfig, password string) (*redis.UniversalOptions, error) {
	timeout := cfg.timeout()
	addrs := make([]string, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		if p, ok := unixPath(a); ok {
			a = p // go-redis dials "unix" for an address starting with "/"
		}
		addrs[i] = a
	}
	opts := &redis.UniversalOptions{
		Addrs:                 addrs,
		MasterName:            cfg.MasterName,
		Username:              cfg.Username,
		DB:                    cfg.DB,
		ClientName:            "extauthz-ratelimit",
		ContextTimeoutEnabled: true,
		DialTimeout:           max(timeout, minDialTimeout), // callers' deadlines still apply
		DialerRetries:         1,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		PoolSize:              cfg.PoolSize,
		MaxRetries:            -1, // no retries (see above)
	}
	if cfg.PasswordFile != "" {
		pw, err := readPassword(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: redis password_file: %w", err)
		}
		var mu sync.Mutex
		user, file := cfg.Username, cfg.PasswordFile
		opts.CredentialsProvider = func() (string, string) {
			mu.Lock()
			defer mu.Unlock()
			if p, err := readPassword(file); err == nil {
				pw = p // picked up by the next connection; on error keep the last good one
			}
			return user, pw
		}
	} else {
		opts.Password = password
	}
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ratelimit: redis ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ratelimit: redis ca_file: no PEM certificate in %s", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLSConfig = tc
	}
	return opts, nil
}

func readPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

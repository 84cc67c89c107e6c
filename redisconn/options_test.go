package redisconn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/apikeys/apikeystest"
	"github.com/extauthz/extauthz/redisconn"
)

func TestOptions(t *testing.T) {
	// The fields Options decides, without the callbacks and TLS config.
	type view struct {
		Addrs                                               []string
		MasterName, Username, Password, ClientName          string
		DB, PoolSize, MaxRetries, DialerRetries             int
		DialTimeout, ReadTimeout, WriteTimeout, PoolTimeout time.Duration
		ContextTimeoutEnabled, Creds, TLS                   bool
	}
	viewOf := func(o *redis.UniversalOptions) view {
		return view{
			Addrs: o.Addrs, MasterName: o.MasterName, Username: o.Username, Password: o.Password, ClientName: o.ClientName,
			DB: o.DB, PoolSize: o.PoolSize, MaxRetries: o.MaxRetries, DialerRetries: o.DialerRetries,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolTimeout: o.PoolTimeout,
			ContextTimeoutEnabled: o.ContextTimeoutEnabled, Creds: o.CredentialsProvider != nil, TLS: o.TLSConfig != nil,
		}
	}
	ms := 200 * time.Millisecond
	tests := []struct {
		name string
		cfg  redisconn.Config
		o    redisconn.OptionsOverrides
		want view
	}{
		{"defaults: one retry, client name extauthz, dial at least 1s",
			redisconn.Config{Addrs: []string{"redis:6379"}}, redisconn.OptionsOverrides{Password: "from-env"},
			view{Addrs: []string{"redis:6379"}, Password: "from-env", ClientName: "extauthz", MaxRetries: 1, DialerRetries: 1,
				DialTimeout: time.Second, ReadTimeout: ms, WriteTimeout: ms, PoolTimeout: ms, ContextTimeoutEnabled: true}},
		{"unix socket url becomes a path; no retries; own name",
			redisconn.Config{Addrs: []string{"unix:///run/r.sock"}, DB: 3, PoolSize: 7, Timeout: 2 * time.Second},
			redisconn.OptionsOverrides{ClientName: "extauthz-ratelimit", MaxRetries: -1},
			view{Addrs: []string{"/run/r.sock"}, DB: 3, PoolSize: 7, ClientName: "extauthz-ratelimit", MaxRetries: -1, DialerRetries: 1,
				DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, PoolTimeout: 2 * time.Second,
				ContextTimeoutEnabled: true}},
		{"sentinel with ACL user and TLS",
			redisconn.Config{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "main", Username: "extauthz", TLS: true},
			redisconn.OptionsOverrides{MaxRetries: 2},
			view{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "main", Username: "extauthz", ClientName: "extauthz",
				MaxRetries: 2, DialerRetries: 1, DialTimeout: time.Second, ReadTimeout: ms, WriteTimeout: ms, PoolTimeout: ms,
				ContextTimeoutEnabled: true, TLS: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := redisconn.Options(tt.cfg, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, viewOf(o)); diff != "" {
				t.Errorf("Options (-want +got):\n%s", diff)
			}
			if o.TLSConfig != nil && o.TLSConfig.MinVersion != tls.VersionTLS12 {
				t.Errorf("TLS MinVersion = %x, want TLS 1.2", o.TLSConfig.MinVersion)
			}
		})
	}
}

func TestOptions_FileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name   string
		cfg    redisconn.Config
		msg    string
		notExt bool // the error matches fs.ErrNotExist
	}{
		{"unreadable password file", redisconn.Config{Addrs: []string{"r:1"}, PasswordFile: missing}, "password_file: stat " + missing, true},
		{"unreadable CA file", redisconn.Config{Addrs: []string{"r:1"}, TLS: true, CAFile: missing}, "ca_file: open " + missing, true},
		{"CA file without a certificate", redisconn.Config{Addrs: []string{"r:1"}, TLS: true, CAFile: notPEM}, "ca_file: no PEM certificate in " + notPEM, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.Options(tt.cfg, redisconn.OptionsOverrides{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("Options = %v, want an error starting %q", err, tt.msg)
			}
			if errors.Is(err, fs.ErrNotExist) != tt.notExt {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v", err, !tt.notExt)
			}
		})
	}
}

// Against a real Redis: the ACL user and the password file are used, the
// client name is set, and a rotated password file is read again for the next
// connection (the last good password is kept when the file cannot be read).
func TestOptions_PasswordFileIsReadPerConnection(t *testing.T) {
	srv := apikeystest.StartServer(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">first-secret", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(pw, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-secret\n")
	opts, err := redisconn.Options(redisconn.Config{Addrs: []string{srv.URL()}, Username: "app", PasswordFile: pw, Timeout: time.Second},
		redisconn.OptionsOverrides{ClientName: "extauthz-test", Password: "ignored-when-a-file-is-set"})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping with the password file: %v", err)
	}
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "name=extauthz-test") || !strings.Contains(list, "user=app") {
		t.Errorf("CLIENT LIST shows no connection named extauthz-test of user app:\n%s", list)
	}

	// dropConns closes the client's connections on the server side; the next
	// command fails on the dead one and is retried (MaxRetries 0 means one
	// retry) on a new connection, which authenticates afresh.
	dropConns := func() {
		t.Helper()
		if err := admin.Do(ctx, "CLIENT", "KILL", "USER", "app").Err(); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		rotate func()
		ok     bool
	}{
		{"rotated secret is read for the new connection", func() {
			if err := admin.Do(ctx, "ACL", "SETUSER", "app", "resetpass", ">second-secret").Err(); err != nil {
				t.Fatal(err)
			}
			write("second-secret\n")
		}, true},
		{"file gone: the last good secret is kept", func() {
			if err := os.Remove(pw); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"file with a wrong secret: the new connection is refused", func() { write("wrong-secret") }, false},
	}
	for _, st := range steps {
		st.rotate()
		dropConns()
		err := rdb.Ping(ctx).Err()
		if (err == nil) != st.ok {
			t.Errorf("%s: Ping = %v", st.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error %q shows the password", st.name, err)
		}
	}
}

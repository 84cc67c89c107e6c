package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
)

// Server tunes the servers.
type Server struct {
	// CheckTimeout bounds one check; keep it below the proxy's timeout.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// HTTPPathPrefix is removed from HTTP-mode check paths (Envoy
	// http_service path_prefix).
	HTTPPathPrefix string `yaml:"http_path_prefix"`
	// HTTPForwardedHeaders names the one header family the HTTP listener
	// reads the original request from: forwarded (default:
	// x-forwarded-method/-uri/-host, as nginx/extauthz.conf, Traefik and
	// Caddy send), original (x-original-method/-uri, nginx's documentation)
	// or none (the check request itself: Envoy http_service). A check
	// carrying the other family is refused.
	HTTPForwardedHeaders string `yaml:"http_forwarded_headers"`
	// GRPCReflection enables gRPC server reflection (for grpcurl).
	GRPCReflection bool `yaml:"grpc_reflection"`
	// GRPCMaxRecvBytes caps one gRPC message (a CheckRequest with headers,
	// and body when Envoy sends it).
	GRPCMaxRecvBytes int `yaml:"grpc_max_recv_bytes"`
	// MaxHeaderBytes caps the request headers of the HTTP listener.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin listener.
	Pprof bool `yaml:"pprof"`
	// ShutdownDelay is how long readiness reports not-ready on SIGTERM before
	// the listeners stop accepting, so that load balancers move away first.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	// ConfigPollInterval, when set, re-reads the config file at this interval
	// and reloads it when its content changed (for ConfigMap updates);
	// SIGHUP always reloads.
	ConfigPollInterval time.Duration `yaml:"config_poll_interval"`
	// ShutdownTimeout bounds the graceful stop; checks still running then are
	// cut off.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Log configures the JSON log on stdout.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
	// AllowSampleRate is the fraction (0..1) of allowed decisions logged;
	// denials are always logged.
	AllowSampleRate float64 `yaml:"allow_sample_rate"`
	// DenialsPerSecond is how many identical denials (same outcome, reason,
	// route and method) are logged per second; the next line logged says
	// how many were suppressed. 0 logs every denial.
	DenialsPerSecond int `yaml:"denials_per_second"`
}

// defaultServer returns the server section before the file is applied.
func defaultServer() Server {
	return Server{
		CheckTimeout:         authz.DefaultCheckTimeout,
		HTTPForwardedHeaders: authz.ForwardedForwarded,
		GRPCMaxRecvBytes:     4 << 20,
		MaxHeaderBytes:       64 << 10,
		ShutdownTimeout:      15 * time.Second,
	}
}

// defaultLog returns the log section before the file is applied.
func defaultLog() Log {
	return Log{Level: "info", AllowSampleRate: 1, DenialsPerSecond: authz.DefaultDenialLogRate}
}

// Validate reports every problem of the server section at path.
func (s Server) Validate(path string) error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if s.CheckTimeout <= 0 || s.CheckTimeout > 10*time.Second {
		add(fmt.Errorf("%s.check_timeout: %s must be between 1ms and 10s (and below the proxy's ext_authz timeout), e.g. 300ms", path, s.CheckTimeout))
	}
	if p := s.HTTPPathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#")) {
		add(fmt.Errorf("%s.http_path_prefix: %q must start with / and hold no query, e.g. /check", path, p))
	}
	switch s.HTTPForwardedHeaders {
	case authz.ForwardedForwarded, authz.ForwardedOriginal:
		if s.HTTPPathPrefix != "" {
			add(fmt.Errorf("%s.http_path_prefix: is used only with server.http_forwarded_headers: none (Envoy http_service); set that too, or remove the prefix", path))
		}
	case authz.ForwardedNone:
	default:
		add(fmt.Errorf("%s.http_forwarded_headers: %q is not valid: use forwarded (x-forwarded-*: nginx/extauthz.conf, Traefik, Caddy), original (x-original-*) or none (Envoy http_service)", path, s.HTTPForwardedHeaders))
	}
	if n := s.GRPCMaxRecvBytes; n < 4<<10 || n > 64<<20 {
		add(fmt.Errorf("%s.grpc_max_recv_bytes: %d must be between 4096 and 67108864", path, n))
	}
	if n := s.MaxHeaderBytes; n < 4<<10 || n > 1<<20 {
		add(fmt.Errorf("%s.max_header_bytes: %d must be between 4096 and 1048576", path, n))
	}
	if s.ShutdownDelay < 0 || s.ShutdownDelay > time.Minute {
		add(fmt.Errorf("%s.shutdown_delay: %s must be between 0s and 1m", path, s.ShutdownDelay))
	}
	if iv := s.ConfigPollInterval; iv != 0 && (iv < time.Second || iv > time.Hour) {
		add(fmt.Errorf("%s.config_poll_interval: %s must be 0s (off) or between 1s and 1h, e.g. 10s", path, iv))
	}
	if s.ShutdownTimeout <= 0 || s.ShutdownTimeout > 5*time.Minute {
		add(fmt.Errorf("%s.shutdown_timeout: %s must be between 1s and 5m", path, s.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the log section at path.
func (l Log) Validate(path string) error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Errorf("%s.level: %q must be one of debug, info, warn, error", path, l.Level))
	}
	if l.AllowSampleRate < 0 || l.AllowSampleRate > 1 {
		add(fmt.Errorf("%s.allow_sample_rate: %v must be between 0 (log no allows) and 1 (log every allow)", path, l.AllowSampleRate))
	}
	if l.DenialsPerSecond < 0 || l.DenialsPerSecond > 100000 {
		add(fmt.Errorf("%s.denials_per_second: %d must be between 0 (log every denial) and 100000, e.g. 10", path, l.DenialsPerSecond))
	}
	return errors.Join(errs...)
}

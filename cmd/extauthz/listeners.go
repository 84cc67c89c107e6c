package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/envoyauthz"
	"github.com/extauthz/extauthz/forwardauth"
)

// frontEnds are the process's listeners and the servers on them: the gRPC
// Check (with gRPC health), the HTTP forward-auth handler, the admin port
// and the key API.
type frontEnds struct {
	grpc     *grpc.Server
	grpcLis  net.Listener
	http     *http.Server // nil without listen.http
	httpLis  net.Listener
	admin    *http.Server // nil without listen.admin
	adminLis net.Listener
	api      *apiServer // nil without listen.api
	tls      bool
}

// openFrontEnds builds the servers and opens every configured listener.
// On an error it closes the listeners it has opened.
func (s *server) openFrontEnds(cfg *config.Config) (fe *frontEnds, err error) {
	var tlsCfg *serverTLS
	if cfg.Listen.TLS.Enabled() {
		if tlsCfg, err = newServerTLS(cfg.Listen.TLS, s.logger); err != nil {
			return nil, fmt.Errorf("listen.tls: %w", err)
		}
	}
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, l := range opened {
				_ = l.Close()
			}
		}
	}()
	listen := func(addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		opened = append(opened, l)
		return l, nil
	}
	fe = &frontEnds{grpc: s.newGRPCServer(cfg), tls: tlsCfg != nil}
	if fe.grpcLis, err = listen(cfg.Listen.GRPC); err != nil {
		return nil, fmt.Errorf("listen.grpc: %w", err)
	}
	if tlsCfg != nil {
		// TLS on the raw listener serves gRPC (ALPN h2) and lets mTLS
		// refuse a client before any gRPC frame is read.
		fe.grpcLis = tls.NewListener(fe.grpcLis, tlsCfg.config([]string{"h2"}))
	}
	if cfg.Listen.HTTP != "" {
		if fe.httpLis, err = listen(cfg.Listen.HTTP); err != nil {
			return nil, fmt.Errorf("listen.http: %w", err)
		}
		if tlsCfg != nil {
			fe.httpLis = tls.NewListener(fe.httpLis, tlsCfg.config([]string{"http/1.1"}))
		}
		fe.http = clientHTTPServer(forwardauth.New(s.authz), cfg, s.logger)
	}
	if cfg.Listen.Admin != "" {
		if fe.adminLis, err = listen(cfg.Listen.Admin); err != nil {
			return nil, fmt.Errorf("listen.admin: %w", err)
		}
		fe.admin = &http.Server{
			Handler:           s.adminHandler(cfg.Server.Pprof),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		}
	}
	if fe.api, err = s.newAPIServer(cfg, listen, tlsCfg); err != nil {
		return nil, err
	}
	return fe, nil
}

// newGRPCServer returns the gRPC server of the Check front end and gRPC
// health. The front end's codec sends shared allowed responses and the
// prebuilt denials from bytes encoded once (docs/PERFORMANCE.md); every
// other message goes through the standard proto codec.
func (s *server) newGRPCServer(cfg *config.Config) *grpc.Server {
	front := envoyauthz.New(s.authz)
	gs := grpc.NewServer(
		grpc.ForceServerCodecV2(front.Codec()),
		grpc.MaxRecvMsgSize(cfg.Server.GRPCMaxRecvBytes),
		grpc.MaxHeaderListSize(uint32(cfg.Server.MaxHeaderBytes)),
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// Envoy keeps one long-lived HTTP/2 connection per worker; ping
			// idle connections so dead peers are noticed, never close them for
			// age.
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	authv3.RegisterAuthorizationServer(gs, front)
	healthpb.RegisterHealthServer(gs, s.health)
	if cfg.Server.GRPCReflection {
		reflection.Register(gs)
	}
	return gs
}

// clientHTTPServer is an HTTP server for a listener clients reach (the
// forward-auth handler, the key API), with its time and size limits.
func clientHTTPServer(h http.Handler, cfg *config.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve starts every server on its listener and returns the channel their
// results go to.
func (fe *frontEnds) serve(logger *slog.Logger, cfg *config.Config) <-chan error {
	errc := make(chan error, 4)
	go func() { errc <- fe.grpc.Serve(fe.grpcLis) }()
	if fe.http != nil {
		go func() { errc <- fe.http.Serve(fe.httpLis) }()
	}
	if fe.admin != nil {
		go func() { errc <- fe.admin.Serve(fe.adminLis) }()
	}
	fe.api.serve(logger, errc)
	logger.Info("extauthz serving",
		"grpc", fe.grpcLis.Addr().String(), "http", addrOf(fe.httpLis), "admin", addrOf(fe.adminLis), "tls", fe.tls,
		"mtls", cfg.Listen.TLS.ClientCAFile != "",
		"jwt_providers", len(cfg.JWT.Providers), "routes", len(cfg.Routes))
	return errc
}

// shutdown stops accepting and lets the requests in flight finish, for up
// to timeout; gRPC streams still open then are cut. The admin port stops
// last, so /readyz keeps answering during the drain.
func (fe *frontEnds) shutdown(timeout time.Duration) {
	stopCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { fe.grpc.GracefulStop(); close(done) }()
	if fe.http != nil {
		_ = fe.http.Shutdown(stopCtx)
	}
	fe.api.shutdown(stopCtx)
	select {
	case <-done:
	case <-stopCtx.Done():
		fe.grpc.Stop()
	}
	if fe.admin != nil {
		_ = fe.admin.Shutdown(stopCtx)
	}
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/keysapi"
)

// apiServer serves the key API and token exchange on listen.api. A nil
// *apiServer (listen.api empty) does nothing.
type apiServer struct {
	srv *http.Server
	lis net.Listener
}

// newAPIServer listens on listen.api (through listen, so that a later
// failure closes it) and builds the key API over the current generation's
// engine and store, so reloads apply. It returns nil when listen.api is
// empty.
func (s *server) newAPIServer(cfg *config.Config, listen func(string) (net.Listener, error), tlsCfg *serverTLS) (*apiServer, error) {
	if cfg.Listen.API == "" {
		return nil, nil
	}
	h, err := keysapi.New(cfg.API, keysapi.Deps{
		Auth:    func() keysapi.Authenticator { return s.cur.Load().engine },
		Store:   currentStore{s},
		Logger:  s.logger,
		Metrics: keysapi.NewMetrics(s.metrics.reg),
		Config:  func() keysapi.Config { return s.cur.Load().cfg.API },
	})
	if err != nil {
		return nil, err
	}
	l, err := listen(cfg.Listen.API)
	if err != nil {
		return nil, fmt.Errorf("listen.api: %w", err)
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg.config([]string{"http/1.1"}))
	}
	return &apiServer{lis: l, srv: clientHTTPServer(h, cfg, s.logger)}, nil
}

// serve starts serving; the result goes to errc.
func (a *apiServer) serve(logger *slog.Logger, errc chan<- error) {
	if a == nil {
		return
	}
	logger.Info("key API serving", "api", a.lis.Addr().String())
	go func() { errc <- a.srv.Serve(a.lis) }()
}

// shutdown stops accepting and waits for requests in flight, up to ctx.
func (a *apiServer) shutdown(ctx context.Context) {
	if a != nil {
		_ = a.srv.Shutdown(ctx)
	}
}

// currentStore is the key store of the current generation (a reload may
// replace it).
type currentStore struct{ s *server }

func (c currentStore) Create(ctx context.Context, o apikeys.CreateOptions) (string, *apikeys.Record, error) {
	return c.s.cur.Load().store.Create(ctx, o)
}

func (c currentStore) ListOwned(ctx context.Context, issuer, owner string) ([]*apikeys.Record, error) {
	return c.s.cur.Load().store.ListOwned(ctx, issuer, owner)
}

func (c currentStore) RevokeOwner(ctx context.Context, issuer, owner string) (int, error) {
	return c.s.cur.Load().store.RevokeOwner(ctx, issuer, owner)
}

func (c currentStore) Get(ctx context.Context, id string) (*apikeys.Record, error) {
	return c.s.cur.Load().store.Get(ctx, id)
}

func (c currentStore) Revoke(ctx context.Context, id string) error {
	return c.s.cur.Load().store.Revoke(ctx, id)
}

package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"reflect"
	"time"

	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/config"
)

// reload builds a complete new generation from the file and swaps it in. An
// invalid file leaves the current generation serving.
func (s *server) reload(trigger string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	cfg, err := config.Load(s.path)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload rejected, keeping the running config", "trigger", trigger, "err", err)
		return
	}
	if !reflect.DeepEqual(cfg.Listen, cur.cfg.Listen) {
		s.logger.Warn("listen addresses changed: they take effect after a restart", "trigger", trigger)
	}
	next, err := build(cfg, cur, s.logger, s.metrics)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload failed, keeping the running config", "trigger", trigger, "err", err)
		return
	}
	s.cur.Store(next)
	s.authz.Swap(next.engine, cfg.ServerOptions())
	s.level.Set(parseLevel(cfg.Log.Level))
	// The previous generation lets go of its parts once the checks still
	// running on it have ended: those next reuses keep running under next's
	// hold, the others stop.
	s.retire(cur)
	for _, w := range cfg.Warnings() {
		s.logger.Warn("config warning", "warning", w)
	}
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.logger.Info("config reloaded", "trigger", trigger, "routes", len(cfg.Routes), "jwt_providers", len(cfg.JWT.Providers))
	s.refreshReadiness(context.Background())
}

// retireDrain is how long a replaced generation stays open after its
// check_timeout: a check that started on it (bounded by check_timeout, as
// are its Redis and introspection calls) ends on parts that still run.
const retireDrain = time.Second

// retire closes p, a generation a reload replaced, once the checks that may
// still run on it have ended. Parts the new generation reuses keep running
// under its hold either way.
func (s *server) retire(p *parts) {
	s.retireMu.Lock()
	defer s.retireMu.Unlock()
	if s.retiring == nil {
		s.retiring = map[*parts]*time.Timer{}
	}
	s.retiring[p] = time.AfterFunc(p.cfg.Server.CheckTimeout+retireDrain, func() {
		s.retireMu.Lock()
		delete(s.retiring, p)
		s.retireMu.Unlock()
		p.close()
	})
}

// closeRetired closes at once the replaced generations still draining (on
// shutdown, once no check runs any more).
func (s *server) closeRetired() {
	s.retireMu.Lock()
	ps := s.retiring
	s.retiring = nil
	s.retireMu.Unlock()
	for p, t := range ps {
		t.Stop()
		p.close()
	}
}

// watch reloads the configuration on SIGHUP (hup) and, with
// server.config_poll_interval, when the file's content changes. It returns
// when ctx is done (nil) or a listener fails (its error).
func (s *server) watch(ctx context.Context, cfg *config.Config, hup <-chan os.Signal, errc <-chan error) error {
	var poll <-chan time.Time
	var lastSum string
	if iv := cfg.Server.ConfigPollInterval; iv > 0 {
		lastSum = fileSum(s.path)
		t := time.NewTicker(iv)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			s.reload("sighup")
			lastSum = fileSum(s.path)
		case <-poll:
			// A ConfigMap update swaps the file under us; reload when the
			// content really changed.
			if sum := fileSum(s.path); sum != "" && sum != lastSum {
				lastSum = sum
				s.reload("file_change")
			}
		case err := <-errc:
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
		}
	}
}

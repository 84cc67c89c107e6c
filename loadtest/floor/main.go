// Command floor is the do-nothing ext_authz server that `make loadtest`
// measures extauthz against: a grpc-go Envoy ext_authz v3 Authorization
// service, with the same server options as `extauthz serve`, whose Check
// answers OK at once without looking at the request. Whatever extauthz costs
// beyond it is the price of the decision itself.
//
// Usage: floor -listen 127.0.0.1:0 [-pprof 127.0.0.1:0]
//
// It prints "listening ADDR" on stdout once it accepts connections, and
// stops gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// floorServer allows every request.
type floorServer struct {
	authv3.UnimplementedAuthorizationServer
}

// Check answers OK without reading the request.
func (floorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "gRPC listen address")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof on this address (off when empty)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintf(os.Stderr, "floor: %s\n", err)
			os.Exit(1)
		}
	}
	if err := run(ctx, *listen); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %s\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// The options of `extauthz serve` (cmd/extauthz/serve.go), so that the
	// transport costs the same on both sides.
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	authv3.RegisterAuthorizationServer(gs, floorServer{})
	healthpb.RegisterHealthServer(gs, health.NewServer()) // SERVING
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	fmt.Printf("listening %s\n", l.Addr())
	select {
	case <-ctx.Done():
		gs.GracefulStop()
		return nil
	case err := <-errc:
		return err
	}
}

// servePprof serves net/http/pprof on addr in the background, as extauthz
// does on its admin port with server.pprof, so both can be profiled alike.
func servePprof(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return nil
}

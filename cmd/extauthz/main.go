// Command extauthz is the external-authorization server for Envoy, Istio and
// forward-auth proxies. This package only parses flags, wires the parts
// together and runs them; every decision is made in package authz.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Set with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

const usage = `extauthz: external authorization for Envoy, Istio and nginx

Usage:
  extauthz serve        --config FILE
  extauthz check-config --config FILE
  extauthz keys create  --config FILE --owner NAME [--groups a,b] [--roles r] [--ttl 720h] [--description TEXT] [--json]
  extauthz keys list    --config FILE [--owner NAME] [--json]
  extauthz keys show    --config FILE ID [--json]
  extauthz keys revoke  --config FILE ID
  extauthz token        (--key PRIVATE_KEY.pem | --hmac-secret-file FILE) [--kid KID] --iss URL --aud AUD --sub SUBJECT [--groups a,b] [--ttl 1h]
  extauthz version
`

func main() {
	// go-redis writes connection errors to stderr through a global logger;
	// the CLI reports failures itself, and serve installs a JSON adapter.
	redis.SetLogger(discardRedisLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code: 0 success,
// 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "check-config":
		return runCheckConfig(args[1:], stdout, stderr)
	case "keys":
		return runKeys(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		v, r := buildVersion()
		fmt.Fprintf(stdout, "extauthz %s (revision %s, %s)\n", v, r, runtime.Version())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "extauthz: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// buildVersion returns the stamped version and revision, falling back to the
// module build info.
func buildVersion() (v, r string) {
	v, r = version, revision
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && r == "" {
				r = s.Value
			}
		}
	}
	if r == "" {
		r = "unknown"
	}
	return v, r
}

type discardRedisLogger struct{}

func (discardRedisLogger) Printf(context.Context, string, ...any) {}

package authz

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports_TransportFree: the engine, and the packages that need only
// the engine (the key API, the config loader, the HTTP front end), pull in
// neither gRPC nor go-control-plane; the Envoy gRPC front end
// (envoyauthz) owns them. Issue 14: keysapi used to depend on 69 gRPC and
// go-control-plane packages through authz.
func TestImports_TransportFree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const module = "github.com/extauthz/extauthz/"
	for _, pkg := range []string{"authz", "keysapi", "config", "forwardauth"} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", module+pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", pkg, err)
			}
			var transport []string
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "github.com/envoyproxy/go-control-plane") {
					transport = append(transport, dep)
				}
			}
			if len(transport) > 0 {
				t.Errorf("%s depends on %d transport packages, want none: %s", pkg, len(transport), strings.Join(transport, " "))
			}
		})
	}
}

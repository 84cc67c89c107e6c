package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoad_Valid(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	// Defaults survive where the file is silent.
	if cfg.Server.CheckTimeout != 300*time.Millisecond || cfg.JWT.Leeway != 30*time.Second || cfg.DefaultRoute != "deny" || cfg.Headers.Prefix != "x-auth-" {
		t.Errorf("defaults not applied: %+v", cfg.Server)
	}
	// Relative files resolve against the config file's directory.
	if want, _ := filepath.Abs("testdata/jwks.json"); !strings.HasSuffix(cfg.JWT.Providers[0].JWKSFile, "testdata/jwks.json") {
		t.Errorf("jwks_file = %q, want %q", cfg.JWT.Providers[0].JWKSFile, want)
	}
	if got := cfg.JWT.Providers[0].SubjectClaim; got != "sub" {
		t.Errorf("provider defaults not applied: subject_claim = %q", got)
	}
}

// TestLoad_Mistakes loads one fixture per config mistake and asserts the
// messages a user sees: each names the key and how to fix it.
func TestLoad_Mistakes(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"misspelled_key.yaml", []string{`line 9: unknown key "path_prefx" in routes[0].match: check its spelling`}},
		{"misspelled_top_key.yaml", []string{`line 7: unknown key "route" in the top level`}},
		// A flow map puts several keys on one line: the section is the
		// misspelled key's parent, not the deepest key before it.
		{"misspelled_flow_key.yaml", []string{`line 4: unknown key "leway" in jwt: check its spelling`}},
		{"two_documents.yaml", []string{"more than one YAML document"}},
		{"undefined_role.yaml", []string{`routes[0].require.any_role[0]: role "admin" is not defined under roles`}},
		{"unreachable_role.yaml", nil}, // only a warning: API keys may carry the role
		{"ungranted_permission.yaml", []string{`routes[0].require.permissions[0]: no role under roles grants "embeddings:invoke"`}},
		{"provider_without_keys.yaml", []string{"jwt.providers[0]"}},
		{"bad_algorithm.yaml", []string{"jwt.providers[0].algorithms", "HS256", "none"}},
		{"bad_duration.yaml", []string{"line 7 (server.check_timeout): cannot unmarshal", `durations are strings with a unit, e.g. "300ms"`}},
		{"forwarded_headers_unknown.yaml", []string{`server.http_forwarded_headers: "x-forwarded" is not valid: use forwarded`}},
		{"path_prefix_without_none.yaml", []string{"server.http_path_prefix: is used only with server.http_forwarded_headers: none"}},
		{"route_paths_and_methods.yaml", []string{
			`routes[0].match.path_prefix: "/healthz/../admin" must be a plain decoded path`,
			`routes[1].match.path: "/v1/a%2Fb" must be a plain decoded path`,
			`routes[2].match.methods[0]: "get" must be an upper-case HTTP method token`,
			`routes[2].match.methods[1]: "GET POST" must be an upper-case HTTP method token`,
		}},
		{"many_problems.yaml", []string{
			`listen.grpc: "9001" must be host:port`,
			"server.check_timeout: 0s must be between 1ms and 10s",
			`log.level: "loud" must be one of debug, info, warn, error`,
			"log.allow_sample_rate: 2 must be between 0",
			"log.denials_per_second: -1 must be between 0 (log every denial) and 100000",
			`role_mapping.default_roles[1]: role "ghost" is not defined under roles`,
			`routes[0].match.path_prefix: "v1" must start with /`,
			"routes[0].require: set one of any_role, permissions or authenticated: true",
			`default_route: "allow" is not valid`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Load = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%s", w, err)
				}
			}
		})
	}
}

func TestLoad_UnreachableRoleWarns(t *testing.T) {
	cfg, err := Load("testdata/unreachable_role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range cfg.Warnings() {
		if strings.Contains(w, `no role_mapping rule or default_roles produces role "auditor"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("warnings %q lack the unreachable-role warning", cfg.Warnings())
	}
}

func TestLoad_UnreachableRoleWithoutKeysIsAnError(t *testing.T) {
	data, err := os.ReadFile("testdata/unreachable_role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Without a key store (redis or file), nothing can ever carry the role.
	_, err = Parse([]byte(strings.Replace(string(data), "api_keys: {file: keys.json}\n", "", 1)))
	if err == nil || !strings.Contains(err.Error(), `no role_mapping rule or default_roles produces role "auditor"`) {
		t.Fatalf("Parse = %v, want the unreachable-role error", err)
	}
}

// TestExampleConfigs runs check-config's validation on every example config
// shipped in the repository, so an example can never rot.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/config.yaml")
	k8s, _ := filepath.Glob("../k8s/*/config.yaml")
	files = append(files, k8s...)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
}

// TestParse_HTTPForwardedHeaders: the family reaches the server options,
// forwarded by default, and http_path_prefix goes with none.
func TestParse_HTTPForwardedHeaders(t *testing.T) {
	tests := []struct {
		name, server, want string
	}{
		{"default", "{}", "forwarded"},
		{"original", "{http_forwarded_headers: original}", "original"},
		{"none with a path prefix", "{http_forwarded_headers: none, http_path_prefix: /check}", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte("listen: {grpc: 127.0.0.1:1}\nserver: " + tt.server + "\nroutes: [{name: h, match: {path: /h}, public: true}]\n"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.ServerOptions().HTTPForwardedHeaders); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestParse_RoundTripsDurations(t *testing.T) {
	cfg, err := Parse([]byte("listen: {grpc: 127.0.0.1:1}\nserver: {check_timeout: 250ms}\nroutes: [{name: h, match: {path: /h}, public: true}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(250*time.Millisecond, cfg.Server.CheckTimeout); diff != "" {
		t.Error(diff)
	}
}

func FuzzLoadConfig(f *testing.F) {
	for _, name := range []string{"valid.yaml", "misspelled_key.yaml", "many_problems.yaml", "two_documents.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("listen: {grpc: [1,2]}"))
	f.Add([]byte("routes: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any input either decodes to a configuration that validates, or
		// yields an error; it never panics and never returns both.
		cfg, err := Parse(data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned cfg=%v err=%v", cfg != nil, err)
		}
	})
}

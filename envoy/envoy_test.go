// Package envoy_test proves the Envoy configurations in this directory
// against Envoy's own schema: every file is decoded strictly into
// go-control-plane's Bootstrap, validated with protoc-gen-validate down to
// every typed_config payload, checked for dangling cluster names and
// deprecated fields, and held to the project's deployment policy (fail
// closed, explicit V3 transport, a timeout longer than extauthz's
// check_timeout, a 5xx on error, identity headers stripped before ext_authz,
// per-route configs that name a real filter, and in HTTP mode no
// context_extensions and no client-controlled forwarding headers). Envoy
// itself is not run. docs/PROXIES.md explains each rule.
package envoy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	// Extensions named by "@type" in the configurations. protojson resolves
	// an Any through the global registry, so every type used must be linked
	// in; a missing one fails decoding with "unable to resolve".
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// checkTimeout is extauthz's default server.check_timeout. The proxy's
// ext_authz timeout must be longer, so that extauthz answers its own
// timeouts (503 with a JSON body) before Envoy gives up on it.
const checkTimeout = 300 * time.Millisecond

// identityPrefix is extauthz's default headers.prefix.
const identityPrefix = "x-auth-"

// The kinds of problem validate reports. Each reported problem wraps exactly
// one of these, so tests can tell a schema violation from a policy one.
var (
	errDecode            = errors.New("decode")
	errSchema            = errors.New("schema")
	errUndefinedCluster  = errors.New("undefined cluster")
	errDuplicateCluster  = errors.New("duplicate cluster")
	errDeprecated        = errors.New("deprecated")
	errFailOpen          = errors.New("fail open")
	errTransport         = errors.New("transport api version")
	errTimeout           = errors.New("ext_authz timeout")
	errStatusOnError     = errors.New("status_on_error")
	errFilterOrder       = errors.New("filter order")
	errNoExtAuthz        = errors.New("no ext_authz")
	errUnstripped        = errors.New("identity headers not stripped")
	errPerFilterName     = errors.New("per-filter config name")
	errIgnoredExtensions = errors.New("ignored context_extensions")
	errForwardedHeaders  = errors.New("client forwarding headers")
	errUnderscores       = errors.New("underscore headers allowed")
)

// configFiles lists the shipped configurations and the known-good fixtures.
func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "testdata/good/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if !slices.Contains(files, "envoy.yaml") || !slices.Contains(files, "envoy-http.yaml") {
		t.Fatalf("config files %v: want envoy.yaml and envoy-http.yaml among them", files)
	}
	return files
}

func TestConfigs_Valid(t *testing.T) {
	for _, file := range configFiles(t) {
		t.Run(file, func(t *testing.T) {
			if errs := check(file); len(errs) > 0 {
				t.Fatalf("%s:\n%v", file, errors.Join(errs...))
			}
		})
	}
}

// TestConfigs_Invalid proves that every check in validate fires: each file
// under testdata/bad holds one mistake and must fail with exactly one
// problem, of the expected kind, with the expected message.
func TestConfigs_Invalid(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error
		wantMsg string
	}{
		{"misspelt_top_level_field.yaml", errDecode, `unknown field "static_resource"`},
		{"misspelt_ext_authz_field.yaml", errDecode, `unknown field "failure_mode_alow"`},
		{"unknown_typed_config_type.yaml", errDecode, `unable to resolve "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth"`},
		{"duplicate_yaml_key.yaml", errDecode, `mapping key "cluster_name" already defined`},
		{"empty_grpc_cluster_name.yaml", errSchema, "GrpcService_EnvoyGrpc.ClusterName: value length must be at least 1 runes"},
		{"empty_http_service_cluster.yaml", errSchema, "HttpUri.Cluster: value length must be at least 1 runes"},
		{"cluster_connect_timeout_zero.yaml", errSchema, "Cluster.ConnectTimeout: value must be greater than 0s"},
		{"with_request_body_zero_limit.yaml", errSchema, "BufferSettings.MaxRequestBytes: value must be greater than 0"},
		{"route_to_undefined_cluster.yaml", errUndefinedCluster, `route.cluster "llm-v2" is not a static cluster`},
		{"weighted_cluster_undefined.yaml", errUndefinedCluster, `weighted_clusters.clusters.name "llm-canary" is not a static cluster`},
		{"ext_authz_undefined_cluster.yaml", errUndefinedCluster, `envoy_grpc.cluster_name "ext-authz" is not a static cluster`},
		{"http_service_undefined_cluster.yaml", errUndefinedCluster, `server_uri.cluster "extauthz" is not a static cluster`},
		{"duplicate_cluster.yaml", errDuplicateCluster, `cluster "llm" is defined twice`},
		{"failure_mode_allow.yaml", errFailOpen, "failure_mode_allow: true lets every request through while extauthz is down"},
		{"transport_api_version_missing.yaml", errTransport, "transport_api_version is AUTO, want V3"},
		{"ext_authz_timeout_missing.yaml", errTimeout, "grpc_service.timeout is unset (Envoy's default is 200ms); it must exceed extauthz's check_timeout 300ms"},
		{"ext_authz_timeout_too_short.yaml", errTimeout, "grpc_service.timeout 250ms must exceed extauthz's check_timeout 300ms"},
		{"status_on_error_403.yaml", errStatusOnError, "status_on_error is Forbidden (403), want a 5xx"},
		{"ext_authz_after_router.yaml", errFilterOrder, `"envoy.filters.http.router" must be the last http filter`},
		{"no_ext_authz.yaml", errNoExtAuthz, "no envoy.filters.http.ext_authz filter in any http_connection_manager"},
		{"identity_headers_not_stripped.yaml", errUnstripped, `no header_mutation before ext_authz removes request headers with prefix "x-auth-"`},
		{"per_route_disable_misspelt.yaml", errPerFilterName, `typed_per_filter_config["envoy.filters.http.extauthz"] names no http filter`},
		{"context_extensions_http_service.yaml", errIgnoredExtensions, "context_extensions are not sent to an http_service ext_authz"},
		{"deprecated_allowed_headers.yaml", errDeprecated, "AuthorizationRequest.allowed_headers is deprecated"},
		{"underscore_headers_allowed.yaml", errUnderscores, "headers_with_underscores_action is ALLOW"},
		{"http_service_allows_x_forwarded_uri.yaml", errForwardedHeaders, "allowed_headers lets the client's x-forwarded-method, x-forwarded-uri, x-forwarded-host reach extauthz"},
	}

	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, tt := range tests {
		listed = append(listed, filepath.Join("testdata/bad", tt.file))
	}
	slices.Sort(listed)
	if diff := cmp.Diff(listed, files); diff != "" {
		t.Errorf("testdata/bad and the table differ (-table +files):\n%s", diff)
	}

	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			errs := check(filepath.Join("testdata/bad", tt.file))
			if len(errs) == 0 {
				t.Fatal("valid, want an error")
			}
			err := errors.Join(errs...)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if len(errs) != 1 {
				t.Errorf("%d problems, want exactly 1 (one mistake per file):\n%v", len(errs), err)
			}
		})
	}
}

// TestValidate_SeesInsideAny guards the reason for walking the message tree:
// ValidateAll on the Bootstrap does not look inside Any payloads, so an
// invalid ext_authz config passes it and only the walk finds the error.
func TestValidate_SeesInsideAny(t *testing.T) {
	b, err := loadBootstrap("testdata/bad/empty_grpc_cluster_name.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Bootstrap.ValidateAll() = %v; it now looks inside Any, the walk may be redundant", err)
	}
	if err := errors.Join(validateSchema(b)...); !errors.Is(err, errSchema) {
		t.Fatalf("validateSchema() = %v, want %v", err, errSchema)
	}
}

func TestMatchesAny(t *testing.T) {
	sm := func(js string) *matcherv3.StringMatcher {
		m := &matcherv3.StringMatcher{}
		if err := protojson.Unmarshal([]byte(js), m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		matcher string
		in      string
		want    bool
	}{
		{`{"exact":"x-forwarded-uri"}`, "x-forwarded-uri", true},
		{`{"exact":"X-Forwarded-Uri"}`, "x-forwarded-uri", false},
		{`{"exact":"X-Forwarded-Uri","ignore_case":true}`, "x-forwarded-uri", true},
		{`{"prefix":"x-forwarded-"}`, "x-forwarded-host", true},
		{`{"prefix":"x-auth-"}`, "x-forwarded-host", false},
		{`{"suffix":"-uri"}`, "x-original-uri", true},
		{`{"contains":"forwarded"}`, "x-forwarded-method", true},
		{`{"safe_regex":{"regex":"x-(forwarded|original)-.*"}}`, "x-original-method", true},
		{`{"safe_regex":{"regex":"forwarded"}}`, "x-forwarded-uri", false}, // anchored, as in Envoy
		{`{"safe_regex":{"regex":"("}}`, "authorization", true},            // unparsable: fail closed
	}
	for _, tt := range tests {
		t.Run(tt.matcher+"/"+tt.in, func(t *testing.T) {
			if got := matchesAny([]*matcherv3.StringMatcher{sm(tt.matcher)}, tt.in); got != tt.want {
				t.Errorf("matchesAny(%s, %q) = %v, want %v", tt.matcher, tt.in, got, tt.want)
			}
		})
	}
}

func TestYAMLToJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{
			name: "nested maps and lists",
			in:   "a: {b: [1, two, true, null, 0.5]}\nc: 0.5s\n",
			want: `{"a":{"b":[1,"two",true,null,0.5]},"c":"0.5s"}`,
		},
		{
			name: "non-string keys become strings",
			in:   "1: x\ntrue: y\n",
			want: `{"1":"x","true":"y"}`,
		},
		{
			name: "anchors and merge keys",
			in:   "base: &b {x: 1}\nother: {<<: *b, y: 2}\n",
			want: `{"base":{"x":1},"other":{"x":1,"y":2}}`,
		},
		{
			name:    "duplicate key",
			in:      "a: 1\na: 2\n",
			wantErr: `mapping key "a" already defined`,
		},
		{
			name:    "second document",
			in:      "a: 1\n---\nb: 2\n",
			wantErr: "more than one yaml document",
		},
		{
			name:    "empty",
			in:      "# nothing\n",
			wantErr: "empty yaml",
		},
		{
			name:    "map as key",
			in:      "? {a: 1}\n: x\n",
			wantErr: "invalid map key",
		},
		{
			name:    "timestamp as key",
			in:      "2001-12-14: x\n",
			wantErr: "unsupported mapping key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := yamlToJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("yamlToJSON() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("yamlToJSON() (-want +got):\n%s", diff)
			}
		})
	}
}

// check loads file and returns every problem found in it, each wrapping one
// of the err* kinds above.
func check(file string) []error {
	b, err := loadBootstrap(file)
	if err != nil {
		return []error{err}
	}
	return validate(b)
}

// loadBootstrap decodes file strictly: YAML to JSON, then protojson with
// unknown fields rejected, as Envoy itself does for a v3 bootstrap.
func loadBootstrap(file string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	js, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", file, errDecode, err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", file, errDecode, err)
	}
	return b, nil
}

// yamlToJSON converts one YAML document to JSON. Mapping keys that are not
// strings (yaml.v3 decodes "1:" as an int key) become their string form, as
// JSON object keys must be strings.
func yamlToJSON(data []byte) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty yaml")
		}
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one yaml document")
	}
	if v == nil {
		return nil, errors.New("empty yaml")
	}
	v, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			je, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = je
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			switch k.(type) {
			case string, int, int64, uint64, float64, bool:
			default:
				return nil, fmt.Errorf("unsupported mapping key of type %T", k)
			}
			je, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = je
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			je, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = je
		}
		return out, nil
	default:
		return v, nil
	}
}

// validate runs every check on a decoded bootstrap.
func validate(b *bootstrapv3.Bootstrap) []error {
	return slices.Concat(
		validateSchema(b),
		validateClusterRefs(b),
		validateDeprecated(b),
		validatePolicy(b),
	)
}

// node is one message in the configuration tree, with a readable path such
// as static_resources.listeners[0].filter_chains[0].filters[0].typed_config<HttpConnectionManager>.
type node struct {
	path string
	msg  protoreflect.Message
	// inAny is true for an Any payload itself, the top of a sub-tree that
	// the root's ValidateAll never reaches.
	inAny bool
}

// walk calls visit for m and every message below it, unpacking Any payloads
// (typed_config, typed_per_filter_config, ...) and walking into them, and
// returns every problem visit reported.
func walk(m protoreflect.Message, path string, visit func(node) []error) []error {
	isAny := false
	if a, ok := m.Interface().(*anypb.Any); ok {
		payload, err := a.UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("%s: %w: %w", path, errDecode, err)}
		}
		m = payload.ProtoReflect()
		path += "<" + string(m.Descriptor().Name()) + ">"
		isAny = true
	}
	errs := visit(node{path: path, msg: m, inAny: isAny})
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				break
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walk(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()), visit)...)
				return true
			})
		case fd.IsList():
			if fd.Message() == nil {
				break
			}
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), visit)...)
			}
		case fd.Message() != nil:
			errs = append(errs, walk(v.Message(), p, visit)...)
		}
		return true
	})
	return errs
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// validateSchema runs protoc-gen-validate's ValidateAll on the root and on
// every Any payload. The root's ValidateAll recurses into ordinary
// sub-messages but stops at an Any, which is where every filter config
// lives; each payload's ValidateAll covers its own ordinary sub-messages.
func validateSchema(b *bootstrapv3.Bootstrap) []error {
	type validator interface{ ValidateAll() error }
	var errs []error
	if err := b.ValidateAll(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", errSchema, err))
	}
	return append(errs, walk(b.ProtoReflect(), "", func(n node) []error {
		if !n.inAny {
			return nil
		}
		v, ok := n.msg.Interface().(validator)
		if !ok {
			return []error{fmt.Errorf("%s: %w: %s has no ValidateAll", n.path, errSchema, n.msg.Descriptor().FullName())}
		}
		if err := v.ValidateAll(); err != nil {
			return []error{fmt.Errorf("%s: %w: %w", n.path, errSchema, err)}
		}
		return nil
	})...)
}

// validateClusterRefs checks that every cluster a route, a weighted
// cluster, a mirror policy, an Envoy gRPC service or an HTTP URI names is
// defined in static_resources.clusters, and that no cluster is defined
// twice. Envoy would refuse such a bootstrap at startup (or, for routes,
// answer 503 to every request). Empty names are left to the schema check.
func validateClusterRefs(b *bootstrapv3.Bootstrap) []error {
	var errs []error
	defined := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		if defined[c.GetName()] {
			errs = append(errs, fmt.Errorf("%w: cluster %q is defined twice", errDuplicateCluster, c.GetName()))
		}
		defined[c.GetName()] = true
	}
	ref := func(path, field, name string) []error {
		if name == "" || defined[name] {
			return nil
		}
		return []error{fmt.Errorf("%s: %w: %s %q is not a static cluster", path, errUndefinedCluster, field, name)}
	}
	return append(errs, walk(b.ProtoReflect(), "", func(n node) []error {
		switch m := n.msg.Interface().(type) {
		case *routev3.RouteAction:
			return ref(n.path, "route.cluster", m.GetCluster())
		case *routev3.WeightedCluster_ClusterWeight:
			return ref(n.path, "weighted_clusters.clusters.name", m.GetName())
		case *routev3.RouteAction_RequestMirrorPolicy:
			return ref(n.path, "request_mirror_policies.cluster", m.GetCluster())
		case *corev3.GrpcService_EnvoyGrpc:
			return ref(n.path, "envoy_grpc.cluster_name", m.GetClusterName())
		case *corev3.HttpUri:
			return ref(n.path, "server_uri.cluster", m.GetCluster())
		}
		return nil
	})...)
}

// validateDeprecated rejects any field or enum value Envoy has deprecated:
// Envoy warns about them, and a later release removes them.
func validateDeprecated(b *bootstrapv3.Bootstrap) []error {
	return walk(b.ProtoReflect(), "", func(n node) []error {
		var errs []error
		n.msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := join(n.path, string(fd.Name()))
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s: %w: %s.%s is deprecated", p, errDeprecated, n.msg.Descriptor().Name(), fd.Name()))
			}
			if fd.Enum() != nil && !fd.IsList() && !fd.IsMap() {
				if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
					if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
						errs = append(errs, fmt.Errorf("%s: %w: enum value %s is deprecated", p, errDeprecated, ev.FullName()))
					}
				}
			}
			return true
		})
		return errs
	})
}

const (
	extAuthzFilter = "envoy.filters.http.ext_authz"
	routerFilter   = "envoy.filters.http.router"
)

// validatePolicy holds the configurations to how extauthz must be deployed,
// beyond what Envoy's schema can express.
func validatePolicy(b *bootstrapv3.Bootstrap) []error {
	found := false
	errs := walk(b.ProtoReflect(), "", func(n node) []error {
		switch m := n.msg.Interface().(type) {
		case *extauthzv3.ExtAuthz:
			return extAuthzPolicy(n.path, m)
		case *hcmv3.HttpConnectionManager:
			hasAuthz, errs := hcmPolicy(n.path, m)
			found = found || hasAuthz
			return errs
		}
		return nil
	})
	if !found {
		errs = append(errs, fmt.Errorf("%w: no %s filter in any http_connection_manager", errNoExtAuthz, extAuthzFilter))
	}
	return errs
}

// extAuthzPolicy checks one ext_authz filter config: fail closed, V3, a
// timeout longer than extauthz's own, and an outage reported as a 5xx.
func extAuthzPolicy(path string, m *extauthzv3.ExtAuthz) []error {
	var errs []error
	if m.GetFailureModeAllow() {
		errs = append(errs, fmt.Errorf("%s: %w: failure_mode_allow: true lets every request through while extauthz is down", path, errFailOpen))
	}
	if v := m.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		errs = append(errs, fmt.Errorf("%s: %w: transport_api_version is %s, want V3", path, errTransport, v))
	}
	var field string
	var timeout *durationpb.Duration
	switch {
	case m.GetGrpcService() != nil:
		field, timeout = "grpc_service.timeout", m.GetGrpcService().GetTimeout()
	case m.GetHttpService() != nil:
		field, timeout = "http_service.server_uri.timeout", m.GetHttpService().GetServerUri().GetTimeout()
	}
	switch {
	case field == "":
		// The schema check reports a missing service.
	case timeout == nil:
		errs = append(errs, fmt.Errorf("%s: %w: %s is unset (Envoy's default is 200ms); it must exceed extauthz's check_timeout %s", path, errTimeout, field, checkTimeout))
	case timeout.AsDuration() <= checkTimeout:
		errs = append(errs, fmt.Errorf("%s: %w: %s %s must exceed extauthz's check_timeout %s", path, errTimeout, field, timeout.AsDuration(), checkTimeout))
	}
	if m.GetHttpService() != nil {
		// extauthz's HTTP mode takes the method, URI and host of the
		// request from these headers when present. Envoy never sets them on
		// the check request, so the only way they arrive is from the
		// client: a client could then have /v1/chat/completions authorized
		// as /healthz.
		var leaked []string
		for _, h := range forwardingHeaders {
			if matchesAny(m.GetAllowedHeaders().GetPatterns(), h) && !matchesAny(m.GetDisallowedHeaders().GetPatterns(), h) {
				leaked = append(leaked, h)
			}
		}
		if len(leaked) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w: allowed_headers lets the client's %s reach extauthz, which would authorize the request they name instead of the real one", path, errForwardedHeaders, strings.Join(leaked, ", ")))
		}
	}
	switch code := m.GetStatusOnError().GetCode(); {
	case code == 0:
		errs = append(errs, fmt.Errorf("%s: %w: status_on_error is unset (Envoy answers 403), want a 5xx so an outage is not reported as a denial", path, errStatusOnError))
	case code < 500 || code > 599:
		errs = append(errs, fmt.Errorf("%s: %w: status_on_error is %s (%d), want a 5xx so an outage is not reported as a denial", path, errStatusOnError, code, int32(code)))
	}
	return errs
}

// hcmPolicy checks the filter chain and inline routes of one
// http_connection_manager: the router last, client x-auth-* headers removed
// before ext_authz, per-route configs naming a real filter, and no
// context_extensions that an http_service would silently drop. It reports
// whether the chain has ext_authz.
func hcmPolicy(path string, hcm *hcmv3.HttpConnectionManager) (bool, []error) {
	var errs []error
	filters := hcm.GetHttpFilters()
	names := map[string]bool{}
	authzAt, stripAt := -1, -1
	var authz *extauthzv3.ExtAuthz
	for i, f := range filters {
		names[f.GetName()] = true
		cfg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			continue // reported by the schema walk
		}
		switch c := cfg.(type) {
		case *extauthzv3.ExtAuthz:
			if authzAt < 0 {
				authzAt, authz = i, c
			}
		case *headermutationv3.HeaderMutation:
			if stripAt < 0 && stripsPrefix(c, identityPrefix) {
				stripAt = i
			}
		case *routerv3.Router:
			if i != len(filters)-1 {
				errs = append(errs, fmt.Errorf("%s.http_filters[%d]: %w: %q must be the last http filter", path, i, errFilterOrder, routerFilter))
			}
		}
	}
	if authzAt < 0 {
		return false, errs
	}
	if stripAt < 0 || stripAt > authzAt {
		errs = append(errs, fmt.Errorf("%s: %w: no header_mutation before ext_authz removes request headers with prefix %q; routes with ext_authz disabled would pass forged identity headers upstream", path, errUnstripped, identityPrefix))
	}
	// The x-auth- strip above does not match x_auth_subject, which
	// CGI/WSGI-style upstreams read as x-auth-subject.
	switch hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() {
	case corev3.HttpProtocolOptions_DROP_HEADER, corev3.HttpProtocolOptions_REJECT_REQUEST:
	default:
		errs = append(errs, fmt.Errorf("%s: %w: common_http_protocol_options.headers_with_underscores_action is ALLOW; a client's x_auth_subject passes the %q strip and reaches upstreams that read it as x-auth-subject: set DROP_HEADER or REJECT_REQUEST", path, errUnderscores, identityPrefix))
	}
	httpMode := authz.GetHttpService() != nil
	errs = append(errs, walk(hcm.GetRouteConfig().ProtoReflect(), path+".route_config", func(n node) []error {
		var errs []error
		n.msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Name() != "typed_per_filter_config" || !fd.IsMap() {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				if !names[k.String()] {
					errs = append(errs, fmt.Errorf("%s: %w: typed_per_filter_config[%q] names no http filter; Envoy ignores it", n.path, errPerFilterName, k.String()))
				}
				return true
			})
			return true
		})
		if pr, ok := n.msg.Interface().(*extauthzv3.ExtAuthzPerRoute); ok && httpMode && len(pr.GetCheckSettings().GetContextExtensions()) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w: context_extensions are not sent to an http_service ext_authz", n.path, errIgnoredExtensions))
		}
		return errs
	})...)
	return true, errs
}

// forwardingHeaders are the headers from which extauthz's HTTP mode reads
// the original method, URI and host.
var forwardingHeaders = []string{
	"x-forwarded-method", "x-forwarded-uri", "x-forwarded-host",
	"x-original-method", "x-original-uri",
}

// matchesAny reports whether any of Envoy's string matchers matches s.
// safe_regex uses Go's RE2, the engine Envoy uses too; Envoy anchors it to
// the whole string.
func matchesAny(ms []*matcherv3.StringMatcher, s string) bool {
	for _, m := range ms {
		v := s
		fold := func(p string) string { return p }
		if m.GetIgnoreCase() {
			v, fold = strings.ToLower(s), strings.ToLower
		}
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			if fold(p.Exact) == v {
				return true
			}
		case *matcherv3.StringMatcher_Prefix:
			if strings.HasPrefix(v, fold(p.Prefix)) {
				return true
			}
		case *matcherv3.StringMatcher_Suffix:
			if strings.HasSuffix(v, fold(p.Suffix)) {
				return true
			}
		case *matcherv3.StringMatcher_Contains:
			if strings.Contains(v, fold(p.Contains)) {
				return true
			}
		case *matcherv3.StringMatcher_SafeRegex:
			re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
			if err != nil || re.MatchString(s) {
				return true // an unparsable regex is treated as matching: fail closed
			}
		default:
			return true // a matcher this check does not understand: fail closed
		}
	}
	return false
}

// stripsPrefix reports whether a header_mutation filter removes every
// request header whose name starts with prefix. Envoy keeps header names in
// lower case, so an upper-case prefix matches only with ignore_case.
func stripsPrefix(hm *headermutationv3.HeaderMutation, prefix string) bool {
	for _, mu := range hm.GetMutations().GetRequestMutations() {
		km := mu.GetRemoveOnMatch().GetKeyMatcher()
		if km.GetPrefix() == prefix || (km.GetIgnoreCase() && strings.EqualFold(km.GetPrefix(), prefix)) {
			return true
		}
	}
	return false
}

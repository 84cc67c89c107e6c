package k8s_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/config"
)

// kustomizations lists every kustomization in k8s/ (testdata excluded) with
// the objects it must render, as "Kind namespace/name" (the generated
// ConfigMap without its hash suffix). A new kustomization that is not listed
// here fails TestKustomizations_AreAllListed.
var kustomizations = map[string][]string{
	"base": {
		"ConfigMap extauthz/extauthz-config",
		"Deployment extauthz/extauthz",
		"HorizontalPodAutoscaler extauthz/extauthz",
		"Namespace /extauthz",
		"NetworkPolicy extauthz/extauthz",
		"PodDisruptionBudget extauthz/extauthz",
		"PrometheusRule extauthz/extauthz",
		"Service extauthz/extauthz",
		"Service extauthz/extauthz-headless",
		"ServiceAccount extauthz/extauthz",
		"ServiceMonitor extauthz/extauthz",
	},
	"overlays/istio": {
		"AuthorizationPolicy extauthz/extauthz-callers",
		"AuthorizationPolicy llm-gateway/llm-gateway-extauthz",
		"ConfigMap extauthz/extauthz-config",
		"Deployment extauthz/extauthz",
		"HorizontalPodAutoscaler extauthz/extauthz",
		"Namespace /extauthz",
		"NetworkPolicy extauthz/extauthz",
		"PeerAuthentication extauthz/extauthz",
		"PodDisruptionBudget extauthz/extauthz",
		"PrometheusRule extauthz/extauthz",
		"Service extauthz/extauthz",
		"Service extauthz/extauthz-headless",
		"ServiceAccount extauthz/extauthz",
		"ServiceMonitor extauthz/extauthz",
	},
	"dev": {
		"Deployment extauthz/redis",
		"NetworkPolicy extauthz/redis",
		"Service extauthz/redis",
	},
}

// object is one rendered manifest, decoded strictly into its Go type.
type object struct {
	gvk  schema.GroupVersionKind
	name string
	ns   string
	obj  any
}

func (o object) key() string { return o.gvk.Kind + " " + o.ns + "/" + o.name }

// render runs kustomize on dir (relative to k8s/) exactly as
// `kubectl apply -k` would, offline.
func render(dir string) ([]renderedDoc, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var docs []renderedDoc
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		g := r.GetGvk()
		docs = append(docs, renderedDoc{gvk: schema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind}, json: data})
	}
	return docs, nil
}

type renderedDoc struct {
	gvk  schema.GroupVersionKind
	json []byte
}

// builtinScheme knows every built-in kind the manifests may use.
var builtinScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// crdTypes maps the custom resources the manifests use to the typed structs
// below, which mirror the upstream schemas for the fields used here.
var crdTypes = map[schema.GroupVersionKind]func() any{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}:  func() any { return new(serviceMonitor) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}:  func() any { return new(prometheusRule) },
	{Group: "security.istio.io", Version: "v1", Kind: "AuthorizationPolicy"}: func() any { return new(authorizationPolicy) },
	{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"}:  func() any { return new(peerAuthentication) },
}

// decodeStrict decodes data into v the way the API server's strict field
// validation does: field names are case-sensitive and an unknown or
// duplicated field is an error.
func decodeStrict(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decode decodes one rendered manifest into its typed form.
func decode(d renderedDoc) (object, error) {
	var v any
	if o, err := builtinScheme.New(d.gvk); err == nil {
		v = o
	} else if f, ok := crdTypes[d.gvk]; ok {
		v = f()
	} else {
		return object{}, fmt.Errorf("%s: no Go type to check it against: add it to builtinScheme or crdTypes", d.gvk)
	}
	if err := decodeStrict(d.json, v); err != nil {
		return object{}, fmt.Errorf("%s: %w", d.gvk.Kind, err)
	}
	acc, err := metaOf(v)
	if err != nil {
		return object{}, err
	}
	return object{gvk: d.gvk, name: acc.GetName(), ns: acc.GetNamespace(), obj: v}, nil
}

func metaOf(v any) (metav1.Object, error) {
	if o, ok := v.(metav1.Object); ok {
		return o, nil
	}
	return nil, fmt.Errorf("%T has no object metadata", v)
}

// bundle is the decoded output of one kustomization.
type bundle struct {
	dir  string
	objs []object
}

func load(t *testing.T, dir string) *bundle {
	t.Helper()
	docs, err := render(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{dir: dir}
	for _, d := range docs {
		o, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		b.objs = append(b.objs, o)
	}
	return b
}

// all returns the objects of type T.
func all[T any](b *bundle) []T {
	var out []T
	for _, o := range b.objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the single object of type T named name.
func one[T metav1.Object](t *testing.T, b *bundle, name string) T {
	t.Helper()
	for _, v := range all[T](b) {
		if v.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("%s: no %T named %s", b.dir, zero, name)
	return zero
}

func TestKustomizations_AreAllListed(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			found = append(found, filepath.ToSlash(filepath.Dir(path)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for dir := range kustomizations {
		listed = append(listed, dir)
	}
	sort.Strings(found)
	sort.Strings(listed)
	if diff := cmp.Diff(listed, found); diff != "" {
		t.Errorf("kustomizations on disk differ from the test's list (-listed +found):\n%s", diff)
	}
}

func TestKustomizations_RenderAndDecodeStrictly(t *testing.T) {
	for dir, want := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			var got []string
			for _, o := range b.objs {
				k := o.key()
				if o.gvk.Kind == "ConfigMap" {
					// Drop the content hash kustomize appends.
					k = k[:strings.LastIndex(k, "-")]
				}
				got = append(got, k)
			}
			sort.Strings(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered objects (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecode_RejectsBadFields proves that the strict decoding above is not a
// formality: each fixture is a kustomization with one mistake in one field.
func TestDecode_RejectsBadFields(t *testing.T) {
	tests := []struct {
		dir     string
		wantErr string // from decoding, or from kustomize when renderErr
		// renderErr: kustomize itself refuses the file.
		renderErr bool
	}{
		{dir: "testdata/misspelt-deployment", wantErr: `unknown field "spec.template.spec.containers[0].ports[0].containerPrt"`},
		{dir: "testdata/wrong-case-service", wantErr: `unknown field "spec.ports[0].TargetPort"`},
		{dir: "testdata/misspelt-prometheusrule", wantErr: `unknown field "spec.groups[0].rules[0].expresion"`},
		{dir: "testdata/misspelt-authorizationpolicy", wantErr: `unknown field "spec.rules[0].to[0].operation.notPath"`},
		{dir: "testdata/duplicate-field-networkpolicy", wantErr: `mapping key "policyTypes" already defined`, renderErr: true},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			docs, err := render(tt.dir)
			if tt.renderErr {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("render error = %v, want one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var errs []error
			for _, d := range docs {
				if _, err := decode(d); err != nil {
					errs = append(errs, err)
				}
			}
			err = errors.Join(errs...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decode error = %v, want one containing %s", err, tt.wantErr)
			}
		})
	}
}

// configOf returns the extauthz configuration a kustomization ships, read
// from the ConfigMap the Deployment mounts, and the path the server is told
// to read it from.
func configOf(t *testing.T, b *bundle) []byte {
	t.Helper()
	d := one[*appsv1.Deployment](t, b, "extauthz")
	c := container(t, d, "extauthz")
	cfgPath := flagValue(t, c.Args, "--config")
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(cfgPath, m.MountPath+"/") {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("--config %s is not under any volume mount of %s", cfgPath, c.Name)
	}
	var cmName string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName == "" {
		t.Fatalf("volume %s is not a ConfigMap", mount.Name)
	}
	cm := one[*corev1.ConfigMap](t, b, cmName)
	key := strings.TrimPrefix(cfgPath, mount.MountPath+"/")
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s (keys: %v)", cmName, key, keysOf(cm.Data))
	}
	return []byte(data)
}

func keysOf[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func container(t *testing.T, d *appsv1.Deployment, name string) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return nil
}

func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	t.Fatalf("args %q lack %s", args, flag)
	return ""
}

// extauthzBundles are the kustomizations that deploy the server.
var extauthzBundles = []string{"base", "overlays/istio"}

func TestConfigMap_PassesConfigValidation(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			cfg, err := config.Parse(configOf(t, load(t, dir)))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			if cfg.APIKeys.Redis == nil {
				t.Error("api_keys.redis is not set: production needs Redis, not the embedded store")
			}
			if cfg.DefaultRoute != "deny" {
				t.Errorf("default_route = %q, want deny", cfg.DefaultRoute)
			}
			for _, w := range cfg.Warnings() {
				t.Logf("config warning: %s", w)
			}
		})
	}
}

func TestDeployment_MatchesConfig(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			cfg, err := config.Parse(configOf(t, b))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			d := one[*appsv1.Deployment](t, b, "extauthz")
			c := container(t, d, "extauthz")

			if diff := cmp.Diff([]string{"serve", "--config", "/etc/extauthz/config.yaml"}, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			// Every listener that is on binds all interfaces on the port its
			// named container port declares; a listener that is off has no
			// container port (TestExposedPorts_AreListenersTheConfigTurnsOn
			// checks the Services and policies).
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			for name, addr := range map[string]string{"grpc": cfg.Listen.GRPC, "http": cfg.Listen.HTTP, "admin": cfg.Listen.Admin} {
				if addr == "" {
					if got, ok := ports[name]; ok {
						t.Errorf("container port %q = %d, but listen.%s is off", name, got, name)
					}
					continue
				}
				host, port := splitAddr(t, addr)
				if host != "0.0.0.0" && host != "" && host != "::" {
					t.Errorf("listen.%s = %s: in a pod it must bind all interfaces, not %s", name, addr, host)
				}
				if got, ok := ports[name]; !ok || got != port {
					t.Errorf("container port %q = %d, listen.%s = %s", name, got, name, addr)
				}
			}
			_, grpcPort := splitAddr(t, cfg.Listen.GRPC)
			_, adminPort := splitAddr(t, cfg.Listen.Admin)

			// Probes: readiness is grpc.health on the Check port, liveness
			// and startup are /healthz on the admin port.
			if p := c.ReadinessProbe; p == nil || p.GRPC == nil || p.GRPC.Port != grpcPort {
				t.Errorf("readinessProbe = %+v, want grpc on port %d", p, grpcPort)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || resolvePort(c, p.HTTPGet.Port) != adminPort {
					t.Errorf("%sProbe = %+v, want httpGet /healthz on port %d", name, p, adminPort)
				}
			}

			// Shutdown: the server's own delay and drain fit in the grace
			// period, with a margin before SIGKILL.
			grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if need := cfg.Server.ShutdownDelay + cfg.Server.ShutdownTimeout + 5*time.Second; grace < need {
				t.Errorf("terminationGracePeriodSeconds = %s, want at least shutdown_delay + shutdown_timeout + 5s = %s", grace, need)
			}
			if cfg.Server.ShutdownDelay < 5*time.Second {
				t.Errorf("server.shutdown_delay = %s: proxies need a few seconds to drop the endpoint; want at least 5s", cfg.Server.ShutdownDelay)
			}

			// Secrets: with no password_file, the password comes from
			// REDIS_PASSWORD, which must come from a Secret.
			if r := cfg.APIKeys.Redis; r != nil && r.PasswordFile == "" {
				e := envVar(c, "REDIS_PASSWORD")
				if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
					t.Errorf("REDIS_PASSWORD = %+v, want a secretKeyRef", e)
				} else if ref := e.ValueFrom.SecretKeyRef; ref.Name != "extauthz-redis" || ref.Key != "password" {
					t.Errorf("REDIS_PASSWORD from secret %s key %s, want extauthz-redis key password (the name docs/OPERATIONS.md gives)", ref.Name, ref.Key)
				} else if ex := readSecretExample(t); ex.Name != ref.Name || ex.Namespace != d.Namespace || ex.StringData[ref.Key] == "" {
					t.Errorf("secret.example.yaml (%s/%s, keys %v) does not show the Secret %s/%s with key %s", ex.Namespace, ex.Name, keysOf(ex.StringData), d.Namespace, ref.Name, ref.Key)
				}
			}
			if e := envVar(c, "GOMAXPROCS"); e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.cpu" {
				t.Errorf("GOMAXPROCS = %+v, want a resourceFieldRef to limits.cpu", e)
			}
			if _, ok := c.Resources.Limits[corev1.ResourceCPU]; !ok {
				t.Error("no CPU limit, but GOMAXPROCS is derived from it")
			}
		})
	}
}

// readSecretExample decodes base/secret.example.yaml, which is not part of
// any kustomization, as strictly as the rendered objects.
func readSecretExample(t *testing.T) *corev1.Secret {
	t.Helper()
	data, err := os.ReadFile("base/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	var s corev1.Secret
	if err := decodeStrict(js, &s); err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	return &s
}

func splitAddr(t *testing.T, addr string) (string, int32) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("address %q has no port", addr)
	}
	var port int32
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return strings.Trim(addr[:i], "[]"), port
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func TestDeployment_IsHardened(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			d := one[*appsv1.Deployment](t, b, "extauthz")
			ps := d.Spec.Template.Spec
			c := container(t, d, "extauthz")

			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas = %v, want at least 2", d.Spec.Replicas)
			}
			if ps.SecurityContext == nil || !isTrue(ps.SecurityContext.RunAsNonRoot) || !is(ps.SecurityContext.RunAsUser, 65532) ||
				ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 65532, seccomp RuntimeDefault", ps.SecurityContext)
			}
			sc := c.SecurityContext
			if sc == nil || !isFalse(sc.AllowPrivilegeEscalation) || !isTrue(sc.ReadOnlyRootFilesystem) || !isTrue(sc.RunAsNonRoot) ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("container securityContext = %+v, want no privilege escalation, read-only root, non-root, capabilities drop ALL", sc)
			}
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Error("the pod mounts a service-account token it never uses")
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("no %s request", r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("no %s limit", r)
				}
			}
			keys := map[string]bool{}
			pod := labels.Set(d.Spec.Template.Labels)
			for _, tsc := range ps.TopologySpreadConstraints {
				sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
				if err != nil || !sel.Matches(pod) {
					t.Errorf("topology spread over %s does not select the pods", tsc.TopologyKey)
				}
				keys[tsc.TopologyKey] = true
			}
			if !keys["topology.kubernetes.io/zone"] || !keys["kubernetes.io/hostname"] {
				t.Errorf("topology spread keys = %v, want zone and hostname", keysOf(keys))
			}
		})
	}
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }
func is(v *int64, want int64) bool {
	return v != nil && *v == want
}

// TestDeployments_MeetRestrictedPodSecurity checks every pod template
// against the "restricted" Pod Security Standard the base's namespace
// enforces (the subset of its rules these manifests could break).
func TestDeployments_MeetRestrictedPodSecurity(t *testing.T) {
	for dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			for _, d := range all[*appsv1.Deployment](load(t, dir)) {
				ps := d.Spec.Template.Spec
				psc := ps.SecurityContext
				if psc == nil {
					psc = &corev1.PodSecurityContext{}
				}
				if ps.HostNetwork || ps.HostPID || ps.HostIPC {
					t.Errorf("%s: uses host namespaces", d.Name)
				}
				for _, v := range ps.Volumes {
					if v.HostPath != nil {
						t.Errorf("%s: hostPath volume %s", d.Name, v.Name)
					}
				}
				for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
					sc := c.SecurityContext
					if sc == nil {
						t.Errorf("%s/%s: no securityContext", d.Name, c.Name)
						continue
					}
					if isTrue(sc.Privileged) || !isFalse(sc.AllowPrivilegeEscalation) {
						t.Errorf("%s/%s: may escalate privileges", d.Name, c.Name)
					}
					if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
						t.Errorf("%s/%s: runAsNonRoot is not set", d.Name, c.Name)
					}
					if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (sc.RunAsUser == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
						t.Errorf("%s/%s: runs as UID 0", d.Name, c.Name)
					}
					if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
						slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
						t.Errorf("%s/%s: capabilities %+v, want drop ALL and add at most NET_BIND_SERVICE", d.Name, c.Name, sc.Capabilities)
					}
					sp := sc.SeccompProfile
					if sp == nil {
						sp = psc.SeccompProfile
					}
					if sp == nil || (sp.Type != corev1.SeccompProfileTypeRuntimeDefault && sp.Type != corev1.SeccompProfileTypeLocalhost) {
						t.Errorf("%s/%s: seccomp profile %+v, want RuntimeDefault", d.Name, c.Name, sp)
					}
				}
			}
		})
	}
}

// istioProtocols are the port-name prefixes Istio uses to select a protocol.
var istioProtocols = []string{"grpc", "grpc-web", "http", "http2", "https", "mongo", "mysql", "redis", "tcp", "tls", "udp"}

func TestServices_NameProtocolsAndTargetContainerPorts(t *testing.T) {
	for dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			for _, s := range all[*corev1.Service](b) {
				sel := labels.SelectorFromSet(s.Spec.Selector)
				var pods []*appsv1.Deployment
				for _, d := range all[*appsv1.Deployment](b) {
					if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						pods = append(pods, d)
					}
				}
				if len(pods) != 1 {
					t.Errorf("Service %s selects %d Deployments, want 1", s.Name, len(pods))
					continue
				}
				for _, p := range s.Spec.Ports {
					if !slices.ContainsFunc(istioProtocols, func(proto string) bool {
						return p.Name == proto || strings.HasPrefix(p.Name, proto+"-")
					}) {
						t.Errorf("Service %s port %q: the name must start with a protocol Istio knows (grpc-, http-, tcp-, ...)", s.Name, p.Name)
					}
					if got := targetContainerPort(pods[0], p.TargetPort); got != p.Port {
						t.Errorf("Service %s port %s (%d) targets %v, which is container port %d", s.Name, p.Name, p.Port, p.TargetPort.String(), got)
					}
				}
			}
		})
	}
}

func targetContainerPort(d *appsv1.Deployment, p intstr.IntOrString) int32 {
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp.ContainerPort
			}
		}
	}
	return -1
}

func TestBase_ServicePortNames(t *testing.T) {
	b := load(t, "base")
	s := one[*corev1.Service](t, b, "extauthz")
	got := map[string]int32{}
	for _, p := range s.Spec.Ports {
		got[p.Name] = p.Port
	}
	// No http-authz: the base turns the HTTP forward-auth listener off.
	want := map[string]int32{"grpc-authz": 9001, "http-metrics": 9090}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Service ports (-want +got):\n%s", diff)
	}
	if s.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("type = %s, want ClusterIP", s.Spec.Type)
	}
}

func TestHPAAndPDB_TargetTheDeployment(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			d := one[*appsv1.Deployment](t, b, "extauthz")
			h := one[*autoscalingv2.HorizontalPodAutoscaler](t, b, "extauthz")
			if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
				t.Errorf("HPA scaleTargetRef = %+v, want Deployment %s", ref, d.Name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("HPA replicas %v..%d, want min >= 2 and max >= min", h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
			cpu := false
			for _, m := range h.Spec.Metrics {
				cpu = cpu || (m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU)
			}
			if !cpu {
				t.Error("HPA does not scale on CPU")
			}

			p := one[*policyv1.PodDisruptionBudget](t, b, "extauthz")
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("PDB selector %v does not select the Deployment's pods", p.Spec.Selector)
			}
			if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
				t.Error("PDB sets neither minAvailable nor maxUnavailable")
			}
		})
	}
}

func TestNetworkPolicy_AllowsNeededFlows(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			d := one[*appsv1.Deployment](t, b, "extauthz")
			c := container(t, d, "extauthz")
			np := one[*networkingv1.NetworkPolicy](t, b, "extauthz")
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Fatalf("NetworkPolicy podSelector %v does not select the extauthz pods", np.Spec.PodSelector)
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("policyTypes = %v, want Ingress and Egress", np.Spec.PolicyTypes)
			}
			for _, name := range []string{"grpc", "admin"} {
				port := resolvePort(c, intstr.FromString(name))
				if !ingressAllows(np, c, port) {
					t.Errorf("no ingress rule allows the %s port %d", name, port)
				}
			}
			for _, want := range []struct {
				proto corev1.Protocol
				port  int32
			}{{corev1.ProtocolUDP, 53}, {corev1.ProtocolTCP, 6379}, {corev1.ProtocolTCP, 443}} {
				if !egressAllows(np, want.proto, want.port) {
					t.Errorf("no egress rule allows %s/%d", want.proto, want.port)
				}
			}
		})
	}
}

func ingressAllows(np *networkingv1.NetworkPolicy, c *corev1.Container, port int32) bool {
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			continue // open to all: not what this policy is for
		}
		for _, p := range r.Ports {
			if p.Port != nil && resolvePort(c, *p.Port) == port {
				return true
			}
		}
	}
	return false
}

func egressAllows(np *networkingv1.NetworkPolicy, proto corev1.Protocol, port int32) bool {
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			pp := corev1.ProtocolTCP
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			if pp == proto && p.Port != nil && p.Port.IntVal == port {
				return true
			}
		}
	}
	return false
}

func TestServiceMonitor_ScrapesTheMetricsPort(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			sm := one[*serviceMonitor](t, b, "extauthz")
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil || sel.Empty() {
				t.Fatalf("ServiceMonitor selector %v: %v", sm.Spec.Selector, err)
			}
			scraped := 0
			for _, s := range all[*corev1.Service](b) {
				if !sel.Matches(labels.Set(s.Labels)) {
					continue
				}
				for _, ep := range sm.Spec.Endpoints {
					for _, p := range s.Spec.Ports {
						if p.Name != ep.Port {
							continue
						}
						scraped++
						if p.Port != 9090 || ep.Path != "/metrics" {
							t.Errorf("ServiceMonitor scrapes %s:%d%s, want port 9090 /metrics", s.Name, p.Port, ep.Path)
						}
						// The alerts select job="extauthz".
						if job := s.Labels[sm.Spec.JobLabel]; sm.Spec.JobLabel == "" || job != "extauthz" {
							t.Errorf("Service %s gives job=%q (jobLabel %q), the alerts expect job=\"extauthz\"", s.Name, job, sm.Spec.JobLabel)
						}
					}
				}
			}
			if scraped != 1 {
				t.Errorf("ServiceMonitor matches %d Service ports, want exactly 1 (each pod scraped once)", scraped)
			}
		})
	}
}

func TestPrometheusRule_AlertsAreComplete(t *testing.T) {
	b := load(t, "base")
	pr := one[*prometheusRule](t, b, "extauthz")
	ops, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(ops)
	recorded := map[string]bool{}
	var alerts []string
	for _, g := range pr.Spec.Groups {
		if g.Interval != "" {
			checkPromDuration(t, g.Name+".interval", g.Interval)
		}
		for _, r := range g.Rules {
			switch {
			case r.Record != "" && r.Alert == "":
				recorded[r.Record] = true
				if r.For != "" || len(r.Annotations) != 0 {
					t.Errorf("recording rule %s has for/annotations", r.Record)
				}
			case r.Alert != "" && r.Record == "":
				alerts = append(alerts, r.Alert)
				if r.For == "" {
					t.Errorf("alert %s has no for:", r.Alert)
				} else {
					checkPromDuration(t, r.Alert+".for", r.For)
				}
				if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
					t.Errorf("alert %s severity = %q, want critical, warning or info", r.Alert, s)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("alert %s lacks the %s annotation", r.Alert, a)
					}
				}
				const prefix = "https://github.com/extauthz/extauthz/blob/main/docs/OPERATIONS.md#"
				if u := r.Annotations["runbook_url"]; !strings.HasPrefix(u, prefix) || !anchors[strings.TrimPrefix(u, prefix)] {
					t.Errorf("alert %s runbook_url %q is not a section of docs/OPERATIONS.md", r.Alert, u)
				}
			default:
				t.Errorf("rule %+v must set exactly one of record and alert", r)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("rule %s%s has no expr", r.Record, r.Alert)
			}
		}
	}
	// Every recorded series an expression uses is defined.
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			for _, name := range recordedNameRE.FindAllString(r.Expr, -1) {
				if !recorded[name] {
					t.Errorf("rule %s%s uses %s, which no rule records", r.Record, r.Alert, name)
				}
			}
		}
	}
	want := []string{
		"ExtauthzAllInstancesDown", "ExtauthzCheckLatencyHigh", "ExtauthzConfigReloadFailed",
		"ExtauthzDenyRatioSpike", "ExtauthzInstanceDown", "ExtauthzJWKSNoKeys",
		"ExtauthzJWKSRefreshFailing", "ExtauthzRedisErrors", "ExtauthzUnavailable", "ExtauthzVersionSkew",
	}
	sort.Strings(alerts)
	if diff := cmp.Diff(want, alerts); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
}

// checkPromDuration fails the test if s is not a Prometheus duration.
func checkPromDuration(t *testing.T, what, s string) {
	t.Helper()
	if !promDurationRE.MatchString(s) {
		t.Errorf("%s = %q is not a Prometheus duration", what, s)
	}
}

// markdownAnchors returns the GitHub anchors of the headings in md.
func markdownAnchors(md []byte) map[string]bool {
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var a strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				a.WriteRune(r)
			}
		}
		anchors[a.String()] = true
	}
	return anchors
}

func TestIstio_ProviderPolicyAndMeshAgree(t *testing.T) {
	b := load(t, "overlays/istio")
	mesh := readMeshConfig(t, "overlays/istio/meshconfig.yaml")
	if len(mesh.Spec.MeshConfig.ExtensionProviders) != 1 {
		t.Fatalf("meshconfig.yaml has %d extension providers, want 1", len(mesh.Spec.MeshConfig.ExtensionProviders))
	}
	prov := mesh.Spec.MeshConfig.ExtensionProviders[0]
	g := prov.EnvoyExtAuthzGrpc
	if g == nil {
		t.Fatalf("provider %s is not envoyExtAuthzGrpc", prov.Name)
	}

	svc := one[*corev1.Service](t, b, "extauthz")
	if want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"; g.Service != want {
		t.Errorf("provider service = %s, want %s", g.Service, want)
	}
	grpcPort := false
	for _, p := range svc.Spec.Ports {
		grpcPort = grpcPort || (p.Port == int32(g.Port) && strings.HasPrefix(p.Name, "grpc-"))
	}
	if !grpcPort {
		t.Errorf("provider port %d is not a grpc- port of Service %s", g.Port, svc.Name)
	}
	if g.FailOpen == nil || *g.FailOpen {
		t.Error("provider must set failOpen: false explicitly (fail closed)")
	}
	timeout, err := time.ParseDuration(g.Timeout)
	if err != nil {
		t.Fatalf("provider timeout %q: %v", g.Timeout, err)
	}
	cfg, err := config.Parse(configOf(t, b))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if cfg.Server.CheckTimeout >= timeout {
		t.Errorf("server.check_timeout %s must be below the provider timeout %s, so extauthz answers 503 itself", cfg.Server.CheckTimeout, timeout)
	}

	// The gateway policy sends requests to this provider, and the gateway's
	// pods are the ones both the NetworkPolicy and the extauthz-side policy
	// let in.
	var custom *authorizationPolicy
	for _, ap := range all[*authorizationPolicy](b) {
		if ap.Spec.Action == "CUSTOM" {
			if custom != nil {
				t.Fatal("more than one CUSTOM AuthorizationPolicy")
			}
			custom = ap
		}
	}
	if custom == nil {
		t.Fatal("no CUSTOM AuthorizationPolicy")
	}
	if custom.Spec.Provider == nil || custom.Spec.Provider.Name != prov.Name {
		t.Errorf("CUSTOM policy provider = %+v, want %s", custom.Spec.Provider, prov.Name)
	}
	if custom.Spec.Selector == nil || len(custom.Spec.Selector.MatchLabels) == 0 {
		t.Fatal("CUSTOM policy selects no workload (it would apply to the whole namespace)")
	}
	if len(custom.Spec.Rules) == 0 {
		t.Error("CUSTOM policy has no rules, so it never calls extauthz")
	}
	gwNS, gwLabels := custom.Namespace, labels.Set(custom.Spec.Selector.MatchLabels)

	np := one[*networkingv1.NetworkPolicy](t, b, "extauthz")
	c := container(t, one[*appsv1.Deployment](t, b, "extauthz"), "extauthz")
	gwAllowed := false
	for _, r := range np.Spec.Ingress {
		if !slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port != nil && resolvePort(c, *p.Port) == int32(g.Port)
		}) {
			continue
		}
		for _, peer := range r.From {
			nsOK := peer.NamespaceSelector != nil && selects(peer.NamespaceSelector, labels.Set{"kubernetes.io/metadata.name": gwNS})
			podOK := peer.PodSelector == nil || selects(peer.PodSelector, gwLabels)
			gwAllowed = gwAllowed || (nsOK && podOK)
		}
	}
	if !gwAllowed {
		t.Errorf("NetworkPolicy does not let the gateway (%s, %v) reach port %d", gwNS, gwLabels, g.Port)
	}

	pods := labels.Set(one[*appsv1.Deployment](t, b, "extauthz").Spec.Template.Labels)

	// On the extauthz side, an ALLOW policy must let the gateway's identity
	// call the provider port (any ALLOW policy denies everything else).
	principalOK := false
	for _, ap := range all[*authorizationPolicy](b) {
		if ap.Namespace != svc.Namespace || ap.Spec.Action != "ALLOW" || ap.Spec.Selector == nil ||
			!selects(&metav1.LabelSelector{MatchLabels: ap.Spec.Selector.MatchLabels}, pods) {
			continue
		}
		for _, r := range ap.Spec.Rules {
			portOK := false
			for _, to := range r.To {
				portOK = portOK || slices.Contains(to.Operation.Ports, fmt.Sprint(g.Port))
			}
			for _, from := range r.From {
				for _, p := range from.Source.Principals {
					principalOK = principalOK || (portOK && strings.Contains(p, "/ns/"+gwNS+"/sa/"))
				}
			}
		}
	}
	if !principalOK {
		t.Errorf("no ALLOW AuthorizationPolicy on the extauthz pods lets a service account of namespace %s call port %d", gwNS, g.Port)
	}
	pa := one[*peerAuthentication](t, b, "extauthz")
	if pa.Spec.Mtls == nil || pa.Spec.Mtls.Mode != "STRICT" || pa.Spec.Selector == nil ||
		!selects(&metav1.LabelSelector{MatchLabels: pa.Spec.Selector.MatchLabels}, pods) {
		t.Errorf("PeerAuthentication = %+v, want STRICT on the extauthz pods", pa.Spec)
	}
	// Prometheus, outside the mesh, scrapes the admin port in plain text.
	_, adminPort := splitAddr(t, cfg.Listen.Admin)
	if m, ok := pa.Spec.PortLevelMtls[uint32(adminPort)]; !ok || m.Mode != "PERMISSIVE" {
		t.Errorf("PeerAuthentication portLevelMtls[%d] = %+v, want PERMISSIVE", adminPort, m)
	}
}

func selects(s *metav1.LabelSelector, l labels.Set) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(l)
}

func readMeshConfig(t *testing.T, path string) *istioOperator {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var op istioOperator
	if err := decodeStrict(js, &op); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &op
}

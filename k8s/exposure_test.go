package k8s_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
)

// This file holds the tests that bound who can reach what: NetworkPolicy
// peers, the listeners the shipped configuration turns on and the ports the
// manifests expose, and the Istio CUSTOM policy's coverage.

// namespaceNameLabel is the label the API server sets on every namespace to
// its name; it is the only namespace label a workload cannot choose.
const namespaceNameLabel = "kubernetes.io/metadata.name"

var (
	errOpenRule         = errors.New("ingress rule without from: open to every pod, namespace and address")
	errAnyNamespace     = errors.New("namespaceSelector does not name the namespaces with " + namespaceNameLabel + " (= or In): any namespace whose labels match is let in")
	errNoPodSelector    = errors.New("namespaceSelector without a non-empty podSelector in the same peer: every pod of the namespace is let in")
	errEmptyPodSelector = errors.New("empty podSelector: every pod of the namespace is let in")
	errOpenIPBlock      = errors.New("ipBlock /0: every address is let in")
	errBadIPBlock       = errors.New("ipBlock is not a CIDR")
)

// ingressPeerProblem says why peer admits more than the named pods of named
// namespaces, or returns nil. A peer must bound both: the namespace by its
// name (a namespace's other labels are chosen by whoever creates it) and the
// pods by their labels (a pod chooses its own labels, so "app: envoy" alone
// admits any pod in any namespace that calls itself envoy). A podSelector
// without a namespaceSelector means the policy's own namespace, which is
// named. ipBlocks are accepted when narrower than /0 (for node CIDRs).
func ingressPeerProblem(peer networkingv1.NetworkPolicyPeer) error {
	if b := peer.IPBlock; b != nil {
		p, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			return fmt.Errorf("%w: %q", errBadIPBlock, b.CIDR)
		}
		if p.Bits() == 0 {
			return fmt.Errorf("%w: %s", errOpenIPBlock, b.CIDR)
		}
		return nil
	}
	if peer.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			return err
		}
		reqs, _ := sel.Requirements()
		named := slices.ContainsFunc(reqs, func(r labels.Requirement) bool {
			switch r.Operator() {
			case selection.Equals, selection.DoubleEquals, selection.In:
				return r.Key() == namespaceNameLabel
			}
			return false
		})
		if !named {
			return errAnyNamespace
		}
		if peer.PodSelector == nil {
			return errNoPodSelector
		}
	}
	if peer.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			return err
		}
		if sel.Empty() {
			return errEmptyPodSelector
		}
	}
	return nil
}

func TestIngressPeerProblem(t *testing.T) {
	ns := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: name}}
	}
	pods := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "envoy"}}
	tests := []struct {
		name string
		peer networkingv1.NetworkPolicyPeer
		want error
	}{
		{"named namespace and pods", networkingv1.NetworkPolicyPeer{NamespaceSelector: ns("llm-gateway"), PodSelector: pods}, nil},
		{"namespaces named with In", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: namespaceNameLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}, PodSelector: pods}, nil},
		{"pods of the policy's own namespace", networkingv1.NetworkPolicyPeer{PodSelector: pods}, nil},
		{"node CIDR", networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/16"}}, nil},
		{"pods labelled app=envoy in any namespace", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: pods}, errAnyNamespace},
		{"namespace chosen by a label its creator sets", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "gateway"}}, PodSelector: pods}, errAnyNamespace},
		{"namespace name excluded, not named", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: namespaceNameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}}}}, PodSelector: pods}, errAnyNamespace},
		{"every pod of a named namespace", networkingv1.NetworkPolicyPeer{NamespaceSelector: ns("llm-gateway")}, errNoPodSelector},
		{"empty podSelector in a named namespace", networkingv1.NetworkPolicyPeer{NamespaceSelector: ns("llm-gateway"), PodSelector: &metav1.LabelSelector{}}, errEmptyPodSelector},
		{"every pod of the own namespace", networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}, errEmptyPodSelector},
		{"every IPv4 address", networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}, errOpenIPBlock},
		{"every IPv6 address", networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}, errOpenIPBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ingressPeerProblem(tt.peer); !errors.Is(err, tt.want) {
				t.Errorf("ingressPeerProblem = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestNetworkPolicies_IngressPeersNameTheirNamespaces: every ingress peer of
// every shipped NetworkPolicy names its namespace (by kubernetes.io/metadata.name)
// and its pods in the same peer, so both must match.
func TestNetworkPolicies_IngressPeersNameTheirNamespaces(t *testing.T) {
	for dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			nps := all[*networkingv1.NetworkPolicy](load(t, dir))
			if len(nps) == 0 {
				t.Skip("no NetworkPolicy")
			}
			for _, np := range nps {
				for i, r := range np.Spec.Ingress {
					if len(r.From) == 0 {
						t.Errorf("NetworkPolicy %s ingress[%d]: %v", np.Name, i, errOpenRule)
					}
					for j, peer := range r.From {
						if err := ingressPeerProblem(peer); err != nil {
							t.Errorf("NetworkPolicy %s ingress[%d].from[%d]: %v", np.Name, i, j, err)
						}
					}
				}
			}
		})
	}
}

// TestConfigMap_ServesGRPCChecksOnly: the shipped configuration is for
// Envoy and Istio, which call the gRPC Check. The HTTP forward-auth listener
// trusts x-forwarded-* headers from whoever reaches it, and the key API mints
// credentials: neither is on unless an overlay turns it on on purpose.
func TestConfigMap_ServesGRPCChecksOnly(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			cfg, err := config.Parse(configOf(t, load(t, dir)))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			if cfg.Listen.HTTP != "" {
				t.Errorf(`listen.http = %q, want "" (off): only gRPC Checks are used here`, cfg.Listen.HTTP)
			}
			if cfg.Listen.API != "" {
				t.Errorf(`listen.api = %q, want "" (off)`, cfg.Listen.API)
			}
		})
	}
}

// istioSidecarPorts are the ports an injected Istio sidecar itself serves
// that the manifests may open: the Envoy statistics Prometheus scrapes.
var istioSidecarPorts = map[int32]bool{15090: true}

// TestExposedPorts_AreListenersTheConfigTurnsOn: every port the container,
// the Services, the NetworkPolicy and the Istio ALLOW policies open for the
// extauthz pods is a listener the shipped configuration turns on (or the
// injected sidecar's own statistics port). A port left open for a listener
// that is off invites turning it back on without noticing what it trusts.
func TestExposedPorts_AreListenersTheConfigTurnsOn(t *testing.T) {
	for _, dir := range extauthzBundles {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			cfg, err := config.Parse(configOf(t, b))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			on := map[int32]string{}
			for name, addr := range map[string]string{"grpc": cfg.Listen.GRPC, "http": cfg.Listen.HTTP, "admin": cfg.Listen.Admin, "api": cfg.Listen.API} {
				if addr != "" {
					_, port := splitAddr(t, addr)
					on[port] = name
				}
			}
			d := one[*appsv1.Deployment](t, b, "extauthz")
			c := container(t, d, "extauthz")
			pods := labels.Set(d.Spec.Template.Labels)
			sidecar := d.Spec.Template.Labels["sidecar.istio.io/inject"] == "true"
			allowed := func(port int32) bool { return on[port] != "" || (sidecar && istioSidecarPorts[port]) }
			listening := func() []string {
				var s []string
				for p, name := range on {
					s = append(s, fmt.Sprintf("%s %d", name, p))
				}
				sort.Strings(s)
				return s
			}

			for _, p := range c.Ports {
				if on[p.ContainerPort] != p.Name {
					t.Errorf("container port %s %d is not a listener the config turns on (listeners: %v)", p.Name, p.ContainerPort, listening())
				}
			}
			for _, s := range all[*corev1.Service](b) {
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
					continue
				}
				for _, p := range s.Spec.Ports {
					if got := resolvePort(c, p.TargetPort); !allowed(got) {
						t.Errorf("Service %s port %s targets %s (container port %d), not a listener the config turns on (listeners: %v)", s.Name, p.Name, p.TargetPort.String(), got, listening())
					}
				}
			}
			for _, np := range all[*networkingv1.NetworkPolicy](b) {
				if !selects(&np.Spec.PodSelector, pods) {
					continue
				}
				for i, r := range np.Spec.Ingress {
					if len(r.Ports) == 0 {
						t.Errorf("NetworkPolicy %s ingress[%d] opens every port", np.Name, i)
					}
					for _, p := range r.Ports {
						port := int32(-1)
						if p.Port != nil {
							port = resolvePort(c, *p.Port)
						}
						if p.EndPort != nil || !allowed(port) {
							t.Errorf("NetworkPolicy %s ingress[%d] opens port %v, not a listener the config turns on (listeners: %v)", np.Name, i, portString(p.Port), listening())
						}
					}
				}
			}
			for _, ap := range all[*authorizationPolicy](b) {
				if ap.Namespace != d.Namespace || ap.Spec.Action != "ALLOW" || ap.Spec.Selector == nil ||
					!selects(&metav1.LabelSelector{MatchLabels: ap.Spec.Selector.MatchLabels}, pods) {
					continue
				}
				for i, r := range ap.Spec.Rules {
					for _, to := range r.To {
						for _, ps := range to.Operation.Ports {
							port, err := strconv.ParseInt(ps, 10, 32)
							if err != nil || !allowed(int32(port)) {
								t.Errorf("AuthorizationPolicy %s rules[%d] allows port %s, not a listener the config turns on (listeners: %v)", ap.Name, i, ps, listening())
							}
						}
					}
				}
			}
		})
	}
}

func portString(p *intstr.IntOrString) string {
	if p == nil {
		return "(all)"
	}
	return p.String()
}

// TestIstio_CustomPolicyCoversEveryPath: the CUSTOM policy sends every
// request of the gateway to extauthz. A path left out (notPaths: [/healthz])
// reaches the workload without a Check, so nothing strips the x-auth-*
// identity headers a client sends there. Health checks of the gateway go
// through extauthz as a public route (which still strips them); kubelet
// probes go through the Istio agent and are not subject to the policy.
func TestIstio_CustomPolicyCoversEveryPath(t *testing.T) {
	b := load(t, "overlays/istio")
	found := false
	for _, ap := range all[*authorizationPolicy](b) {
		if ap.Spec.Action != "CUSTOM" {
			continue
		}
		found = true
		// Rules are ORed: one empty rule matches every request.
		if !slices.ContainsFunc(ap.Spec.Rules, func(r authorizationRule) bool {
			return len(r.From) == 0 && len(r.To) == 0 && len(r.When) == 0
		}) {
			t.Errorf("CUSTOM AuthorizationPolicy %s/%s has no rule matching every request (rules: %+v): requests it does not match skip extauthz and keep forged x-auth-* headers; use rules: [{}]", ap.Namespace, ap.Name, ap.Spec.Rules)
		}
	}
	if !found {
		t.Fatal("no CUSTOM AuthorizationPolicy")
	}

	// The gateway's health path is then answered by extauthz: the shipped
	// configuration must make it public.
	cfg, err := config.Parse(configOf(t, b))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	var decides *authz.Route
	for i, r := range cfg.Routes {
		if mayMatch(r.Match, "GET", gatewayHealthPath) {
			decides = &cfg.Routes[i]
			break
		}
	}
	if decides == nil || !decides.Public || decides.Match.Host != "" || len(decides.Match.ContextExtensions) != 0 {
		t.Errorf("the first route that may match GET %s in the shipped config (%+v) is not public on every host: the gateway's health checks would be denied", gatewayHealthPath, decides)
	}
}

// gatewayHealthPath is the path a load balancer probes on the LLM gateway.
const gatewayHealthPath = "/healthz"

// mayMatch reports whether m may match a request for method and path on
// some host with some context extensions (host and context extensions are
// left to the caller to judge).
func mayMatch(m authz.Match, method, path string) bool {
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, method) {
		return false
	}
	if m.Path != "" && m.Path != path {
		return false
	}
	if p := m.PathPrefix; p != "" && p != "/" && path != p && !strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
		return false
	}
	return true
}

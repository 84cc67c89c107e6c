package k8s_test

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The types below mirror the upstream schemas of the custom resources the
// manifests use (prometheus-operator's monitoring.coreos.com/v1, Istio's
// security.istio.io/v1 and install.istio.io/v1alpha1), restricted to the
// fields used here and spelt exactly as upstream, so strict decoding catches
// a misspelt or misplaced field. A field used in a manifest but missing here
// fails the test: add it with upstream's JSON name.

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel  string               `json:"jobLabel,omitempty"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// workloadSelector is Istio's type.v1beta1.WorkloadSelector.
type workloadSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

type authorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector *workloadSelector `json:"selector,omitempty"`
		Action   string            `json:"action,omitempty"`
		Provider *struct {
			Name string `json:"name"`
		} `json:"provider,omitempty"`
		Rules []authorizationRule `json:"rules,omitempty"`
	} `json:"spec"`
}

// authorizationRule is Istio's security.v1.Rule; an empty rule matches
// every request.
type authorizationRule struct {
	From []struct {
		Source struct {
			Principals        []string `json:"principals,omitempty"`
			NotPrincipals     []string `json:"notPrincipals,omitempty"`
			RequestPrincipals []string `json:"requestPrincipals,omitempty"`
			Namespaces        []string `json:"namespaces,omitempty"`
			NotNamespaces     []string `json:"notNamespaces,omitempty"`
			IPBlocks          []string `json:"ipBlocks,omitempty"`
			NotIPBlocks       []string `json:"notIpBlocks,omitempty"`
		} `json:"source"`
	} `json:"from,omitempty"`
	To []struct {
		Operation struct {
			Hosts      []string `json:"hosts,omitempty"`
			NotHosts   []string `json:"notHosts,omitempty"`
			Ports      []string `json:"ports,omitempty"`
			NotPorts   []string `json:"notPorts,omitempty"`
			Methods    []string `json:"methods,omitempty"`
			NotMethods []string `json:"notMethods,omitempty"`
			Paths      []string `json:"paths,omitempty"`
			NotPaths   []string `json:"notPaths,omitempty"`
		} `json:"operation"`
	} `json:"to,omitempty"`
	When []struct {
		Key       string   `json:"key"`
		Values    []string `json:"values,omitempty"`
		NotValues []string `json:"notValues,omitempty"`
	} `json:"when,omitempty"`
}

type mtls struct {
	Mode string `json:"mode,omitempty"`
}

type peerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector      *workloadSelector `json:"selector,omitempty"`
		Mtls          *mtls             `json:"mtls,omitempty"`
		PortLevelMtls map[uint32]mtls   `json:"portLevelMtls,omitempty"`
	} `json:"spec"`
}

// istioOperator holds meshconfig.yaml: MeshConfig.ExtensionProvider with its
// EnvoyExternalAuthorizationGrpcProvider (istio.io/api mesh/v1alpha1).
type istioOperator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string `json:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service                   string `json:"service"`
					Port                      uint32 `json:"port"`
					Timeout                   string `json:"timeout,omitempty"`
					FailOpen                  *bool  `json:"failOpen,omitempty"`
					StatusOnError             string `json:"statusOnError,omitempty"`
					IncludeRequestBodyInCheck *struct {
						MaxRequestBytes     uint32 `json:"maxRequestBytes,omitempty"`
						AllowPartialMessage bool   `json:"allowPartialMessage,omitempty"`
						PackAsBytes         bool   `json:"packAsBytes,omitempty"`
					} `json:"includeRequestBodyInCheck,omitempty"`
				} `json:"envoyExtAuthzGrpc,omitempty"`
			} `json:"extensionProviders"`
		} `json:"meshConfig"`
	} `json:"spec"`
}

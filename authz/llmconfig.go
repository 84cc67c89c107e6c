package authz

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// LLMRoute is the LLM-aware part of a route's policy. In the configuration
// file it is spread over the route: require.model, require.tools and
// model_header (see docs/LLM_POLICY.md).
type LLMRoute struct {
	// RequireModel (require.model: true) reads the requested model from the
	// body (or ModelHeader) and requires the permission model:<name>. A
	// request that names no model is refused as invalid_request.
	RequireModel bool
	// RequireTools (require.tools: true) requires tool:<name> for every
	// tool the body declares.
	RequireTools bool
	// ModelHeader (model_header) names a request header that may carry the
	// model instead of the body; when both are present they must agree.
	// Only read with RequireModel, and it never stands in for a body that
	// should have been forwarded (ErrMissingBody).
	ModelHeader string
	// ModelHeaderSetBy (model_header_set_by) names the proxy that sets
	// ModelHeader on every request, overwriting any value the client sent
	// (e.g. envoy: a header_mutation, Lua or ext_proc filter before
	// ext_authz). A client-sent header is never trusted, so ModelHeader
	// requires it. extauthz cannot verify the statement; it makes the trust
	// explicit in the configuration.
	ModelHeaderSetBy string
}

// Enabled reports whether the route reads the body at all.
func (p LLMRoute) Enabled() bool { return p.RequireModel || p.RequireTools }

// validateLLMRoute reports the problems of one route's LLM policy; path is
// the route's path ("routes[3]").
func validateLLMRoute(path string, public bool, p LLMRoute) error {
	var errs []error
	if public && (p.Enabled() || p.ModelHeader != "" || p.ModelHeaderSetBy != "") {
		errs = append(errs, fmt.Errorf("%s: a public route has no identity to check models or tools against: remove require.model, require.tools and model_header, or the public flag", path))
	}
	if p.ModelHeader != "" {
		if !p.RequireModel {
			errs = append(errs, fmt.Errorf("%s.model_header: is only read with require.model: true", path))
		}
		if !ValidHeaderName(p.ModelHeader) {
			errs = append(errs, fmt.Errorf("%s.model_header: %q must be a lower-case header name that is not a credential, content or x-envoy- header, e.g. x-model", path, p.ModelHeader))
		}
		if p.ModelHeaderSetBy == "" {
			errs = append(errs, fmt.Errorf("%s.model_header_set_by: required with model_header: name the proxy that sets %s on every request, overwriting what the client sent (e.g. model_header_set_by: envoy), or remove model_header: a header the client sets is not trusted", path, p.ModelHeader))
		}
	}
	switch {
	case p.ModelHeaderSetBy == "":
	case p.ModelHeader == "":
		errs = append(errs, fmt.Errorf("%s.model_header_set_by: is only read with model_header", path))
	case !validProxyName(p.ModelHeaderSetBy):
		errs = append(errs, fmt.Errorf("%s.model_header_set_by: %q must name a proxy in lower case, e.g. envoy", path, p.ModelHeaderSetBy))
	}
	return errors.Join(errs...)
}

// validProxyName accepts a short lower-case name: envoy, istio, nginx,
// envoy-ai-gateway.
func validProxyName(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// LLMMetrics count the LLM policy's refusals. Create them once per process
// with NewLLMMetrics; they survive config reloads.
type LLMMetrics struct {
	denials [numLLMReasons]prometheus.Counter
}

// NewLLMMetrics registers extauthz_llm_denials_total{reason} on reg (nil:
// nowhere), every reason at zero: partial_body, body_too_large,
// unsupported_content_type, malformed_body, missing_model, model_mismatch
// (400 invalid_request) and model_not_permitted, tool_not_permitted (403
// forbidden). Model and tool names are never labels.
func NewLLMMetrics(reg prometheus.Registerer) *LLMMetrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_llm_denials_total",
		Help: "Requests refused by the LLM policy (require.model, require.tools), by reason.",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(vec)
	}
	m := &LLMMetrics{}
	for i, r := range llmReasons {
		m.denials[i] = vec.WithLabelValues(string(r))
	}
	return m
}

// Count counts one refusal; other reasons are ignored.
func (m *LLMMetrics) Count(r Reason) {
	if m == nil {
		return
	}
	if i := slices.Index(llmReasons[:], r); i >= 0 {
		m.denials[i].Inc()
	}
}

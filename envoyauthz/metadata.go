package envoyauthz

import (
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/authz"
)

// identityMetadata is the decision as Envoy dynamic metadata under the
// ext_authz filter's namespace, for access logs and later filters.
func identityMetadata(d *authz.Decision) *structpb.Struct {
	m := &metadataBuilder{s: structpb.Struct{Fields: make(map[string]*structpb.Value, 10)}}
	m.add("outcome", d.Code.String())
	if d.Model != "" {
		m.add("model", d.Model)
	}
	m.add("reason", string(d.Reason))
	if d.Route != "" {
		m.add("route", d.Route)
	}
	if id := d.Identity; id != nil {
		m.add("subject", id.Subject)
		m.add("method", id.Method.String())
		if id.Issuer != "" {
			m.add("issuer", id.Issuer)
		}
		if id.KeyID != "" {
			m.add("key_id", id.KeyID)
		}
		if len(id.Roles) > 0 {
			m.add("roles", strings.Join(id.Roles, ","))
		}
		if len(id.Groups) > 0 {
			m.add("groups", strings.Join(id.Groups, ","))
		}
	}
	return &m.s
}

// metadataBuilder holds the metadata Struct and its (at most 10) string
// values in one allocation instead of two per value.
type metadataBuilder struct {
	s    structpb.Struct
	n    int
	vals [10]structpb.Value
	strs [10]structpb.Value_StringValue
}

func (m *metadataBuilder) add(key, v string) {
	i := m.n
	if i == len(m.vals) {
		m.s.Fields[key] = structpb.NewStringValue(v)
		return
	}
	m.n++
	m.strs[i].StringValue = v
	m.vals[i].Kind = &m.strs[i]
	m.s.Fields[key] = &m.vals[i]
}

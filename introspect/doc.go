// Package introspect validates opaque bearer tokens with an OAuth 2.0 token
// introspection endpoint (RFC 7662). It owns the endpoint's client (HTTP
// Basic client credentials read from a file), the strict parsing of its
// answers and a bounded cache keyed by the token's SHA-256. It does not
// decide anything: authz maps its Result to an identity and its errors to
// denials. It imports no other extauthz package but secretfile, which reads
// the client secret file.
package introspect

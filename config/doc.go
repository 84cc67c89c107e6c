// Package config owns the extauthz configuration file: its schema (composed
// of the sections that the jwks, apikeys, rolemap, ratelimit, introspect,
// keysapi and authz packages define, and its own listen, server and log
// sections), strict decoding, defaults, path resolution, and validation.
// It builds nothing: cmd/extauthz turns a Config into running parts.
//
// The whole file is validated once, here: Load and Parse call
// Config.Validate, which calls each section's Validate with the section's
// YAML path and adds the checks that span sections (a required role must be
// reachable, a permission granted, a timeout below server.check_timeout).
// Every problem is reported, joined with errors.Join, each as
// "path.key: rule". The constructors that consume a section trust it.
//
// Files: config.go (the schema, defaults, Load and Parse), decode.go
// (strict YAML decoding and the rewriting of the decoder's errors to name
// the key's path and line), listen.go and server.go (the process sections),
// validate.go and llmgrants.go (validation across sections), parts.go (the
// engine's and server's views of a loaded file).
package config

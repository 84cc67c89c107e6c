package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/introspect"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/keysapi"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/rolemap"
)

// Config is the whole configuration file.
type Config struct {
	Listen       Listen            `yaml:"listen"`
	Server       Server            `yaml:"server"`
	Log          Log               `yaml:"log"`
	JWT          jwks.Config       `yaml:"jwt"`
	APIKeys      apikeys.Config    `yaml:"api_keys"`
	RateLimits   *ratelimit.Config `yaml:"rate_limits"`
	Roles        rolemap.Roles     `yaml:"roles"`
	RoleMapping  rolemap.Mapping   `yaml:"role_mapping"`
	Routes       []authz.Route     `yaml:"routes"`
	DefaultRoute string            `yaml:"default_route"`
	Headers      authz.Headers     `yaml:"headers"`
	// PeerIdentity maps mTLS peers reported by Envoy/Istio to identities
	// (x-auth-method: mtls) for requests without a credential.
	PeerIdentity authz.PeerIdentityConfig `yaml:"peer_identity"`
	// API configures the key API and token exchange served on listen.api.
	API keysapi.Config `yaml:"api"`
	// Introspection validates opaque bearer tokens (neither API key nor
	// JWT) with an OAuth 2.0 introspection endpoint (x-auth-method:
	// opaque); nil: off.
	Introspection *introspect.Config `yaml:"introspection"`

	warnings []string
}

// Default returns the configuration before the file is applied.
func Default() Config {
	return Config{
		Listen:       defaultListen(),
		Server:       defaultServer(),
		Log:          defaultLog(),
		JWT:          jwks.Default(),
		APIKeys:      apikeys.Default(),
		DefaultRoute: authz.DefaultRouteDeny,
		Headers:      authz.DefaultHeaders(),
		API:          keysapi.Default(),
	}
}

// Load reads, decodes and validates the file at path. Relative file paths in
// it (jwks_file, hmac_secret_file, password_file, ca_file, api_keys.file) are resolved against
// the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.resolvePaths(filepath.Dir(path))
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates a configuration held in memory. Relative paths
// stay relative to the working directory.
func Parse(data []byte) (*Config, error) {
	cfg, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Warnings returns what Validate found questionable but not wrong.
func (c *Config) Warnings() []string { return c.warnings }
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.JWT.Providers {
		abs(&c.JWT.Providers[i].JWKSFile)
		abs(&c.JWT.Providers[i].CAFile)
		abs(&c.JWT.Providers[i].HMACSecretFile)
	}
	abs(&c.APIKeys.File)
	abs(&c.Listen.TLS.CertFile)
	abs(&c.Listen.TLS.KeyFile)
	abs(&c.Listen.TLS.ClientCAFile)
	if r := c.APIKeys.Redis; r != nil {
		abs(&r.PasswordFile)
		abs(&r.CAFile)
	}
	if c.RateLimits != nil && c.RateLimits.Redis != nil {
		abs(&c.RateLimits.Redis.PasswordFile)
		abs(&c.RateLimits.Redis.CAFile)
	}
	if in := c.Introspection; in != nil {
		abs(&in.ClientSecretFile)
		abs(&in.CAFile)
	}
}

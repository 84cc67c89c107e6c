package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/introspect"
)

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// decode applies the file over the defaults, strictly: an unknown key is an
// error naming the key and its line, and a second YAML document is refused.
func decode(data []byte) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: at least listen and routes are needed (see examples/dev/config.yaml)")
		}
		return nil, friendlyYAMLError(err, data)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document (a second '---'): put everything in one document")
	}
	for i := range cfg.JWT.Providers {
		cfg.JWT.Providers[i].ApplyDefaults()
	}
	if in := cfg.Introspection; in != nil {
		// The default timeout must leave the check time to answer: 500ms,
		// or two thirds of a shorter server.check_timeout.
		if in.Timeout == 0 && cfg.Server.CheckTimeout > 0 {
			in.Timeout = min(introspect.DefaultTimeout, cfg.Server.CheckTimeout*2/3)
		}
		in.ApplyDefaults()
	}
	return &cfg, nil
}

var lineRef = regexp.MustCompile(`^line (\d+): `)

// friendlyYAMLError rewrites the decoder's messages so that each names the
// key (by its dotted path) and says how to fix it.
func friendlyYAMLError(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	msgs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			line := 0
			fmt.Sscan(m[1], &line)
			// The key's own position in the document names its section
			// (api_keys.redis and rate_limits.redis share one Go type).
			section := "the top level"
			if p := pathOfKey(&root, line, m[2], ""); p != "" {
				if i := strings.LastIndexAny(p, ".["); i > 0 {
					section = p[:i]
				}
			}
			msgs = append(msgs, fmt.Errorf("line %s: unknown key %q in %s: check its spelling and indentation (the README lists every key)", m[1], m[2], section))
			continue
		}
		if m := lineRef.FindStringSubmatch(e); m != nil {
			line := 0
			fmt.Sscan(m[1], &line)
			if key := keyAtLine(&root, line, ""); key != "" {
				e = "line " + m[1] + " (" + key + "): " + strings.TrimPrefix(e, m[0])
			}
		}
		if strings.Contains(e, "time.Duration") {
			e += `: durations are strings with a unit, e.g. "300ms", "30s" or "5m"`
		}
		msgs = append(msgs, errors.New(e))
	}
	return errors.Join(msgs...)
}

// keyAtLine returns the dotted path of the deepest mapping key on line (or
// whose scalar value is on line), or "".
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			// The deepest key on the line wins (flow maps put several on one).
			if found := keyAtLine(v, line, path); found != "" {
				return found
			}
			if k.Line == line || (v.Line == line && v.Kind == yaml.ScalarNode) {
				return path
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if found := keyAtLine(c, line, fmt.Sprintf("%s[%d]", prefix, i)); found != "" {
				return found
			}
		}
	}
	return ""
}

// pathOfKey returns the dotted path of the mapping key named name on line,
// or "". Unlike keyAtLine it finds the key itself when a flow map puts
// several keys, or a nested map, on the same line.
func pathOfKey(n *yaml.Node, line int, name, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := pathOfKey(c, line, name, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if k.Line == line && k.Value == name {
				return path
			}
			if p := pathOfKey(v, line, name, path); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := pathOfKey(c, line, name, fmt.Sprintf("%s[%d]", prefix, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

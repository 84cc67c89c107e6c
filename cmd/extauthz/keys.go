package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extauthz/extauthz/apikeys"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/ratelimit"
)

const keysUsage = `Usage:
  extauthz keys create --config FILE --owner NAME [--groups a,b] [--roles r] [--ttl 720h] [--description TEXT]
                       [--rate-limit 10/1m[,burst=N]] [--json]
  extauthz keys list   --config FILE [--owner NAME [--issuer URL]] [--json]
  extauthz keys show   --config FILE ID [--json]
  extauthz keys revoke --config FILE ID
  extauthz keys revoke --config FILE --owner NAME [--issuer URL]

The key store is the one of api_keys in FILE: Redis, or the embedded store's
api_keys.file in development. create prints the secret once; only its SHA-256
is stored. --rate-limit gives the key its own limit, which beats every
limit of rate_limits and routes and is counted per key. Flags may come
before or after ID.

Owners are qualified by an issuer: keys created here belong to the CLI
namespace (no issuer); keys minted through the key API by a JWT caller
(self-service, token exchange) belong to that JWT's issuer. --issuer picks
that namespace for list and revoke --owner; without it they act on the CLI
namespace only. revoke --owner revokes every key of the owner and prints
how many.
`

// runKeys implements `extauthz keys create|list|show|revoke`. It returns 0 on
// success, 1 when the operation fails (store unreachable, unknown id, bad
// config file) and 2 on a usage error.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	k := &keysCmd{stdout: stdout, stderr: stderr, name: "extauthz keys " + args[0]}
	switch args[0] {
	case "create":
		return k.create(ctx, args[1:])
	case "list":
		return k.list(ctx, args[1:])
	case "show":
		return k.show(ctx, args[1:])
	case "revoke":
		return k.revoke(ctx, args[1:])
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, keysUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "extauthz keys: unknown command %q\n\n%s", args[0], keysUsage)
		return 2
	}
}

type keysCmd struct {
	stdout, stderr io.Writer
	name           string // "extauthz keys create"
	configPath     string
	cfg            *config.Config
}

// flags returns a FlagSet with --config.
func (k *keysCmd) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(k.name, flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	fs.StringVar(&k.configPath, "config", "", "configuration file (required)")
	fs.Usage = func() {
		fmt.Fprintf(k.stderr, "%s\n", keysUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before, between or after positional
// arguments ("show ID --json" and "show --json ID") and returns the
// positional ones. When done is true the command ends with exit code.
func (k *keysCmd) parse(fs *flag.FlagSet, args []string, positional int) (pos []string, code int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, 2, true
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	switch {
	case len(pos) == positional:
	case positional == 0:
		return nil, k.usage("unexpected argument %q", pos[0]), true
	case len(pos) == 0:
		return nil, k.usage("missing key ID (key_…)"), true
	default:
		return nil, k.usage("expected one key ID, got %d arguments", len(pos)), true
	}
	if k.configPath == "" {
		return nil, k.usage("--config is required"), true
	}
	return pos, 0, false
}

func (k *keysCmd) usage(format string, a ...any) int {
	fmt.Fprintf(k.stderr, "%s: %s\n\n%s", k.name, fmt.Sprintf(format, a...), keysUsage)
	return 2
}

func (k *keysCmd) fail(err error) int {
	fmt.Fprintf(k.stderr, "%s: %s\n", k.name, err)
	return 1
}

// open loads the configuration and opens its key store.
func (k *keysCmd) open(ctx context.Context) (*apikeys.Store, int) {
	cfg, err := config.Load(k.configPath)
	if err != nil {
		return nil, k.fail(err)
	}
	k.cfg = cfg
	if cfg.APIKeys.Redis == nil && cfg.APIKeys.File == "" {
		return nil, k.fail(errors.New("api_keys has neither a redis section nor a file: keys made here would vanish when this command exits; set api_keys.redis (or api_keys.file for development)"))
	}
	// The store's own log lines (connection warnings) would only repeat the
	// error that the operation returns.
	s, err := apikeys.New(ctx, cfg.APIKeys, apikeys.Deps{Logger: slog.New(slog.DiscardHandler), Password: os.Getenv("REDIS_PASSWORD")})
	if err != nil {
		return nil, k.fail(err)
	}
	return s, 0
}

// opError explains a store error to an operator.
func (k *keysCmd) opError(err error, id string) int {
	switch {
	case errors.Is(err, apikeys.ErrCorrupt):
		return k.fail(fmt.Errorf("%w (the key is refused until its record is fixed; see the apikeys package docs)", err))
	case errors.Is(err, apikeys.ErrNotFound):
		return k.fail(fmt.Errorf("no key with id %q (ids look like key_AbC123dEf456; revoked keys are kept %d days)", id, int(apikeys.TombstoneTTL.Hours()/24)))
	case errors.Is(err, apikeys.ErrUnavailable):
		return k.fail(fmt.Errorf("cannot reach the key store: %w", err))
	}
	return k.fail(err)
}

// listFlag collects comma-separated values from one or more flags.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func (k *keysCmd) create(ctx context.Context, args []string) int {
	fs := k.flags()
	var groups, roles listFlag
	owner := fs.String("owner", "", "owner of the key, sent upstream as x-auth-subject (required)")
	fs.Var(&groups, "groups", "comma-separated groups, mapped to roles by role_mapping (repeatable)")
	fs.Var(&roles, "roles", "comma-separated roles granted directly; must exist under roles (repeatable)")
	ttl := fs.Duration("ttl", 0, "lifetime, e.g. 720h for 30 days (default: never expires)")
	desc := fs.String("description", "", "free text shown by list and show")
	var limit *apikeys.RateLimit
	fs.Func("rate-limit", "the key's own rate limit, REQUESTS/PER[,burst=N], e.g. 10/1m or 600/1h,burst=20 (default: the configured limits)", func(v string) error {
		l, err := ratelimit.ParseLimit(v)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "ratelimit: "))
		}
		rl := apikeys.RateLimit(l)
		limit = &rl
		return nil
	})
	asJSON := fs.Bool("json", false, "print JSON, the key API's form (includes the key, once)")
	if _, code, done := k.parse(fs, args, 0); done {
		return code
	}
	if *owner == "" {
		return k.usage("--owner is required")
	}
	if *ttl < 0 {
		return k.usage("--ttl must not be negative")
	}
	s, code := k.open(ctx)
	if code != 0 {
		return code
	}
	defer s.Close()
	var unknown []string
	for _, r := range roles {
		if _, ok := k.cfg.Roles[r]; !ok {
			unknown = append(unknown, r)
		}
	}
	if len(unknown) > 0 {
		defined := make([]string, 0, len(k.cfg.Roles))
		for r := range k.cfg.Roles {
			defined = append(defined, r)
		}
		slices.Sort(defined)
		return k.usage("--roles: %s not defined under roles in %s (defined: %s)",
			strings.Join(unknown, ", "), k.configPath, strings.Join(defined, ", "))
	}

	secret, rec, err := s.Create(ctx, apikeys.CreateOptions{
		Owner: *owner, Groups: groups, Roles: roles, Description: *desc, TTL: *ttl, RateLimit: limit,
	})
	if errors.Is(err, apikeys.ErrInvalid) {
		return k.usage("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if err != nil {
		return k.opError(err, "")
	}
	if *asJSON {
		return k.writeJSON(apikeys.CreatedKey{Key: secret, KeyView: rec.View(time.Now())})
	}
	fmt.Fprintf(k.stdout, "Created API key %s.\n\n", rec.ID)
	k.describe(rec)
	fmt.Fprintf(k.stdout, "\nKey (shown only this once; only its SHA-256 is stored, so it cannot be recovered):\n\n  %s\n\n", secret)
	fmt.Fprintf(k.stdout, "Send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\".\n")
	return 0
}

func (k *keysCmd) list(ctx context.Context, args []string) int {
	fs := k.flags()
	owner := fs.String("owner", "", "only this owner's keys")
	issuer := fs.String("issuer", "", "with --owner: the owner's issuer (default: the CLI namespace)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code, done := k.parse(fs, args, 0); done {
		return code
	}
	if *issuer != "" && *owner == "" {
		return k.usage("--issuer needs --owner")
	}
	s, code := k.open(ctx)
	if code != 0 {
		return code
	}
	defer s.Close()
	recs, err := s.ListOwned(ctx, *issuer, *owner)
	if err != nil {
		return k.opError(err, "")
	}
	now := time.Now()
	if *asJSON {
		views := make([]apikeys.KeyView, len(recs))
		for i, r := range recs {
			views[i] = r.View(now)
		}
		return k.writeJSON(views)
	}
	if len(recs) == 0 {
		fmt.Fprintln(k.stdout, "No API keys.")
		return 0
	}
	tw := tabwriter.NewWriter(k.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tISSUER\tSTATUS\tGROUPS\tROLES\tRATE LIMIT\tCREATED\tEXPIRES\tHASH\tDESCRIPTION")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, r.Owner, orDash(r.Issuer), r.Status(now), orDash(strings.Join(r.Groups, ",")), orDash(strings.Join(r.Roles, ",")), limitString(r.RateLimit),
			r.CreatedAt.UTC().Format(time.RFC3339), orNever(r.ExpiresAt), apikeys.HashPrefix(r.Hash), oneLine(r.Description, 40))
	}
	if err := tw.Flush(); err != nil {
		return k.fail(err)
	}
	return 0
}

func (k *keysCmd) show(ctx context.Context, args []string) int {
	fs := k.flags()
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, done := k.parse(fs, args, 1)
	if done {
		return code
	}
	s, code := k.open(ctx)
	if code != 0 {
		return code
	}
	defer s.Close()
	rec, err := s.Get(ctx, pos[0])
	if err != nil {
		return k.opError(err, pos[0])
	}
	if *asJSON {
		return k.writeJSON(rec.View(time.Now()))
	}
	k.describe(rec)
	return 0
}

func (k *keysCmd) revoke(ctx context.Context, args []string) int {
	fs := k.flags()
	owner := fs.String("owner", "", "revoke every key of this owner instead of one ID")
	issuer := fs.String("issuer", "", "with --owner: the owner's issuer (default: the CLI namespace)")
	positional := 1
	if slices.ContainsFunc(args, func(a string) bool {
		return a == "--owner" || a == "-owner" || strings.HasPrefix(a, "--owner=") || strings.HasPrefix(a, "-owner=")
	}) {
		positional = 0
	}
	pos, code, done := k.parse(fs, args, positional)
	if done {
		return code
	}
	switch {
	case positional == 0 && *owner == "":
		return k.usage("--owner needs a name")
	case *issuer != "" && *owner == "":
		return k.usage("--issuer needs --owner")
	}
	s, code := k.open(ctx)
	if code != 0 {
		return code
	}
	defer s.Close()
	if *owner != "" {
		return k.revokeOwner(ctx, s, *issuer, *owner)
	}
	id := pos[0]
	rec, err := s.Get(ctx, id)
	if err != nil {
		return k.opError(err, id)
	}
	if !rec.RevokedAt.IsZero() {
		fmt.Fprintf(k.stdout, "Key %s (owner %s) was already revoked at %s.\n", id, rec.Owner, rec.RevokedAt.UTC().Format(time.RFC3339))
		return 0
	}
	if err := s.Revoke(ctx, id); err != nil {
		return k.opError(err, id)
	}
	where := "Every replica refuses it within a second"
	if s.Embedded() {
		where = "A server sharing " + k.cfg.APIKeys.File + " refuses it within a second or two"
	}
	fmt.Fprintf(k.stdout, "Revoked key %s (owner %s). %s; it stays listed as revoked for up to %d days.\n",
		id, rec.Owner, where, int(apikeys.TombstoneTTL.Hours()/24))
	return 0
}

// revokeOwner revokes every key of owner in issuer's namespace.
func (k *keysCmd) revokeOwner(ctx context.Context, s *apikeys.Store, issuer, owner string) int {
	n, err := s.RevokeOwner(ctx, issuer, owner)
	who := fmt.Sprintf("owner %q", owner)
	if issuer != "" {
		who += fmt.Sprintf(" of issuer %q", issuer)
	} else {
		who += " (CLI namespace; --issuer names a JWT issuer's)"
	}
	if err != nil {
		fmt.Fprintf(k.stderr, "%s: revoked %d keys of %s, then failed: %v\n", k.name, n, who, err)
		return 1
	}
	fmt.Fprintf(k.stdout, "Revoked %d keys of %s.\n", n, who)
	return 0
}

// describe prints a record as "field: value" lines.
func (k *keysCmd) describe(r *apikeys.Record) {
	tw := tabwriter.NewWriter(k.stdout, 0, 0, 1, ' ', 0)
	row := func(name, v string) { fmt.Fprintf(tw, "  %s:\t%s\n", name, v) }
	row("id", r.ID)
	row("owner", r.Owner)
	row("issuer", orDash(r.Issuer)+issuerNote(r.Issuer))
	row("status", r.Status(time.Now()))
	row("groups", orDash(strings.Join(r.Groups, ", ")))
	row("roles", orDash(strings.Join(r.Roles, ", ")))
	if r.RateLimit != nil {
		row("rate limit", limitString(r.RateLimit)+" (this key's own: beats the configured limits)")
	} else {
		row("rate limit", "- (the configured limits apply)")
	}
	if r.Description != "" {
		row("description", r.Description)
	}
	row("created", r.CreatedAt.UTC().Format(time.RFC3339))
	row("expires", orNever(r.ExpiresAt))
	if !r.RevokedAt.IsZero() {
		row("revoked", r.RevokedAt.UTC().Format(time.RFC3339))
	}
	row("hash", apikeys.HashPrefix(r.Hash)+"… (SHA-256 of the key)")
	_ = tw.Flush()
}

// limitString formats a key's own limit as --rate-limit reads it ("10/1m",
// "10/1m,burst=5"), or "-" for none.
func limitString(l *apikeys.RateLimit) string {
	if l == nil {
		return "-"
	}
	return ratelimit.Limit(*l).String()
}

func (k *keysCmd) writeJSON(v any) int {
	enc := json.NewEncoder(k.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return k.fail(err)
	}
	return 0
}

func issuerNote(iss string) string {
	if iss == "" {
		return " (CLI namespace)"
	}
	return " (minted by a JWT of this issuer)"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// oneLine shortens s to n runes on one line for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return orDash(s)
}

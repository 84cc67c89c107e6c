package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/extauthz/extauthz/config"
)

// runCheckConfig validates a config file without serving. Every problem is
// listed, one per line; the exit code is 1 when there is any.
func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file to check (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: extauthz check-config --config FILE")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid\n", *path)
		for _, line := range flatten(err) {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "  warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

// flatten lists the leaves of an errors.Join tree, one message each.
func flatten(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	// A wrapper around a joined error ("config x: a\nb") keeps its prefix on
	// the first line only; split so every problem stands on its own.
	var inner interface{ Unwrap() []error }
	if errors.As(err, &inner) {
		return flatten(inner.(error))
	}
	return strings.Split(err.Error(), "\n")
}

#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each (default 20s,
# `make fuzz FUZZTIME=1m`). It goes on past a failing target and exits
# non-zero at the end if any failed. go test writes a failing input to
# <pkg>/testdata/fuzz/<Target>/; check it in with the fix, so that
# `make test` (which runs every seed corpus) keeps it as a regression test.
set -uo pipefail
t=${1:-20s}
failed=()
while read -r pkg dir; do
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== $pkg $f ($t)"
    if ! go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"; then
      failed+=("$pkg $f")
    fi
  done
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "every fuzz target ran for $t without a failure"

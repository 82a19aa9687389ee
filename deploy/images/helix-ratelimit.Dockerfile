# syntax=docker/dockerfile:1
# helix-ratelimit: envoyproxy/ratelimit from its Go module (cmd/helix-ratelimit
# is a Go module of its own), limits from helix-xds, counters in Redis.
# Static Go binary on distroless, running as uid 65532. Build from the
# repository root:
#   docker build -f deploy/images/helix-ratelimit.Dockerfile -t REGISTRY/helix-ratelimit:VERSION .
ARG GO_IMAGE=golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639

FROM ${GO_IMAGE} AS build
WORKDIR /src/cmd/helix-ratelimit
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY cmd/helix-ratelimit/go.mod cmd/helix-ratelimit/go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/helix-ratelimit/ ./
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.Version=${VERSION}" -o /out/helix-ratelimit .

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="helix-ratelimit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/helixflow/helixflow"
COPY --from=build /out/helix-ratelimit /usr/local/bin/helix-ratelimit
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/helix-ratelimit"]

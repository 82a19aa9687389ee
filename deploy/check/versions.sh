# Versions of the deployment tools, read by scripts/deps.sh (which builds
# them into .tools/<tool>-<version>) and deploy/check/test.sh.
HELM_VERSION=v3.22.0
HELM_KUBE_MINOR=37      # the client-go minor version Helm reports as its Kubernetes
TOFU_VERSION=v1.12.6
TFLINT_VERSION=v0.64.0

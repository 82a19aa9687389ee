// Package check holds the offline checks of HelixFlow's deployment files,
// run by `make test-deploy` (go test in this module):
//
//   - the Helm chart (deploy/helm/helixflow): rendered with Helm's own
//     packages over every values file in deploy/helm/test-values, each
//     object decoded strictly with client-go's scheme plus the cert-manager
//     and prometheus-operator types (an unknown or duplicate field fails),
//     then checked against the policies in policy.go; the values files in
//     deploy/helm/test-values/bad must fail with the message they name;
//   - the Dockerfiles (deploy/images): parsed with buildkit's parser and
//     checked against the rules in dockerfile.go;
//   - the Terraform modules (terraform/): parsed with hcl/v2 and checked
//     for undeclared or unused variables, locals and references, module
//     calls that miss required inputs or pass unknown ones, and outputs
//     that name outputs a module does not have (terraform.go).
//
// It is a module of its own so that Helm's and buildkit's dependencies stay
// out of the main go.mod.
package check

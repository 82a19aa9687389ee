package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ServiceAccountNamespaceFile holds the pod's own namespace.
const ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ErrNoNamespace: no namespace was given and none could be read.
var ErrNoNamespace = errors.New("kubernetes: no namespace")

// RESTConfig is the API server connection: from the kubeconfig file when
// one is named, else the pod's service account (in-cluster).
func RESTConfig(kubeconfig, userAgent string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (outside a cluster, name a kubeconfig file): %w", err)
		}
	}
	cfg.UserAgent = userAgent
	return cfg, nil
}

// NamespaceFromFile reads a namespace as the service-account volume holds
// it (ServiceAccountNamespaceFile).
func NamespaceFromFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoNamespace, err)
	}
	ns := strings.TrimSpace(string(b))
	if ns == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrNoNamespace, path)
	}
	if err := ValidNamespace(ns); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return ns, nil
}

// ValidNamespace checks a namespace name (an RFC 1123 label).
func ValidNamespace(ns string) error {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return fmt.Errorf("%w: namespace %q: %s", ErrInvalid, clip(ns), strings.Join(msgs, "; "))
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/helixflow/helixflow/xds/builder"
	"github.com/helixflow/helixflow/xds/kube"
	"github.com/helixflow/helixflow/xds/registry"
)

// The values of --workers-source.
const (
	sourceRegistry   = "registry"
	sourceKubernetes = "kubernetes"
)

// workerFlags adds the flags that choose and configure the worker source.
func workerFlags(fs *flag.FlagSet, o *options) {
	o.kubeNamespaceFile = kube.ServiceAccountNamespaceFile
	fs.StringVar(&o.workersSource, "workers-source", sourceRegistry, "where workers come from: registry (workers register over gRPC on --xds-listen) or kubernetes (EndpointSlices of worker Services; the registry is not served)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "with --workers-source=kubernetes: kubeconfig file (empty: the pod's service account, in-cluster)")
	fs.StringVar(&o.kubeNamespace, "kube-namespace", "", "with --workers-source=kubernetes: namespace of the worker Services (empty: the pod's own, from "+kube.ServiceAccountNamespaceFile+")")
	fs.DurationVar(&o.kubeSyncTimeout, "kube-sync-timeout", kube.DefaultSyncTimeout, "with --workers-source=kubernetes: how long the start may wait for the first list of Services and EndpointSlices")
}

// checkWorkerFlags refuses flags that the chosen source would ignore.
func checkWorkerFlags(fs *flag.FlagSet, o *options) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch o.workersSource {
	case sourceRegistry:
		for _, name := range []string{"kubeconfig", "kube-namespace", "kube-sync-timeout"} {
			if set[name] {
				return fmt.Errorf("--%s needs --workers-source=%s", name, sourceKubernetes)
			}
		}
	case sourceKubernetes:
		for _, name := range []string{"lease-ttl"} {
			if set[name] {
				return fmt.Errorf("--%s is for --workers-source=%s (Kubernetes workers do not register)", name, sourceRegistry)
			}
		}
		if o.kubeNamespace != "" {
			if err := kube.ValidNamespace(o.kubeNamespace); err != nil {
				return fmt.Errorf("--kube-namespace: %w", err)
			}
		}
		if o.kubeSyncTimeout <= 0 {
			return fmt.Errorf("--kube-sync-timeout %v: want a positive duration", o.kubeSyncTimeout)
		}
	default:
		return fmt.Errorf("--workers-source %q: want %s or %s", o.workersSource, sourceRegistry, sourceKubernetes)
	}
	return nil
}

// openWorkers starts the chosen worker source. served is the registry to
// serve over gRPC, nil with Kubernetes. A Kubernetes source is complete
// when openWorkers returns (its caches synced), so no startup grace is
// needed for it.
func openWorkers(ctx context.Context, o *options, reg prometheus.Registerer, log *slog.Logger) (src builder.Source, served *registry.Registry, err error) {
	if o.workersSource == sourceKubernetes {
		ks, err := openKube(ctx, o, reg, log.With("component", "kube"))
		if err != nil {
			return nil, nil, err
		}
		return ks, nil, nil
	}
	// With TLS, a worker registers with its own identity (a SPIFFE ID in
	// its client certificate), to which the registry binds its worker ids.
	var identify func(context.Context) (string, error)
	if o.tlsCert != "" {
		identify = registry.WorkerIdentity
	}
	workers, err := registry.New(registry.Config{TTL: o.leaseTTL, Identify: identify, Registerer: reg, Logger: log.With("component", "registry")})
	if err != nil {
		return nil, nil, fmt.Errorf("worker registry: %w", err)
	}
	go func() { _ = workers.Run(ctx) }()
	return workers, workers, nil
}

var errKube = errors.New("--workers-source=kubernetes")

// logClientGo sends client-go's logs (klog) to log, so that helix-xds
// keeps one structured log. klog is global: call it once, before anything
// that logs through it starts.
func logClientGo(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
}

func openKube(ctx context.Context, o *options, reg prometheus.Registerer, log *slog.Logger) (*kube.Source, error) {
	ns := o.kubeNamespace
	if ns == "" {
		var err error
		if ns, err = kube.NamespaceFromFile(o.kubeNamespaceFile); err != nil {
			return nil, fmt.Errorf("%w: --kube-namespace is empty and the pod's namespace is unknown: %w", errKube, err)
		}
	}
	cfg, err := kube.RESTConfig(o.kubeconfig, "helix-xds")
	if err != nil {
		return nil, fmt.Errorf("%w: --kubeconfig: %w", errKube, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKube, err)
	}
	src, err := kube.New(kube.Config{Client: client, Namespace: ns, SyncTimeout: o.kubeSyncTimeout, Registerer: reg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKube, err)
	}
	if err := src.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errKube, err)
	}
	return src, nil
}

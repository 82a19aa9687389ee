package kube

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/helixflow/helixflow/xds/registry"
)

// problem is an object left out, in whole or in part, for breaking the
// contract; Source logs each once.
type problem struct {
	kind    string // "Service" or "EndpointSlice"
	name    string // namespace/name
	service string // for an EndpointSlice: its Service
	err     error
	// partial: a Service that still serves its valid models.
	partial bool
}

func (p problem) key() string { return p.kind + " " + p.name }

// endpointKey is where Envoy connects: one worker per gRPC endpoint.
type endpointKey struct {
	addr netip.Addr
	port uint32
}

// identity is one worker process as Kubernetes names it: its pod (or its
// address when the endpoint names no pod) and its gRPC port.
type identity struct {
	id   string
	port uint32
}

type worker struct {
	id       string
	key      endpointKey
	httpPort uint32
	routable bool
	// pool is its Service's PoolLabel (the lower name when two Services
	// list the pod).
	pool string
	// models: the model's name -> whether it gets sequence routing.
	models map[string]bool
}

// merge folds another copy of the same worker into w: models are the
// union (a model is a sequence model if either says so), routable only if
// both say so, and of two addresses (a dual-stack
// pod) IPv4 first, then the lower, so that the choice does not depend on
// the order of the slices.
func (w *worker) merge(o *worker) {
	w.routable = w.routable && o.routable
	w.pool = min(w.pool, o.pool)
	for m, seq := range o.models {
		w.models[m] = w.models[m] || seq
	}
	if preferAddr(o.key.addr, w.key.addr) {
		w.key.addr = o.key.addr
	}
	if o.id < w.id {
		w.id = o.id
	}
}

func preferAddr(a, b netip.Addr) bool {
	if a.Is4() != b.Is4() {
		return a.Is4()
	}
	return a.Less(b)
}

// buildTable joins the worker Services of namespace with their
// EndpointSlices into the worker table, ordered by id. Objects of other
// namespaces, Services without the worker label and slices of other
// Services are ignored; objects that break the contract are left out and
// reported.
//
// An endpoint listed more than once (a pod moving between slices, or
// behind two worker Services) is one worker: its models are the union,
// and it is routable only if every copy says so.
func buildTable(namespace string, services []*corev1.Service, epSlices []*discoveryv1.EndpointSlice) ([]registry.Worker, []problem) {
	var problems []problem
	services = slices.Clone(services)
	slices.SortFunc(services, func(a, b *corev1.Service) int { return cmp.Compare(a.Name, b.Name) })
	type pool struct {
		name     string
		models   []string
		sequence map[string]bool
	}
	pools := make(map[string]pool, len(services))
	for _, s := range services {
		if s.Namespace != namespace || s.Labels[ComponentLabel] != WorkerComponent {
			continue
		}
		name, err := parsePool(s.Labels)
		if err != nil {
			problems = append(problems, problem{kind: "Service", name: namespace + "/" + s.Name, err: err})
			continue
		}
		models, err := parseModels(s.Annotations)
		var seq map[string]bool
		if len(models) > 0 {
			var serr error
			seq, serr = parseSequenceModels(s.Annotations, models)
			err = errors.Join(err, serr)
			pools[s.Name] = pool{name: name, models: models, sequence: seq}
		}
		if err != nil {
			problems = append(problems, problem{kind: "Service", name: namespace + "/" + s.Name, err: err, partial: len(models) > 0})
		}
	}

	epSlices = slices.Clone(epSlices)
	slices.SortFunc(epSlices, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Or(cmp.Compare(a.Labels[discoveryv1.LabelServiceName], b.Labels[discoveryv1.LabelServiceName]), cmp.Compare(a.Name, b.Name))
	})
	byIdentity := map[identity]*worker{}
	var order []*worker
	for _, es := range epSlices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		p, ok := pools[svc]
		if es.Namespace != namespace || !ok {
			continue
		}
		report := func(err error) {
			problems = append(problems, problem{kind: "EndpointSlice", name: namespace + "/" + es.Name, service: namespace + "/" + svc, err: err})
		}
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			report(fmt.Errorf("%w: addressType %q: Envoy takes IP addresses only (IPv4, IPv6)", ErrInvalid, es.AddressType))
			continue
		}
		grpcPort, httpPort, err := slicePorts(es.Ports)
		if err != nil {
			report(err)
			continue
		}
		var bad []string
		for i, ep := range es.Endpoints {
			addr, err := endpointAddr(es.AddressType, ep.Addresses)
			if err != nil {
				bad = append(bad, fmt.Sprintf("endpoints[%d]: %v", i, err))
				continue
			}
			w := &worker{id: workerID(ep, addr), key: endpointKey{addr, grpcPort}, httpPort: httpPort, routable: routable(ep.Conditions), pool: p.name, models: make(map[string]bool, len(p.models))}
			for _, m := range p.models {
				w.models[m] = p.sequence[m]
			}
			// The first copy's HTTP port stands; copies normally agree.
			if prev := byIdentity[identity{w.id, grpcPort}]; prev != nil {
				prev.merge(w)
				continue
			}
			byIdentity[identity{w.id, grpcPort}] = w
			order = append(order, w)
		}
		if len(bad) > 0 {
			more := ""
			if len(bad) > 1 {
				more = fmt.Sprintf(" (and %d more)", len(bad)-1)
			}
			report(fmt.Errorf("%w: %s%s", ErrInvalid, bad[0], more))
		}
	}
	return workers(unique(order)), problems
}

// unique merges workers that share an endpoint (a stale slice still
// listing a deleted pod whose address a new pod got, or one slice naming
// the pod and another not): Envoy cannot tell them apart, and a pool must
// not list an endpoint twice.
func unique(order []*worker) []*worker {
	byKey := make(map[endpointKey]*worker, len(order))
	out := order[:0]
	for _, w := range order {
		if prev := byKey[w.key]; prev != nil {
			prev.merge(w)
			continue
		}
		byKey[w.key] = w
		out = append(out, w)
	}
	return out
}

// workers turns the merged endpoints into registry workers, ordered by id.
// A pod behind two gRPC ports is two workers: their ids get the port.
func workers(order []*worker) []registry.Worker {
	ids := make(map[string]int, len(order))
	for _, w := range order {
		ids[w.id]++
	}
	out := make([]registry.Worker, 0, len(order))
	for _, w := range order {
		id := w.id
		if ids[id] > 1 {
			id = fmt.Sprintf("%s:%d", id, w.key.port)
		}
		models := make([]registry.Model, 0, len(w.models))
		for m, seq := range w.models {
			// The pool declares the model: it is loaded once the pod is
			// ready, and the pod's readiness is the worker's. The contract
			// names models, not versions.
			models = append(models, registry.Model{Name: m, Ready: true, Sequence: seq})
		}
		slices.SortFunc(models, func(a, b registry.Model) int { return cmp.Compare(a.Name, b.Name) })
		out = append(out, registry.Worker{
			ID: id, Address: w.key.addr.String(), GRPCPort: w.key.port, HTTPPort: w.httpPort,
			Ready: w.routable, Pool: w.pool, Models: models,
		})
	}
	slices.SortFunc(out, func(a, b registry.Worker) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Address, b.Address), cmp.Compare(a.GRPCPort, b.GRPCPort))
	})
	return out
}

// slicePorts finds the TCP ports named grpc (required) and http (optional).
func slicePorts(ports []discoveryv1.EndpointPort) (grpc, http uint32, err error) {
	for i, p := range ports {
		if p.Name == nil || (*p.Name != GRPCPortName && *p.Name != HTTPPortName) {
			continue
		}
		name := *p.Name
		switch {
		case p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP:
			return 0, 0, fmt.Errorf("%w: ports[%d] %q: protocol %s, want TCP", ErrInvalid, i, name, *p.Protocol)
		case p.Port == nil || *p.Port < 1 || *p.Port > 65535:
			return 0, 0, fmt.Errorf("%w: ports[%d] %q: want a port number from 1 to 65535", ErrInvalid, i, name)
		}
		port := uint32(*p.Port)
		switch {
		case name == GRPCPortName && grpc == 0:
			grpc = port
		case name == HTTPPortName && http == 0:
			http = port
		}
	}
	if grpc == 0 {
		return 0, 0, fmt.Errorf("%w: no port named %q (the Service's KServe v2 gRPC port)", ErrInvalid, GRPCPortName)
	}
	return grpc, http, nil
}

// endpointAddr is the endpoint's first address, as the EndpointSlice API
// tells consumers to use, checked against the slice's address type.
func endpointAddr(t discoveryv1.AddressType, addrs []string) (netip.Addr, error) {
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("no address")
	}
	a, err := netip.ParseAddr(addrs[0])
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("address %q: not an IP address", clip(addrs[0]))
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q: zoned IPv6 addresses are not routable from Envoy", addrs[0])
	case a.IsUnspecified() || a.IsMulticast():
		return netip.Addr{}, fmt.Errorf("address %q: not a unicast address", addrs[0])
	case t == discoveryv1.AddressTypeIPv4 && !a.Is4():
		return netip.Addr{}, fmt.Errorf("address %q: not IPv4 in an IPv4 slice", addrs[0])
	case t == discoveryv1.AddressTypeIPv6 && !a.Is6():
		return netip.Addr{}, fmt.Errorf("address %q: not IPv6 in an IPv6 slice", addrs[0])
	}
	return a, nil
}

// routable: ready (nil means ready, as the API says) and not terminating.
func routable(c discoveryv1.EndpointConditions) bool {
	return (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating)
}

// workerID is the pod's name, else the address.
func workerID(ep discoveryv1.Endpoint, addr netip.Addr) string {
	if r := ep.TargetRef; r != nil && r.Name != "" && (r.Kind == "" || strings.EqualFold(r.Kind, "Pod")) {
		return r.Name
	}
	return addr.String()
}

package registry

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Bounds on what one request may carry. Going over one is RESOURCE_EXHAUSTED,
// not INVALID_ARGUMENT: the request is well formed, the registry won't hold it.
const (
	MaxModelsPerWorker   = 4096
	MaxVersionsPerModel  = 256
	MaxVersionsPerWorker = 16384
	// DefaultMaxWorkers is Config.MaxWorkers when unset.
	DefaultMaxWorkers = 10000

	maxWorkerIDLen = 253
	maxHostnameLen = 253
	leaseIDLen     = 32 // hex digits of 16 random bytes
)

// validWorkerID accepts host-name-like ids, with '_' and ':' too so that the
// default "hostname:port" fits. Nothing that could be read as markup, a path
// or a query fragment gets through.
func validWorkerID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: worker_id: empty", ErrInvalid)
	}
	if len(id) > maxWorkerIDLen {
		return fmt.Errorf("%w: worker_id: longer than %d bytes", ErrInvalid, maxWorkerIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := isAlnum(c) || (i > 0 && (c == '.' || c == '-' || c == '_' || c == ':'))
		if !ok {
			return fmt.Errorf("%w: worker_id %q: byte %d: want letters, digits, '.', '-', '_' or ':' after a letter or digit", ErrInvalid, clip(id), i)
		}
	}
	return nil
}

// validAddress accepts an IP address that a peer can connect to, or a DNS
// host name (RFC 1123 labels).
func validAddress(addr string) error {
	if addr == "" {
		return fmt.Errorf("%w: address: empty", ErrInvalid)
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		switch {
		case ip.Zone() != "":
			return fmt.Errorf("%w: address %q: zoned IPv6 addresses are not routable from Envoy", ErrInvalid, addr)
		case ip.IsUnspecified():
			return fmt.Errorf("%w: address %q: the unspecified address cannot be connected to; advertise the worker's own address", ErrInvalid, addr)
		case ip.IsMulticast():
			return fmt.Errorf("%w: address %q: multicast address", ErrInvalid, addr)
		}
		return nil
	}
	if strings.ContainsAny(addr, ":%") {
		return fmt.Errorf("%w: address %q: not an IP address", ErrInvalid, clip(addr))
	}
	if len(addr) > maxHostnameLen {
		return fmt.Errorf("%w: address: host name longer than %d bytes", ErrInvalid, maxHostnameLen)
	}
	allDigits := true
	for _, label := range strings.Split(addr, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%w: address %q: host name labels must be 1 to 63 bytes", ErrInvalid, clip(addr))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: address %q: host name label %q starts or ends with '-'", ErrInvalid, clip(addr), clip(label))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && c != '-' {
				return fmt.Errorf("%w: address %q: not an IP address or host name (byte %q)", ErrInvalid, clip(addr), c)
			}
			if c < '0' || c > '9' {
				allDigits = false
			}
		}
	}
	if allDigits {
		// "10.1.2" or "300.1.1.1": a mistyped IP, not a host name.
		return fmt.Errorf("%w: address %q: not a valid IP address", ErrInvalid, addr)
	}
	return nil
}

// poolName is a worker's pool as registered: "" is wire.DefaultPool, so
// that every worker in a snapshot names its pool.
func poolName(p string) (string, error) {
	if p == "" {
		return wire.DefaultPool, nil
	}
	if err := wire.CheckPoolName(p); err != nil {
		return "", fmt.Errorf("%w: pool %q: %w", ErrInvalid, clip(p), err)
	}
	return p, nil
}

func validPort(field string, p uint32, optional bool) error {
	if p == 0 && optional {
		return nil
	}
	if p < 1 || p > 65535 {
		return fmt.Errorf("%w: %s %d: want 1 to 65535", ErrInvalid, field, p)
	}
	return nil
}

// parseVersion reads a model version as the gateway routes it
// (wire.CheckVersion) and as a worker's repository names its folders: no
// leading zeros, so that each version has one spelling.
func parseVersion(v string) (int64, error) {
	if err := wire.CheckVersion(v); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != v {
		return 0, fmt.Errorf("%w: leading zero", wire.ErrVersion)
	}
	return n, nil
}

func validLeaseID(id string) error {
	if len(id) != leaseIDLen {
		return fmt.Errorf("%w: lease_id: want %d hex digits", ErrInvalid, leaseIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: lease_id: want %d lowercase hex digits", ErrInvalid, leaseIDLen)
		}
	}
	return nil
}

// convertModels validates the models of a request and returns them in
// canonical order (by name, versions ascending), so that a renewal listing
// the same models in another order is no change. A model's info that
// fails checkInfo is left out, and named in dropped: the model is still
// routed, and the catalogue lists it by name and versions.
func convertModels(in []*registryv1.Model) (models []Model, dropped []error, err error) {
	if len(in) > MaxModelsPerWorker {
		return nil, nil, fmt.Errorf("%w: models: %d models, at most %d per worker", ErrTooMany, len(in), MaxModelsPerWorker)
	}
	out := make([]Model, 0, len(in))
	seen := make(map[string]struct{}, len(in))
	total := 0
	for i, m := range in {
		field := fmt.Sprintf("models[%d]", i)
		name := m.GetName()
		// A name the gateway cannot route would fail every rebuild.
		if err := wire.CheckModelName(name); err != nil {
			return nil, nil, fmt.Errorf("%w: %s.name %q: %w", ErrInvalid, field, clip(name), err)
		}
		if _, dup := seen[name]; dup {
			return nil, nil, fmt.Errorf("%w: %s.name %q: listed twice", ErrInvalid, field, name)
		}
		seen[name] = struct{}{}
		vs := m.GetVersions()
		if len(vs) > MaxVersionsPerModel {
			return nil, nil, fmt.Errorf("%w: %s.versions: %d versions, at most %d per model", ErrTooMany, field, len(vs), MaxVersionsPerModel)
		}
		if total += len(vs); total > MaxVersionsPerWorker {
			return nil, nil, fmt.Errorf("%w: models: more than %d versions in all", ErrTooMany, MaxVersionsPerWorker)
		}
		nums := make([]int64, 0, len(vs))
		for j, v := range vs {
			n, err := parseVersion(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s.versions[%d] %q: %w", ErrInvalid, field, j, clip(v), err)
			}
			if slices.Contains(nums, n) {
				return nil, nil, fmt.Errorf("%w: %s.versions[%d] %q: listed twice", ErrInvalid, field, j, v)
			}
			nums = append(nums, n)
		}
		if m.GetReady() && len(vs) == 0 {
			return nil, nil, fmt.Errorf("%w: %s: ready without a version", ErrInvalid, field)
		}
		slices.Sort(nums)
		versions := make([]string, len(nums))
		for j, n := range nums {
			versions[j] = strconv.FormatInt(n, 10)
		}
		info := m.GetInfo()
		// Routing, not catalogue: kept when the rest of the info is not.
		sequence := info.GetSequenceBatching()
		if info != nil {
			if err := checkInfo(info); err != nil {
				dropped = append(dropped, fmt.Errorf("%s (%q).%w", field, name, err))
				info = nil
			}
		}
		out = append(out, Model{Name: name, Versions: versions, Ready: m.GetReady(), Sequence: sequence, Info: info})
	}
	slices.SortFunc(out, func(a, b Model) int { return strings.Compare(a.Name, b.Name) })
	return out, dropped, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// clip keeps error messages (and logs) short when a client sends junk.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

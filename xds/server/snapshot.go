package server

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/translate"
)

// messageNames is the protobuf message each type URL must hold.
var messageNames = map[string]string{
	resourcev3.ListenerType: "envoy.config.listener.v3.Listener",
	resourcev3.RouteType:    "envoy.config.route.v3.RouteConfiguration",
	resourcev3.ClusterType:  "envoy.config.cluster.v3.Cluster",
	resourcev3.EndpointType: "envoy.config.endpoint.v3.ClusterLoadAssignment",
	resourcev3.SecretType:   "envoy.extensions.transport_sockets.tls.v3.Secret",
	// Served to the ratelimit service.
	resourcev3.RateLimitConfigType: "ratelimit.config.ratelimit.v3.RateLimitConfig",
}

type validator interface{ ValidateAll() error }

// validateSet checks every resource: right message type, protoc-gen-validate
// rules (ValidateAll: Snapshot.Consistent checks names only), and a name
// that is set and unique within its type.
func validateSet(set resourceSet) error {
	for typeURL, list := range set {
		want, ok := messageNames[typeURL]
		if !ok {
			return fmt.Errorf("%w: unsupported type %s", ErrInvalidResource, typeURL)
		}
		seen := make(map[string]bool, len(list))
		for i, r := range list {
			if r == nil {
				return fmt.Errorf("%w: %s #%d is nil", ErrInvalidResource, typeLabel(typeURL), i)
			}
			if got := string(r.ProtoReflect().Descriptor().FullName()); got != want {
				return fmt.Errorf("%w: %s #%d is a %s", ErrInvalidResource, typeLabel(typeURL), i, got)
			}
			name := cachev3.GetResourceName(r)
			if name == "" {
				return fmt.Errorf("%w: %s #%d has no name", ErrInvalidResource, typeLabel(typeURL), i)
			}
			if seen[name] {
				return fmt.Errorf("%w: %s %q appears twice", ErrInvalidResource, typeLabel(typeURL), name)
			}
			seen[name] = true
			if rc, ok := r.(*rlsconfv3.RateLimitConfig); ok {
				// Its proto has no generated validation.
				if err := translate.ValidateRateLimitConfig(rc); err != nil {
					return fmt.Errorf("%w: %s %q: %w", ErrInvalidResource, typeLabel(typeURL), name, err)
				}
				continue
			}
			v, ok := r.(validator)
			if !ok {
				return fmt.Errorf("%w: %s %q cannot be validated", ErrInvalidResource, typeLabel(typeURL), name)
			}
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%w: %s %q: %w", ErrInvalidResource, typeLabel(typeURL), name, err)
			}
		}
	}
	return nil
}

// contentVersion hashes the resources (type, name, bytes, in sorted order),
// so equal content gets an equal version. Each resource is marshalled and
// hashed on its own, spread over the cores: with a thousand models on a
// hundred workers this is most of a publish. Built with the vtprotobuf tag
// (make does), go-control-plane's generated MarshalVTStrict does the
// marshalling about seven times faster than reflection (24 vs 178 ms for
// that gateway: BenchmarkMarshalForVersions in version_test.go); it writes map
// entries in Go's map order, which is stable only for maps of one entry,
// and that is all the translator's resources hold (their typed configs are
// packed deterministically; TestContentVersionStable guards this).
func contentVersion(set map[string][]types.Resource) (string, error) {
	type item struct {
		typeURL, name string
		r             types.Resource
		digest        [sha256.Size]byte
		err           error
	}
	typeURLs := slices.Sorted(maps.Keys(set))
	var items []item
	for _, t := range typeURLs {
		start := len(items)
		for _, r := range set[t] {
			items = append(items, item{typeURL: t, name: cachev3.GetResourceName(r), r: r})
		}
		slices.SortFunc(items[start:], func(a, b item) int { return cmp.Compare(a.name, b.name) })
	}
	opts := proto.MarshalOptions{Deterministic: true}
	workers := min(runtime.GOMAXPROCS(0), max(1, len(items)/64))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf []byte
			for i := int(next.Add(1) - 1); i < len(items); i = int(next.Add(1) - 1) {
				it := &items[i]
				var b []byte
				var err error
				if vt, ok := it.r.(vtMarshaler); ok {
					b, err = vt.MarshalVTStrict()
				} else {
					b, err = opts.MarshalAppend(buf[:0], it.r)
					buf = b
				}
				if err != nil {
					it.err = fmt.Errorf("marshal %s %q: %w", typeLabel(it.typeURL), it.name, err)
					continue
				}
				it.digest = sha256.Sum256(b)
			}
		})
	}
	wg.Wait()
	h := sha256.New()
	counts := make(map[string]int, len(typeURLs))
	for _, it := range items {
		counts[it.typeURL]++
	}
	for i, it := range items {
		if it.err != nil {
			return "", it.err
		}
		if i == 0 || items[i-1].typeURL != it.typeURL {
			fmt.Fprintf(h, "%s\x00%d\x00", it.typeURL, counts[it.typeURL])
		}
		fmt.Fprintf(h, "%s\x00", it.name)
		h.Write(it.digest[:])
	}
	// Types with no resources still count (an emptied type changes the
	// version).
	for _, t := range typeURLs {
		if counts[t] == 0 {
			fmt.Fprintf(h, "%s\x000\x00", t)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// vtMarshaler is implemented by go-control-plane's types when built with
// the vtprotobuf tag.
type vtMarshaler interface{ MarshalVTStrict() ([]byte, error) }

// typeLabel is the short name of a type URL, for logs and metric labels
// (bounded: unknown types are "other").
func typeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route"
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoint"
	case resourcev3.SecretType:
		return "secret"
	case resourcev3.RuntimeType:
		return "runtime"
	case resourcev3.ExtensionConfigType:
		return "extension_config"
	case resourcev3.RateLimitConfigType:
		return "ratelimit_config"
	}
	return "other"
}

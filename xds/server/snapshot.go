package server

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// messageNames is the protobuf message each type URL must hold.
var messageNames = map[string]string{
	resourcev3.ListenerType: "envoy.config.listener.v3.Listener",
	resourcev3.RouteType:    "envoy.config.route.v3.RouteConfiguration",
	resourcev3.ClusterType:  "envoy.config.cluster.v3.Cluster",
	resourcev3.EndpointType: "envoy.config.endpoint.v3.ClusterLoadAssignment",
	resourcev3.SecretType:   "envoy.extensions.transport_sockets.tls.v3.Secret",
}

// validateSet checks that the set can be one snapshot: every resource of
// the right message type, with a name that is set and unique within its
// type. Each resource's own content was checked where it was made
// (translate.Translate runs ValidateAll on every resource it returns).
// Resources in known were published, so checked, before: only their
// names are counted.
func validateSet(set resourceSet, known sums) error {
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
			_, checked := known[r]
			if got := string(r.ProtoReflect().Descriptor().FullName()); !checked && got != want {
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
		}
	}
	return nil
}

// sum is the SHA-256 of a resource's bytes.
type sum = [sha256.Size]byte

// digest is what a version knows of one resource.
type digest struct {
	name string
	sum  sum
}

// sums holds resources' digests by identity. Resources are immutable once
// translated (translate's contract), so a resource published before has
// the digest it had then: one worker's change among 1,000 models hashes
// the assignments of that worker's pools, not all 4,000 resources.
type sums map[types.Resource]sum

// digestSet marshals and hashes every resource of set not in known,
// spread over the cores: with a thousand models on a hundred workers this
// is most of a full publish. The digests come by type URL, sorted by
// name, with the sums of all of set's resources.
//
// Built with the vtprotobuf tag (make does), go-control-plane's generated
// marshalling does the work about seven times faster than reflection (24
// vs 178 ms for that gateway: BenchmarkMarshalForVersions in
// version_test.go), into a buffer each worker reuses. It writes map
// entries in Go's map order, which is stable only for maps of one entry,
// and that is all the translator's resources hold (their typed configs are
// packed deterministically; TestContentVersionStable guards this).
func digestSet(set resourceSet, known sums) (map[string][]digest, sums, error) {
	type item struct {
		typeURL, name string
		r             types.Resource
		sum           sum
		err           error
	}
	var items []item
	var todo []int // indexes of items to hash
	for _, t := range slices.Sorted(maps.Keys(set)) {
		start := len(items)
		for _, r := range set[t] {
			items = append(items, item{typeURL: t, name: cachev3.GetResourceName(r), r: r})
		}
		slices.SortFunc(items[start:], func(a, b item) int { return cmp.Compare(a.name, b.name) })
	}
	for i := range items {
		if s, ok := known[items[i].r]; ok {
			items[i].sum = s
		} else {
			todo = append(todo, i)
		}
	}
	opts := proto.MarshalOptions{Deterministic: true}
	workers := min(runtime.GOMAXPROCS(0), max(1, len(todo)/64))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf []byte
			for k := int(next.Add(1) - 1); k < len(todo); k = int(next.Add(1) - 1) {
				it := &items[todo[k]]
				var err error
				if vt, ok := it.r.(vtMarshaler); ok {
					n := vt.SizeVT()
					if cap(buf) < n {
						buf = make([]byte, n)
					}
					buf = buf[:n]
					_, err = vt.MarshalToSizedBufferVTStrict(buf)
				} else {
					buf, err = opts.MarshalAppend(buf[:0], it.r)
				}
				if err != nil {
					it.err = fmt.Errorf("%w: marshal %s %q: %w", ErrInvalidResource, typeLabel(it.typeURL), it.name, err)
					continue
				}
				it.sum = sha256.Sum256(buf)
			}
		})
	}
	wg.Wait()
	out := make(map[string][]digest, len(set))
	for t := range set {
		out[t] = []digest{} // a type without resources still counts
	}
	all := make(sums, len(items))
	for _, it := range items {
		if it.err != nil {
			return nil, nil, it.err
		}
		out[it.typeURL] = append(out[it.typeURL], digest{name: it.name, sum: it.sum})
		all[it.r] = it.sum
	}
	return out, all, nil
}

// sameNames: a and b name the same resources (both sorted by name).
func sameNames(a, b []digest) bool {
	return slices.EqualFunc(a, b, func(x, y digest) bool { return x.name == y.name })
}

// versionOf hashes the digests of typeURLs (type, count, then each name
// and sum, in sorted order), so equal content gets an equal version.
func versionOf(digests map[string][]digest, typeURLs []string) string {
	h := sha256.New()
	for _, t := range slices.Sorted(slices.Values(typeURLs)) {
		fmt.Fprintf(h, "%s\x00%d\x00", t, len(digests[t]))
		for _, d := range digests[t] {
			io.WriteString(h, d.name)
			h.Write([]byte{0})
			h.Write(d.sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// contentVersion is the version of set as a whole.
func contentVersion(set map[string][]types.Resource) (string, error) {
	digests, _, err := digestSet(set, nil)
	if err != nil {
		return "", err
	}
	return versionOf(digests, slices.Collect(maps.Keys(set))), nil
}

// vtMarshaler is implemented by go-control-plane's types when built with
// the vtprotobuf tag.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
	MarshalVTStrict() ([]byte, error)
}

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
	}
	return "other"
}

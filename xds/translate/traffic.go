package translate

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// Traffic policies (ir.Pool.Traffic): a model's variants get clusters of
// their own, and the model's routes are replaced by routes that pick one.
//
// Clusters (clusters.go, endpoints.go): per variant, and for the shadow,
// GRPCVariantCluster and HTTPVariantCluster, health-checked as the model's
// own, each with an EDS assignment of its own: the model's ready endpoints
// that ir.Variant.Matches (its version, its pool). They exist as long as
// the policy does, whatever the weights: a step of a rollout changes only
// routes (make-before-break: xds/server publishes clusters first).
//
// Routes: each route of the model that a request of it takes (gRPC unary
// and ModelStreamInfer by x-helix-model, REST by path, WebSocket,
// generate_stream) becomes, in this order (first match wins):
//
//  1. per variant V: wire.HeaderVariant == V -> V's cluster, with
//     wire.HeaderModelVersion when V pins a version (a request that names
//     its own version keeps it: the worker prefers the request's);
//     then wire.HeaderVariant present (a name that is no variant) -> a
//     direct 400 / INVALID_ARGUMENT naming the variants
//     (unknownVariantRoute), never the split: a tester must not believe
//     they reached a variant;
//  2. per version that a variant pins (the first variant with it): the
//     request names that version (gRPC: wire.HeaderRequestedVersion, set
//     by helix-authz from the body; REST: /versions/{v} in the path),
//     compared as numbers ("02" is 2) -> that variant's cluster, no
//     header added;
//  3. the request names another version -> the model's own cluster (all
//     its endpoints), the route as it was without a policy;
//  4. anything else -> weighted_clusters over the variants with weight >
//     0, each adding wire.HeaderModelVersion when it pins a version; when
//     sticky, Envoy takes wire.HeaderAssignment (helix-authz's
//     AssignmentValue, a uint64) modulo the total weight instead of a
//     random number, so one client keeps one variant.
//
// A shadow mirrors Percent of the requests of routes 1 and 4 of the unary
// routes (gRPC and REST request/response; streams are not mirrored) to
// its cluster, with wire.HeaderShadow "1" and wire.HeaderModelVersion when
// it pins a version; Envoy does not wait for the mirror and drops its
// answer. Requests that name a version (routes 2 and 3) are not mirrored:
// the shadow serves its own version, not the one they asked for.
//
// Each variant's stats are its clusters' (ClusterStatName). Beware: in
// Envoy 1.40's upstream_rq_xx a gRPC error (HTTP 200 with a grpc-status
// in a trailers-only answer) counts as a 2xx; only REST's errors are 5xx
// there. gRPC answers are counted by status code by the grpc_stats filter
// (cluster.<c>.grpc.<code>; hcm.go). TestEnvoyTrafficPolicy pins both.
//
// Retries, timeouts and helix-authz's per-route settings are the model's
// route's, copied. A model without a policy gets exactly the routes and
// clusters it had before policies existed.

// trafficVariants are the variants of p's policy that have clusters: the
// variants in order, then the shadow. nil without a policy.
func trafficVariants(p *ir.Pool) []ir.Variant {
	t := p.Traffic
	if t == nil {
		return nil
	}
	out := make([]ir.Variant, 0, len(t.Variants)+1)
	out = append(out, t.Variants...)
	if t.Shadow != nil {
		out = append(out, t.Shadow.Variant)
	}
	return out
}

// trafficClusterCount is len(trafficVariants(p)) without building it.
func trafficClusterCount(p *ir.Pool) int {
	if p.Traffic == nil {
		return 0
	}
	n := len(p.Traffic.Variants)
	if p.Traffic.Shadow != nil {
		n++
	}
	return n
}

// checkTraffic refuses what would make Envoy resources collide or fail at
// run time rather than at validation: ir.Validate refuses it first; this
// keeps translation from publishing two clusters of one name if it ever
// does not.
func checkTraffic(p *ir.Pool) error {
	seen := map[string]bool{}
	weight := uint32(0)
	for _, v := range trafficVariants(p) {
		if seen[v.Name] {
			return fmt.Errorf("%w: model %q: traffic policy: variant name %q used twice", ErrInvalidResource, p.Model, v.Name)
		}
		seen[v.Name] = true
	}
	for _, v := range p.Traffic.Variants {
		weight += v.Weight
	}
	if weight == 0 {
		return fmt.Errorf("%w: model %q: traffic policy: no variant has a weight", ErrInvalidResource, p.Model)
	}
	return nil
}

// variantEndpoints are p's endpoints in variant v.
func variantEndpoints(p *ir.Pool, v ir.Variant) []ir.Endpoint {
	out := make([]ir.Endpoint, 0, len(p.Endpoints))
	for _, e := range p.Endpoints {
		if v.Matches(e) {
			out = append(out, e)
		}
	}
	return out
}

// versionRegex matches a version as Triton reads it: as a number, leading
// zeros allowed.
func versionRegex(v string) string {
	if t := strings.TrimLeft(v, "0"); t != "" {
		return "0*" + regexp.QuoteMeta(t)
	}
	return "0+"
}

// routeKind says how a model's route matches and what a policy adds.
type routeKind struct {
	// rest: the route matches the path (a version is in it), not
	// x-helix-model (a version is in wire.HeaderRequestedVersion).
	rest bool
	// mirror: a request/response route, where a shadow gets its copy.
	mirror bool
}

// trafficRoutes are the routes that replace base, model p's route of
// kind k, for p's policy (see the top of this file for the order).
func (b *routeBuilder) trafficRoutes(p *ir.Pool, base *routev3.Route, k routeKind) []*routev3.Route {
	t := p.Traffic
	cluster := GRPCVariantCluster
	if k.rest {
		cluster = HTTPVariantCluster
	}
	var mirror []*routev3.RouteAction_RequestMirrorPolicy
	if k.mirror && t.Shadow != nil {
		mirror = []*routev3.RouteAction_RequestMirrorPolicy{shadowPolicy(cluster(p.Model, t.Shadow.Variant.Name), t.Shadow)}
	}
	out := make([]*routev3.Route, 0, 2*len(t.Variants)+2)
	clone := func(suffix string) (*routev3.Route, *routev3.RouteAction) {
		r := proto.Clone(base).(*routev3.Route)
		r.Name = base.Name + suffix
		return r, r.GetRoute()
	}
	for _, v := range t.Variants {
		r, a := clone("/variant/" + v.Name)
		r.Match.Headers = append(r.Match.Headers, exactHeader(wire.HeaderVariant, v.Name))
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cluster(p.Model, v.Name)}
		a.RequestMirrorPolicies = mirror
		r.RequestHeadersToAdd = versionHeader(v.Version)
		out = append(out, r)
	}
	out = append(out, unknownVariantRoute(base, p, k))
	seen := map[string]bool{}
	for _, v := range t.Variants {
		if v.Version == "" || seen[strings.TrimLeft(v.Version, "0")] {
			continue
		}
		seen[strings.TrimLeft(v.Version, "0")] = true
		r, a := clone("/version/" + v.Version)
		b.namesVersion(r, k, v.Version)
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cluster(p.Model, v.Name)}
		out = append(out, r)
	}
	r, _ := clone("/versions")
	b.namesVersion(r, k, "")
	out = append(out, r)

	r, a := clone("/split")
	wc := &routev3.WeightedCluster{}
	for _, v := range t.Variants {
		if v.Weight == 0 {
			continue
		}
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:                cluster(p.Model, v.Name),
			Weight:              u32(v.Weight),
			RequestHeadersToAdd: versionHeader(v.Version),
		})
	}
	if t.Sticky {
		wc.RandomValueSpecifier = &routev3.WeightedCluster_HeaderName{HeaderName: wire.HeaderAssignment}
	}
	a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	a.RequestMirrorPolicies = mirror
	return append(out, r)
}

// namesVersion narrows r to requests that name version v, or any version
// with v "".
func (b *routeBuilder) namesVersion(r *routev3.Route, k routeKind, v string) {
	if !k.rest {
		h := &routev3.HeaderMatcher{Name: wire.HeaderRequestedVersion}
		if v == "" {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		} else {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "^" + versionRegex(v) + "$"}},
			}}
		}
		r.Match.Headers = append(r.Match.Headers, h)
		return
	}
	// The route's prefix names the model; /versions/{v} follows it. The
	// regex leaves the model out (Envoy's regex program size limit).
	prefix := r.Match.GetPathSeparatedPrefix() + "/versions"
	r.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix}
	if v != "" {
		re := "^" + regexp.QuoteMeta(wire.RESTModelsPrefix) + `[^/?]+/versions/` + versionRegex(v) + `([/?].*)?$`
		r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
			Name: ":path",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}},
			}},
		})
	}
}

// unknownVariantRoute answers a request whose wire.HeaderVariant names no
// variant of p's policy (a typo, a released rollout's "canary", the
// shadow): 400 / INVALID_ARGUMENT naming the model's variants, so that a
// tester never believes they reached a variant they did not. It follows
// the per-variant routes, which take every name that is one.
func unknownVariantRoute(base *routev3.Route, p *ir.Pool, k routeKind) *routev3.Route {
	r := proto.Clone(base).(*routev3.Route)
	r.Name = base.Name + "/unknown-variant"
	r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
		Name:                 wire.HeaderVariant,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
	})
	r.RequestHeadersToAdd = nil
	msg := unknownVariantMessage(p)
	body := unknownVariantBody(msg)
	if k.rest {
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{setHeader("content-type", "application/json"), setHeader("cache-control", "no-store")}
	} else {
		// Envoy's local reply to a gRPC request is trailers-only, with
		// the body as grpc-message and grpc-status mapped from the HTTP
		// code (400 would be INTERNAL) unless the reply sets one:
		// INVALID_ARGUMENT, as helix-authz answers a bad helix-variant.
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{setHeader("grpc-status", strconv.Itoa(int(codes.InvalidArgument)))}
		body = msg
	}
	r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: 400,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}}
	return r
}

// unknownVariantMessage names the variants a request for p's model may
// pick.
func unknownVariantMessage(p *ir.Pool) string {
	names := make([]string, len(p.Traffic.Variants))
	for i, v := range p.Traffic.Variants {
		names[i] = v.Name
	}
	return fmt.Sprintf("helix-variant: unknown variant for model %q (its variants: %s)", p.Model, strings.Join(names, ", "))
}

// unknownVariantBody is the REST answer, shaped as helix-authz's error
// bodies (extauthz/check errorBody): {"error", "error_description"}.
func unknownVariantBody(msg string) string {
	b, err := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{"unknown_variant", msg})
	if err != nil {
		panic(err) // two strings always marshal
	}
	return string(b)
}

func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value},
		}},
	}
}

// versionHeader tells the worker which version to serve a request that
// names none; nil when the variant pins none.
func versionHeader(v string) []*corev3.HeaderValueOption {
	if v == "" {
		return nil
	}
	return []*corev3.HeaderValueOption{setHeader(wire.HeaderModelVersion, v)}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// shadowPolicy mirrors s.Percent of a route's requests to cluster, marked
// wire.HeaderShadow (the worker counts no usage for them).
func shadowPolicy(cluster string, s *ir.Shadow) *routev3.RouteAction_RequestMirrorPolicy {
	muts := []*mutationv3.HeaderMutation{{Action: &mutationv3.HeaderMutation_Append{Append: setHeader(wire.HeaderShadow, "1")}}}
	if v := s.Variant.Version; v != "" {
		muts = append(muts, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Append{Append: setHeader(wire.HeaderModelVersion, v)}})
	}
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster: cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			// Percent to millionths: 0.0001% steps.
			Numerator:   uint32(math.Round(s.Percent * 10000)),
			Denominator: typev3.FractionalPercent_MILLION,
		}},
		RequestHeadersMutations: muts,
	}
}

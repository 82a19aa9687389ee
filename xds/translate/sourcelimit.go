package translate

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/xds/ir"
)

// sourceLimitFilter is Envoy's local rate limit per source address, placed
// before ext_authz (see httpFilters): a flood from one address is answered
// 429 with Retry-After (gRPC RESOURCE_EXHAUSTED, which clients do not
// retry at once as they would UNAVAILABLE) without costing a Check, and
// every other address keeps its own bucket. The source is the TCP peer
// (use_remote_address with no trusted hops: X-Forwarded-For is not
// believed). One wildcard descriptor (key masked_remote_address, no value)
// gives each address its own token bucket, in an LRU of MaxSources; there
// is no default bucket, so nothing is limited as a whole. Buckets are per
// Envoy process.
func sourceLimitFilter(g *ir.Gateway) (proto.Message, error) {
	sl := g.SourceLimit
	always := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
		Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED,
	}}
	return &localratelimitv3.LocalRateLimit{
		StatPrefix:     StatPrefixSourceLimit,
		Status:         &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
		FilterEnabled:  always,
		FilterEnforced: always,
		RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{{
			ActionSpecifier: &routev3.RateLimit_Action_MaskedRemoteAddress_{
				MaskedRemoteAddress: &routev3.RateLimit_Action_MaskedRemoteAddress{
					// Sources counted as helix-authz counts them
					// (internal/sourcelimit): IPv4 per address, IPv6
					// per /64, one subscriber's block.
					V4PrefixMaskLen: u32(32),
					V6PrefixMaskLen: u32(sourcelimit.IPv6PrefixBits),
				},
			},
		}}}},
		Descriptors: []*ratelimitcommonv3.LocalRateLimitDescriptor{{
			Entries: []*ratelimitcommonv3.RateLimitDescriptor_Entry{{Key: DescriptorSource}},
			TokenBucket: &typev3.TokenBucket{
				MaxTokens:     sl.Burst,
				TokensPerFill: u32(sl.RequestsPerSecond),
				FillInterval:  dur(time.Second),
			},
		}},
		MaxDynamicDescriptors:           u32(sl.MaxSources),
		AlwaysConsumeDefaultTokenBucket: wrapBool(false),
		RateLimitedAsResourceExhausted:  true,
		EnableRetryAfterHeader:          true,
	}, nil
}

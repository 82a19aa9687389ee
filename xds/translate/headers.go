package translate

import (
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// stripHelixHeaders removes every request header starting with x-helix-
// (wire.HeaderPrefix)
// as the first filter. helix-authz also overwrites the ones it sets, but
// routing and the workers must never see a forged value, whatever authz
// does. (The route configuration's request_headers_to_remove would run in
// the router, after authz, and remove authz's headers too.)
func stripHelixHeaders(*ir.Gateway) (proto.Message, error) {
	return &headermutationv3.HeaderMutation{
		Mutations: &headermutationv3.Mutations{
			RequestMutations: []*mutationv3.HeaderMutation{{
				Action: &mutationv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{
					KeyMatcher: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: wire.HeaderPrefix},
						IgnoreCase:   true,
					},
				}},
			}},
		},
	}, nil
}

func wrapBool(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }

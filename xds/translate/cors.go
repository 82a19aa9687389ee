package translate

import (
	"strconv"
	"strings"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/xds/ir"
)

// corsFilter enables the CORS filter; the policy is on the virtual host.
func corsFilter(*ir.Gateway) (proto.Message, error) { return &corsv3.Cors{}, nil }

// corsPolicy is the virtual host's CORS policy, or nil without CORS.
func corsPolicy(g *ir.Gateway) (*anypb.Any, error) {
	c := g.CORS
	if c == nil {
		return nil, nil
	}
	p := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.AllowMethods, ","),
		AllowHeaders:  strings.Join(c.AllowHeaders, ","),
		ExposeHeaders: strings.Join(c.ExposeHeaders, ","),
	}
	if c.MaxAge > 0 {
		p.MaxAge = strconv.FormatInt(int64(c.MaxAge.Seconds()), 10)
	}
	if c.AllowCredentials {
		p.AllowCredentials = wrapBool(true)
	}
	for _, o := range c.AllowOrigins {
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}}
		if o == "*" {
			// Any origin (an empty prefix would fail validation).
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}
		}
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, m)
	}
	return typed(p)
}

package translate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// authzUnavailableBody is helix-authz's own 503 body (extauthz/check,
// unavailable): a client sees one shape whether helix-authz answered that
// it cannot decide or could not be reached at all.
const authzUnavailableBody = `{"error":"temporarily_unavailable"}`

// localReplies rewrites one of Envoy's local replies: the 503 that
// ext_authz sends when helix-authz cannot be reached (status_on_error,
// extauthz.go) has no body, no content type and no Retry-After. A REST
// client gets helix-authz's 503 instead: its JSON, no-store and
// Retry-After: 1. The filter is the response flag UAEX (ext_authz refused
// or failed) with status 503, so it also matches helix-authz's own 503,
// which it leaves as it was (same body and headers). gRPC requests are
// left alone: Envoy turns their local reply into grpc-status UNAVAILABLE.
func localReplies() *hcmv3.LocalReplyConfig {
	overwrite := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	filter := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{
		AndFilter: &accesslogv3.AndFilter{Filters: []*accesslogv3.AccessLogFilter{
			{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
				ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{"UAEX"}},
			}},
			{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
				StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
					Op:    accesslogv3.ComparisonFilter_EQ,
					Value: &corev3.RuntimeUInt32{DefaultValue: 503, RuntimeKey: "helix.local_reply.authz_unavailable_status"},
				}},
			}},
			{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{
				HeaderFilter: &accesslogv3.HeaderFilter{Header: &routev3.HeaderMatcher{
					Name: "content-type",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "application/grpc"},
					}},
					InvertMatch:               true,
					TreatMissingHeaderAsEmpty: true,
				}},
			}},
		}},
	}}
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
		Filter: filter,
		BodyFormatOverride: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: authzUnavailableBody},
			}},
			ContentType: "application/json",
		},
		HeadersToAdd: []*corev3.HeaderValueOption{
			overwrite("cache-control", "no-store"),
			overwrite("retry-after", "1"),
		},
	}}}
}

package translate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// accessLogFields is one JSON object per request on stdout. No credential
// is logged (no authorization or x-api-key header).
var accessLogFields = map[string]string{
	"start_time":     "%START_TIME%",
	"method":         "%REQ(:METHOD)%",
	"path":           "%REQ(:PATH)%",
	"protocol":       "%PROTOCOL%",
	"response_code":  "%RESPONSE_CODE%",
	"grpc_status":    "%GRPC_STATUS(NUMBER)%",
	"response_flags": "%RESPONSE_FLAGS%",
	// Why Envoy answered as it did (ext_authz_denied, cluster_not_found,
	// via_upstream, ...): what tells a gateway 503 from a worker's.
	"response_code_details": "%RESPONSE_CODE_DETAILS%",
	"duration_ms":           "%DURATION%",
	"upstream_ms":           "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	"bytes_received":        "%BYTES_RECEIVED%",
	"bytes_sent":            "%BYTES_SENT%",
	"upstream_cluster":      "%UPSTREAM_CLUSTER%",
	"upstream_host":         "%UPSTREAM_HOST%",
	"downstream_addr":       "%DOWNSTREAM_REMOTE_ADDRESS%",
	"request_id":            "%REQ(X-REQUEST-ID)%",
	// With tracing on: the gateway's trace id (in the trace backend
	// only when sampled), and the traceparent sent to the worker, whose
	// last field says whether it was (-01); null when nothing went
	// upstream (a refused request) or tracing is off.
	"trace_id":    "%TRACE_ID%",
	"traceparent": "%REQ(TRACEPARENT)%",
	"client":      "%REQ(X-HELIX-CLIENT)%",
	"plan":        "%REQ(X-HELIX-PLAN)%",
	"model":       "%REQ(X-HELIX-MODEL)%",
	"user_agent":  "%REQ(USER-AGENT)%",
}

func accessLogs() ([]*accesslogv3.AccessLog, error) {
	fields := make(map[string]any, len(accessLogFields))
	for k, v := range accessLogFields {
		fields[k] = v
	}
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, err
	}
	a, err := typed(&streamv3.StdoutAccessLog{
		AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s},
		}},
	})
	if err != nil {
		return nil, err
	}
	return []*accesslogv3.AccessLog{{
		Name:       accessLogStdout,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a},
	}}, nil
}

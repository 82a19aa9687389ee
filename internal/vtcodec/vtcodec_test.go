package vtcodec

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func okResponse(headerValue string) *authv3.CheckResponse {
	meta, _ := structpb.NewStruct(map[string]any{"client": "c1", "plan": "free"})
	return &authv3.CheckResponse{
		Status:          &status.Status{Code: 0},
		DynamicMetadata: meta,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-helix-client", Value: headerValue}}},
		}},
	}
}

// What the codec writes decodes to the message it was given, through the
// vtprotobuf path (small and pooled buffers) and the fallback alike.
func TestRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  proto.Message
		vt   bool
	}{
		{"vtprotobuf, small", okResponse("c1"), true},
		{"vtprotobuf, pooled buffer", okResponse(strings.Repeat("v", 64<<10)), true},
		{"no vtprotobuf code", &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tt.msg.(vtMessage); ok != tt.vt {
				t.Fatalf("%T has vtprotobuf code: %v, want %v (built without -tags=vtprotobuf?)", tt.msg, ok, tt.vt)
			}
			data, err := Codec{}.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			defer data.Free()
			got := tt.msg.ProtoReflect().New().Interface()
			if err := (Codec{}).Unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.msg) {
				t.Fatalf("round trip: %v, want %v", got, tt.msg)
			}
		})
	}
}

func TestNotAMessage(t *testing.T) {
	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Fatal("marshalled a non-message")
	}
}

func BenchmarkMarshal(b *testing.B) {
	m := okResponse("c1")
	b.Run("vtcodec", func(b *testing.B) {
		for b.Loop() {
			d, _ := Codec{}.Marshal(m)
			d.Free()
		}
	})
	b.Run("grpc proto codec", func(b *testing.B) {
		for b.Loop() {
			d, _ := fallback().Marshal(m)
			d.Free()
		}
	})
}

// BenchmarkUnmarshalCheckRequest decodes the CheckRequest of a gRPC
// ModelInfer with a bearer JWT, as helix-authz receives it.
func BenchmarkUnmarshalCheckRequest(b *testing.B) {
	data := mem.BufferSlice{mem.SliceBuffer(marshal(b, inferRequest()))}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"vtcodec", Codec{}}, {"grpc proto codec", fallback()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.codec.Unmarshal(data, new(authv3.CheckRequest)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Package vtcodec is helix-authz's gRPC codec. It marshals messages with
// the vtprotobuf code go-control-plane generates (built with
// -tags=vtprotobuf): no reflection, one exact-size buffer. go-control-plane
// generates no UnmarshalVT, so Envoy's CheckRequest is decoded by hand
// (checkrequest.go); any other message, and any message without the
// generated code, goes to gRPC's own proto codec: the bytes are the same
// either way.
package vtcodec

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	// Registers the default "proto" codec this one falls back to.
	_ "google.golang.org/grpc/encoding/proto"
)

// vtMessage is what vtprotobuf generates for a message.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// Codec is gRPC's "proto" codec, marshalling with vtprotobuf where it can.
// Use it with grpc.ForceServerCodecV2.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

func fallback() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		n, err := m.MarshalToSizedBufferVTStrict(buf)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf[:n])}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	n, err := m.MarshalToSizedBufferVTStrict((*buf)[:size])
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = (*buf)[:n]
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal implements encoding.CodecV2: a CheckRequest with
// decodeCheckRequest (only the fields Check reads), anything else with
// gRPC's proto codec.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*authv3.CheckRequest)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	if len(data) == 1 {
		return decodeCheckRequest(data[0].ReadOnlyData(), m)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeCheckRequest(buf.ReadOnlyData(), m)
}

// Name implements encoding.CodecV2: it is the proto codec, on the wire.
func (Codec) Name() string { return "proto" }

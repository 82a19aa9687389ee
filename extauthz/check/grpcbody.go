package check

import (
	"encoding/binary"
	"errors"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// Errors of modelFromGRPCBody.
var (
	errCompressed     = errors.New("compressed gRPC message")
	errMalformedBody  = errors.New("malformed gRPC message")
	errDuplicateModel = errors.New("model name field repeated")
)

// grpcFrameHeaderLen is the gRPC length-prefix: 1 byte compressed flag,
// 4 bytes big-endian message length.
const grpcFrameHeaderLen = 5

// bodyModel is what the first bytes of a request message say.
type bodyModel struct {
	name, version string
	// nameSeen: field 1 was present in the bytes read.
	nameSeen bool
	// complete: the whole message was in the bytes read, so a field that
	// was not seen is really absent.
	complete bool
}

// modelFromGRPCBody reads field 1 (model_name / name) and field 2
// (model_version / version) of the first gRPC message in body, which may
// be cut short anywhere (Envoy sends a partial body). It scans every field
// it can see, so that a repeated field 1 (protobuf keeps the last one, we
// would read the first) is refused rather than misread.
//
// What it cannot see: a message cut short may repeat field 1 beyond the
// bytes Envoy sent. The worker must therefore check that x-helix-model
// equals the model it serves.
func modelFromGRPCBody(body []byte) (bodyModel, error) {
	var m bodyModel
	if len(body) < grpcFrameHeaderLen {
		return m, errMalformedBody
	}
	switch body[0] {
	case 0:
	case 1:
		return m, errCompressed
	default:
		return m, errMalformedBody
	}
	n := binary.BigEndian.Uint32(body[1:grpcFrameHeaderLen])
	msg := body[grpcFrameHeaderLen:]
	if uint64(len(msg)) >= uint64(n) {
		m.complete = true
		msg = msg[:n]
	}
	versionSeen := false
	for len(msg) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(msg)
		if tagLen < 0 {
			return m, m.cutShort(tagLen)
		}
		msg = msg[tagLen:]
		var (
			val    []byte
			valLen int
		)
		switch typ {
		case protowire.BytesType:
			val, valLen = protowire.ConsumeBytes(msg)
		case protowire.VarintType:
			_, valLen = protowire.ConsumeVarint(msg)
		case protowire.Fixed32Type:
			_, valLen = protowire.ConsumeFixed32(msg)
		case protowire.Fixed64Type:
			_, valLen = protowire.ConsumeFixed64(msg)
		default:
			// Groups and reserved wire types: no request of ours has them.
			return m, errMalformedBody
		}
		if valLen < 0 {
			return m, m.cutShort(valLen)
		}
		msg = msg[valLen:]
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return m, errMalformedBody
			}
			if m.nameSeen {
				return m, errDuplicateModel
			}
			m.name, m.nameSeen = string(val), true
		case 2:
			if typ != protowire.BytesType || versionSeen {
				return m, errMalformedBody
			}
			m.version, versionSeen = string(val), true
		}
	}
	return m, nil
}

// cutShort judges a field that ran past the bytes: expected when the
// message itself was cut short (stop reading), malformed otherwise.
func (m *bodyModel) cutShort(code int) error {
	if !m.complete && errors.Is(protowire.ParseError(code), io.ErrUnexpectedEOF) {
		return nil
	}
	return errMalformedBody
}

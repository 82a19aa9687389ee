package check

import (
	"encoding/binary"
	"errors"
	"io"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/helixflow/helixflow/internal/wire"
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
	// sequence is wire.HeaderSequence's value for the request's
	// sequence_id parameter ("" when none was seen or it names no
	// sequence); read only when asked (ModelInfer).
	sequence string
}

// ModelInferRequest's parameters field (map<string, InferParameter>),
// whose entries are messages of key = 1 and value = 2, and the fields of
// InferParameter's oneof that can hold a correlation id.
const (
	fieldParameters  = 4
	fieldEntryKey    = 1
	fieldEntryValue  = 2
	fieldInt64Param  = 2
	fieldStringParam = 3
	fieldUint64Param = 5
)

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
	return readGRPCBody(body, false)
}

// readGRPCBody is modelFromGRPCBody that, with params, also reads
// ModelInferRequest's parameters (field 4) for "sequence_id": Envoy routes
// by it (wire.HeaderSequence). Protobuf writes fields in number order, so
// the parameters come before the inputs and their raw contents: within
// the first bytes Envoy sends unless the client sends many parameters or
// long ones. A map key repeated keeps its last value, as protobuf does; a
// sequence_id beyond the bytes read is not seen, and the request then
// routes as one without a sequence (the worker answers for a step that
// reaches a worker that does not know its sequence).
func readGRPCBody(body []byte, params bool) (bodyModel, error) {
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
		case fieldParameters:
			if !params {
				continue
			}
			if typ != protowire.BytesType {
				return m, errMalformedBody
			}
			seq, ok, err := sequenceFromEntry(val)
			if err != nil {
				return m, err
			}
			if ok {
				m.sequence = seq
			}
		}
	}
	return m, nil
}

// sequenceFromEntry reads one parameters map entry. ok: its key is
// "sequence_id"; seq is then the header value ("" for a value that names
// no sequence: zero, empty, negative or of another type, which the worker
// refuses or ignores).
func sequenceFromEntry(entry []byte) (seq string, ok bool, err error) {
	var value []byte
	err = eachField(entry, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		if typ != protowire.BytesType && (num == fieldEntryKey || num == fieldEntryValue) {
			return errMalformedBody
		}
		switch num {
		case fieldEntryKey:
			ok = string(val) == "sequence_id"
		case fieldEntryValue:
			value = val
		}
		return nil
	})
	if err != nil || !ok {
		return "", false, err
	}
	// A oneof keeps the last member set.
	var (
		num uint64
		str string
	)
	err = eachField(value, func(n protowire.Number, typ protowire.Type, val []byte, v uint64) error {
		switch n {
		case fieldInt64Param:
			if typ != protowire.VarintType {
				return errMalformedBody
			}
			num, str = 0, ""
			if int64(v) > 0 {
				num = v
			}
		case fieldUint64Param:
			if typ != protowire.VarintType {
				return errMalformedBody
			}
			num, str = v, ""
		case fieldStringParam:
			if typ != protowire.BytesType {
				return errMalformedBody
			}
			num, str = 0, string(val)
		case 1, 4: // bool_param, double_param: not an id
			num, str = 0, ""
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	return wire.SequenceHeaderValue(num, str), true, nil
}

// eachField calls fn for every field of a complete message: its bytes for
// a length-delimited field, its value for a varint.
func eachField(msg []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return errMalformedBody
		}
		msg = msg[n:]
		var (
			val []byte
			v   uint64
		)
		switch typ {
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(msg)
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(msg)
		case protowire.Fixed32Type:
			_, n = protowire.ConsumeFixed32(msg)
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(msg)
		default:
			return errMalformedBody
		}
		if n < 0 {
			return errMalformedBody
		}
		msg = msg[n:]
		if err := fn(num, typ, val, v); err != nil {
			return err
		}
	}
	return nil
}

// cutShort judges a field that ran past the bytes: expected when the
// message itself was cut short (stop reading), malformed otherwise.
func (m *bodyModel) cutShort(code int) error {
	if !m.complete && errors.Is(protowire.ParseError(code), io.ErrUnexpectedEOF) {
		return nil
	}
	return errMalformedBody
}

package tensorflow

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/helixflow/helixflow/workers/backend"
)

// The SavedModel's meta graph and signature this backend serves, as
// Triton's tensorflow backend picks them by default.
const (
	ServeTag         = "serve"
	DefaultSignature = "serving_default"
)

// errMalformed is wrapped by every decoding error of a SavedModel or
// MetaGraphDef.
var errMalformed = errors.New("malformed protobuf")

// Field numbers of tensorflow/core/protobuf/{saved_model,meta_graph}.proto
// and tensor_shape.proto, the only fields decoded.
const (
	savedModelMetaGraphs = 2 // SavedModel.meta_graphs
	metaGraphMetaInfo    = 1 // MetaGraphDef.meta_info_def
	metaInfoTags         = 4 // MetaInfoDef.tags
	metaGraphSignatures  = 5 // MetaGraphDef.signature_def (map)
	mapKey, mapValue     = 1, 2
	signatureInputs      = 1 // SignatureDef.inputs (map)
	signatureOutputs     = 2 // SignatureDef.outputs (map)
	tensorInfoName       = 1
	tensorInfoDtype      = 2
	tensorInfoShape      = 3
	tensorInfoCooSparse  = 4
	tensorInfoComposite  = 5
	shapeDim             = 2
	shapeUnknownRank     = 3
	dimSize              = 1
)

// sigTensor is one input or output of a signature.
type sigTensor struct {
	Key         string // the name clients use (Triton's config name)
	TensorName  string // "op:index" in the graph
	DType       int
	Shape       []int64 // -1 for an unknown dimension
	UnknownRank bool
	Sparse      bool // a sparse or composite tensor, not served
}

// signature is a SignatureDef's inputs and outputs, sorted by key.
type signature struct {
	Inputs, Outputs []sigTensor
}

// fields calls fn with each field of a message; fn's value is the field's
// bytes for length-delimited fields and its varint otherwise.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v     uint64
			bytes []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, bytes); err != nil {
			return err
		}
	}
	return nil
}

// metaGraphTags reads a MetaGraphDef's tags.
func metaGraphTags(metaGraph []byte) ([]string, error) {
	var tags []string
	err := fields(metaGraph, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if num != metaGraphMetaInfo || typ != protowire.BytesType {
			return nil
		}
		return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
			if num == metaInfoTags && typ == protowire.BytesType {
				tags = append(tags, string(b))
			}
			return nil
		})
	})
	return tags, err
}

// findMetaGraph returns the serialized MetaGraphDef of a SavedModel
// (saved_model.pb) that carries tag, or an error listing the tag sets there.
func findMetaGraph(savedModel []byte, tag string) ([]byte, error) {
	var (
		found []byte
		sets  []string
	)
	err := fields(savedModel, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if num != savedModelMetaGraphs || typ != protowire.BytesType || found != nil {
			return nil
		}
		tags, err := metaGraphTags(b)
		if err != nil {
			return err
		}
		if slices.Contains(tags, tag) {
			found = b
		}
		sets = append(sets, "["+strings.Join(tags, ",")+"]")
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("no meta graph is tagged %q (tag sets: %s)", tag, orNone(sets))
	}
	return found, nil
}

// parseSignature reads the SignatureDef named key from a MetaGraphDef.
func parseSignature(metaGraph []byte, key string) (signature, error) {
	var (
		sig   signature
		found bool
		keys  []string
	)
	err := fields(metaGraph, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if num != metaGraphSignatures || typ != protowire.BytesType {
			return nil
		}
		k, v, err := mapEntry(b)
		if err != nil {
			return fmt.Errorf("signature_def: %w", err)
		}
		// TensorFlow's own signatures (__saved_model_init_op) are not
		// offered to clients.
		if !strings.HasPrefix(k, "__") {
			keys = append(keys, k)
		}
		if k != key {
			return nil
		}
		found = true
		if sig, err = parseSignatureDef(v); err != nil {
			return fmt.Errorf("signature %q: %w", k, err)
		}
		return nil
	})
	if err != nil {
		return signature{}, err
	}
	if !found {
		slices.Sort(keys)
		return signature{}, fmt.Errorf("the SavedModel has no signature %q (signatures: %s)", key, orNone(keys))
	}
	return sig, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// mapEntry splits a map<string, message> entry.
func mapEntry(b []byte) (key string, value []byte, err error) {
	err = fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		switch {
		case num == mapKey && typ == protowire.BytesType:
			key = string(b)
		case num == mapValue && typ == protowire.BytesType:
			value = b
		}
		return nil
	})
	return key, value, err
}

func parseSignatureDef(b []byte) (signature, error) {
	var sig signature
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if typ != protowire.BytesType || (num != signatureInputs && num != signatureOutputs) {
			return nil
		}
		k, v, err := mapEntry(b)
		if err != nil {
			return err
		}
		t, err := parseTensorInfo(v)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", k, err)
		}
		t.Key = k
		if num == signatureInputs {
			sig.Inputs = append(sig.Inputs, t)
		} else {
			sig.Outputs = append(sig.Outputs, t)
		}
		return nil
	})
	byKey := func(a, b sigTensor) int { return strings.Compare(a.Key, b.Key) }
	slices.SortFunc(sig.Inputs, byKey)
	slices.SortFunc(sig.Outputs, byKey)
	return sig, err
}

func parseTensorInfo(b []byte) (sigTensor, error) {
	var t sigTensor
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == tensorInfoName && typ == protowire.BytesType:
			t.TensorName = string(b)
		case num == tensorInfoDtype && typ == protowire.VarintType:
			t.DType = int(int32(v))
		case (num == tensorInfoCooSparse || num == tensorInfoComposite) && typ == protowire.BytesType:
			t.Sparse = true
		case num == tensorInfoShape && typ == protowire.BytesType:
			return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == shapeUnknownRank && typ == protowire.VarintType:
					t.UnknownRank = v != 0
				case num == shapeDim && typ == protowire.BytesType:
					size := int64(-1)
					err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
						if num == dimSize && typ == protowire.VarintType {
							size = max(int64(v), -1) // TensorFlow writes -1 for unknown
						}
						return nil
					})
					t.Shape = append(t.Shape, size)
					return err
				}
				return nil
			})
		}
		return nil
	})
	return t, err
}

// splitTensorName splits "op:index" ("op" alone is output 0).
func splitTensorName(name string) (op string, index int, err error) {
	op, idx, ok := strings.Cut(name, ":")
	if !ok {
		return name, 0, nil
	}
	index, err = strconv.Atoi(idx)
	if err != nil || index < 0 || op == "" {
		return "", 0, fmt.Errorf("tensor name %q is not op:index", name)
	}
	return op, index, nil
}

// ios turns a signature's tensors into the backend's IO, refusing what this
// backend cannot serve with an error naming the tensor.
func ios(kind string, ts []sigTensor) ([]backend.IO, error) {
	out := make([]backend.IO, len(ts))
	for i, t := range ts {
		switch {
		case t.Sparse:
			return nil, fmt.Errorf("%w: %s %q is a sparse or composite tensor; only dense tensors are served", backend.ErrUnsupported, kind, t.Key)
		case t.UnknownRank:
			return nil, fmt.Errorf("%w: %s %q has an unknown rank; give it a shape in the signature", backend.ErrUnsupported, kind, t.Key)
		}
		dt, ok := dataTypes[t.DType]
		if !ok {
			return nil, fmt.Errorf("%w: %s %q has dtype %s, which has no KServe datatype", backend.ErrUnsupported, kind, t.Key, dtypeName(t.DType))
		}
		if _, _, err := splitTensorName(t.TensorName); err != nil {
			return nil, fmt.Errorf("%s %q: %w", kind, t.Key, err)
		}
		out[i] = backend.IO{Name: t.Key, DataType: dt, Shape: slices.Clone(t.Shape)}
		if out[i].Shape == nil {
			out[i].Shape = []int64{}
		}
	}
	return out, nil
}

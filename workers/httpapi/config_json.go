package httpapi

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// marshalConfigJSON writes a message the way Triton serves a model
// configuration: protobuf's JSON mapping with proto field names, every
// primitive, repeated and map field printed even when it holds its default,
// unset message and oneof fields left out, enums by name, and -- Triton's
// one change to the mapping -- 64-bit integers as JSON numbers rather than
// strings. Fields come in declaration order, as protobuf's printer emits
// them. An empty message gives an empty body, as in Triton.
func marshalConfigJSON(m proto.Message) ([]byte, error) {
	if m == nil || proto.Size(m) == 0 {
		return nil, nil
	}
	return appendMessageJSON(nil, m.ProtoReflect())
}

func appendMessageJSON(dst []byte, m protoreflect.Message) ([]byte, error) {
	dst = append(dst, '{')
	fields := m.Descriptor().Fields()
	first := true
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.HasPresence() && !m.Has(fd) {
			// Unset oneof members, messages and proto3 optionals are not
			// "primitive fields": the printer leaves them out.
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, []byte(fd.Name()))
		dst = append(dst, ':')
		var err error
		switch {
		case fd.IsList():
			dst, err = appendListJSON(dst, fd, m.Get(fd).List())
		case fd.IsMap():
			dst, err = appendMapJSON(dst, fd, m.Get(fd).Map())
		default:
			dst, err = appendValueJSON(dst, fd, m.Get(fd))
		}
		if err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendListJSON(dst []byte, fd protoreflect.FieldDescriptor, l protoreflect.List) ([]byte, error) {
	dst = append(dst, '[')
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendValueJSON(dst, fd, l.Get(i)); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// appendMapJSON writes a map with its keys sorted, so that the output is
// stable; JSON object keys are always strings.
func appendMapJSON(dst []byte, fd protoreflect.FieldDescriptor, mp protoreflect.Map) ([]byte, error) {
	type entry struct {
		key string
		val protoreflect.Value
	}
	entries := make([]entry, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		entries = append(entries, entry{k.String(), v})
		return true
	})
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	dst = append(dst, '{')
	for i, e := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, []byte(e.key))
		dst = append(dst, ':')
		var err error
		if dst, err = appendValueJSON(dst, fd.MapValue(), e.val); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendValueJSON(dst []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(dst, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(dst, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return appendProtoFloat(dst, v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return appendProtoFloat(dst, v.Float(), 64), nil
	case protoreflect.StringKind:
		return appendJSONString(dst, []byte(v.String())), nil
	case protoreflect.BytesKind:
		return appendJSONString(dst, []byte(base64.StdEncoding.EncodeToString(v.Bytes()))), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendJSONString(dst, []byte(ev.Name())), nil
		}
		return strconv.AppendInt(dst, int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendMessageJSON(dst, v.Message())
	}
	return dst, fmt.Errorf("field %s has unsupported kind %v", fd.FullName(), fd.Kind())
}

// appendProtoFloat follows protobuf's JSON mapping: shortest form for the
// field's precision, special values as strings.
func appendProtoFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

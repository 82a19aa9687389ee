package vtcodec

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The errors proto.Unmarshal gives for the same inputs.
var (
	errMalformed = errors.New("cannot parse invalid wire-format data")
	errUTF8      = errors.New("string field contains invalid UTF-8")
	errDepth     = errors.New("exceeded maximum recursion depth")
)

// msgRules is what proto.Unmarshal checks in a message's fields, taken
// from its descriptor, so that fields the decoder does not keep are
// refused exactly when proto.Unmarshal would refuse them. Every message
// under CheckRequest is proto3 without groups, repeated scalars,
// extensions or lazy fields (TestSchemaAssumptions): these rules need
// nothing more.
type msgRules struct {
	fields []fieldRule // by field number
}

type fieldRule struct {
	known bool
	wire  protowire.Type // the wire type of its values; another is an unknown field
	utf8  bool           // a proto3 string: invalid UTF-8 is refused
	isMap bool           // a map entry counts a level of nesting before its wire type is checked
	msg   *msgRules      // a message or map entry: checked inside too
}

// newRules returns the rules of md and of every message under it.
func newRules(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*msgRules) *msgRules {
	if r, ok := seen[md.FullName()]; ok {
		return r
	}
	r := &msgRules{}
	seen[md.FullName()] = r
	fields := md.Fields()
	var last protoreflect.FieldNumber
	for i := range fields.Len() {
		last = max(last, fields.Get(i).Number())
	}
	r.fields = make([]fieldRule, last+1)
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := fieldRule{known: true, wire: wireType(fd.Kind()), isMap: fd.IsMap()}
		f.utf8 = fd.Kind() == protoreflect.StringKind && fd.Syntax() == protoreflect.Proto3
		if fd.Message() != nil {
			f.msg = newRules(fd.Message(), seen)
		}
		r.fields[fd.Number()] = f
	}
	return r
}

func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.BytesType // string, bytes, message
}

func (r *msgRules) field(num protowire.Number) *fieldRule {
	if int(num) < len(r.fields) && r.fields[num].known {
		return &r.fields[num]
	}
	return nil
}

// reader keeps the fields of one message that Check reads.
type reader interface {
	// read decodes v, the value of length-delimited field num (f its
	// rule) at nesting depth; false leaves the field to the rules.
	read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error)
}

// walk checks the message b as proto.Unmarshal would decode it with depth
// levels of nesting left, giving rd (if any) the fields it keeps.
func walk(r *msgRules, b []byte, depth int, rd reader) error {
	if depth--; depth < 0 {
		return errDepth
	}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		f := r.field(num)
		if f != nil && f.isMap && depth < 1 {
			return errDepth
		}
		if rd != nil && f != nil && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed
			}
			ok, err := rd.read(num, v, f, depth)
			if err != nil {
				return err
			}
			if ok {
				b = b[n:]
				continue
			}
		}
		n, err := skip(f, num, typ, b, depth)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// consumeTag is protowire.ConsumeTag refusing what proto.Unmarshal
// refuses in a message: field numbers past the maximum and an end group
// that closes nothing.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber || typ == protowire.EndGroupType {
		return 0, 0, -1
	}
	return num, typ, n
}

// skip checks the value of field num (f its rule, nil if unknown) at the
// start of b and returns its length. A known field with another wire type
// is an unknown field, as in proto.Unmarshal.
func skip(f *fieldRule, num protowire.Number, typ protowire.Type, b []byte, depth int) (int, error) {
	if f != nil && typ == f.wire && typ == protowire.BytesType {
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errMalformed
		}
		if f.utf8 && !utf8.Valid(v) {
			return 0, errUTF8
		}
		if f.msg != nil {
			if err := walk(f.msg, v, depth, nil); err != nil {
				return 0, err
			}
		}
		return n, nil
	}
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, errMalformed
	}
	return n, nil
}

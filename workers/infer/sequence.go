package infer

import (
	"fmt"
	"strconv"
)

// CorrelationID names a sequence (Triton's sequence_id / CORRID): a number
// or a string. The zero value means "no sequence" (Triton reserves 0).
type CorrelationID struct {
	Num uint64
	Str string
}

// IsZero reports whether the id names no sequence.
func (c CorrelationID) IsZero() bool { return c.Num == 0 && c.Str == "" }

// String is the id as errors and logs show it.
func (c CorrelationID) String() string {
	if c.Str != "" {
		return strconv.Quote(c.Str)
	}
	return strconv.FormatUint(c.Num, 10)
}

// Sequence is a request's place in a sequence: Triton's sequence_id,
// sequence_start and sequence_end request parameters. Models without
// sequence_batching ignore it, as Triton does.
type Sequence struct {
	ID         CorrelationID
	Start, End bool
}

// SequenceOf reads the sequence parameters the front ends decoded into
// Request.Parameters (sequence_id as int64 or string, sequence_start and
// sequence_end as bool; the front ends checked the types).
func SequenceOf(params map[string]any) (Sequence, error) {
	var s Sequence
	switch id := params["sequence_id"].(type) {
	case nil:
	case int64:
		if id < 0 {
			return s, Errorf(CodeInvalidArgument, "sequence_id %d is negative", id)
		}
		s.ID.Num = uint64(id)
	case uint64:
		s.ID.Num = id
	case string:
		s.ID.Str = id
	default:
		return s, Errorf(CodeInvalidArgument, "sequence_id has type %T; expected an integer or a string", id)
	}
	for key, dst := range map[string]*bool{"sequence_start": &s.Start, "sequence_end": &s.End} {
		switch v := params[key].(type) {
		case nil:
		case bool:
			*dst = v
		default:
			return s, Errorf(CodeInvalidArgument, "%s has type %T; expected a boolean", key, v)
		}
	}
	if s.ID.IsZero() && (s.Start || s.End) {
		return s, Errorf(CodeInvalidArgument, "sequence_start or sequence_end given without a non-zero sequence_id")
	}
	return s, nil
}

// String describes the sequence for errors.
func (s Sequence) String() string {
	return fmt.Sprintf("sequence %s", s.ID)
}

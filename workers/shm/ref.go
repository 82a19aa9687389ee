package shm

import (
	"fmt"

	"github.com/helixflow/helixflow/workers/infer"
)

// The per-tensor parameters of Triton's shared-memory extension, the same
// on gRPC and HTTP.
const (
	ParamRegion   = "shared_memory_region"
	ParamByteSize = "shared_memory_byte_size"
	ParamOffset   = "shared_memory_offset"
)

// IsParam reports whether key is one of the extension's tensor parameters.
func IsParam(key string) bool {
	return key == ParamRegion || key == ParamByteSize || key == ParamOffset
}

// Ref says where a tensor's data lies in a registered region.
type Ref struct {
	Region   string
	ByteSize uint64
	Offset   uint64
}

// ParseRef builds the Ref of tensor (such as "input 'INPUT0'") from its
// parameters as a front end decoded them: region a string, byte size and
// offset int64 or uint64 (nil: absent; the offset defaults to 0). ok is
// false when the tensor names no region, in which case byte size and
// offset must be absent too.
func ParseRef(tensor string, region, byteSize, offset any) (ref Ref, ok bool, err error) {
	if region == nil {
		if byteSize != nil || offset != nil {
			return Ref{}, false, infer.Errorf(infer.CodeInvalidArgument,
				"%s has '%s' or '%s' but no '%s'", tensor, ParamByteSize, ParamOffset, ParamRegion)
		}
		return Ref{}, false, nil
	}
	name, isString := region.(string)
	if !isString {
		return Ref{}, false, infer.Errorf(infer.CodeInvalidArgument, "%s: '%s' must be a string", tensor, ParamRegion)
	}
	if name == "" {
		return Ref{}, false, infer.Errorf(infer.CodeInvalidArgument, "%s: '%s' is empty", tensor, ParamRegion)
	}
	if byteSize == nil {
		return Ref{}, false, infer.Errorf(infer.CodeInvalidArgument,
			"%s uses shared memory region '%s' but has no '%s'", tensor, name, ParamByteSize)
	}
	ref.Region = name
	if ref.ByteSize, err = nonNegative(tensor, ParamByteSize, byteSize); err != nil {
		return Ref{}, false, err
	}
	if offset != nil {
		if ref.Offset, err = nonNegative(tensor, ParamOffset, offset); err != nil {
			return Ref{}, false, err
		}
	}
	return ref, true, nil
}

func nonNegative(tensor, key string, v any) (uint64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, infer.Errorf(infer.CodeInvalidArgument, "%s: '%s' is %d; it must not be negative", tensor, key, x)
		}
		return uint64(x), nil
	case uint64:
		return x, nil
	}
	return 0, infer.Errorf(infer.CodeInvalidArgument, "%s: '%s' must be an integer, got %s", tensor, key, describe(v))
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return "a boolean"
	case float64, float32:
		return fmt.Sprintf("%v, not an integer", v)
	}
	return fmt.Sprintf("a %T", v)
}

// ReadInput copies the data of input name out of its region.
func (g *Registry) ReadInput(name string, ref Ref) ([]byte, error) {
	r, err := g.Acquire(ref.Region)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "input '%s': %w", name, err)
	}
	defer g.Release(r)
	b, err := r.Read(ref.Offset, ref.ByteSize)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "input '%s': %w", name, err)
	}
	return b, nil
}

// Output is an output the client asked for in a region; it holds the
// region until Release.
type Output struct {
	Name string
	Ref  Ref
	reg  *Registry
	r    *Region
}

// BindOutput acquires the region of output name and checks the window
// lies inside it.
func (g *Registry) BindOutput(name string, ref Ref) (*Output, error) {
	r, err := g.Acquire(ref.Region)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "output '%s': %w", name, err)
	}
	if err := r.Check(ref.Offset, ref.ByteSize); err != nil {
		g.Release(r)
		return nil, infer.Errorf(infer.CodeInvalidArgument, "output '%s': %w", name, err)
	}
	return &Output{Name: name, Ref: ref, reg: g, r: r}, nil
}

// Fits reports, as an error naming the output and both sizes, whether n
// bytes fit the window the client gave.
func (o *Output) Fits(n int) error {
	if uint64(n) > o.Ref.ByteSize {
		return infer.Errorf(infer.CodeInvalidArgument,
			"shared memory size specified with the request for output '%s' (%d bytes) should be at least %d bytes to hold the results",
			o.Name, o.Ref.ByteSize, n)
	}
	return nil
}

// Write copies data into the output's window.
func (o *Output) Write(data []byte) error {
	if err := o.Fits(len(data)); err != nil {
		return err
	}
	if err := o.r.Write(o.Ref.Offset, data); err != nil {
		return infer.Errorf(infer.CodeInvalidArgument, "output '%s': %w", o.Name, err)
	}
	return nil
}

// Release ends the output's hold on its region; it is safe to call twice.
func (o *Output) Release() {
	if o.r != nil {
		o.reg.Release(o.r)
		o.r = nil
	}
}

// Outputs are a request's outputs in shared memory, by name.
type Outputs map[string]*Output

// Release releases every output.
func (outs Outputs) Release() {
	for _, o := range outs {
		o.Release()
	}
}

// WriteAll checks that every output bound in os fits before writing any,
// so that a too-small window leaves every region as it was, then writes
// them. outputs maps names to data; names not in os are skipped.
func (outs Outputs) WriteAll(names []string, data [][]byte) error {
	for i, n := range names {
		if o, ok := outs[n]; ok {
			if err := o.Fits(len(data[i])); err != nil {
				return err
			}
		}
	}
	for i, n := range names {
		if o, ok := outs[n]; ok {
			if err := o.Write(data[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

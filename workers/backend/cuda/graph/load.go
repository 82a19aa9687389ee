package graph

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	onnxpb "github.com/helixflow/helixflow/proto/onnx"
)

// MaxModelBytes bounds the model file read into memory (protobuf's own
// limit; larger models keep their weights in external data files).
const MaxModelBytes = 2 << 30

// Load reads and checks an ONNX model file. External data files are read
// from the model's folder and may not leave it.
func Load(path string) (*Graph, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrInvalid, path, MaxModelBytes)
	}
	g, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Parse decodes a serialized ModelProto; dir is where external data files
// live ("" refuses external data).
func Parse(data []byte, dir string) (*Graph, error) {
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	gp := m.GetGraph()
	if gp == nil {
		return nil, fmt.Errorf("%w: the model has no graph", ErrInvalid)
	}
	g := &Graph{Consts: map[string]*Tensor{}}
	for _, imp := range m.GetOpsetImport() {
		if d := imp.GetDomain(); d == "" || d == "ai.onnx" {
			g.Opset = imp.GetVersion()
		}
	}
	if g.Opset == 0 {
		return nil, fmt.Errorf("%w: the model imports no version of the default operator set", ErrInvalid)
	}
	if len(m.GetFunctions()) > 0 {
		return nil, fmt.Errorf("%w: model-local functions", ErrUnsupported)
	}
	if len(gp.GetSparseInitializer()) > 0 {
		return nil, fmt.Errorf("%w: sparse initializers", ErrUnsupported)
	}
	for _, tp := range gp.GetInitializer() {
		t, err := tensorFromProto(tp, dir)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", tp.GetName(), err)
		}
		g.Consts[tp.GetName()] = t
	}
	for _, vi := range gp.GetInput() {
		if _, ok := g.Consts[vi.GetName()]; ok {
			// An initializer listed as an input is a default that a caller
			// could override; it is served as the constant it is.
			continue
		}
		io, err := ioFromProto(vi)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", vi.GetName(), err)
		}
		g.Inputs = append(g.Inputs, io)
	}
	for _, vi := range gp.GetOutput() {
		io, err := ioFromProto(vi)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", vi.GetName(), err)
		}
		g.Outputs = append(g.Outputs, io)
	}
	for i, np := range gp.GetNode() {
		n, err := nodeFromProto(np, dir)
		if err != nil {
			return nil, fmt.Errorf("node %d (%s %q): %w", i, np.GetOpType(), np.GetName(), err)
		}
		g.Nodes = append(g.Nodes, n)
	}
	if err := g.sortNodes(); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// sortNodes orders nodes so that each comes after the producers of its
// inputs (ONNX requires it, but not every exporter obeys), keeping the
// file's order where it is already right.
func (g *Graph) sortNodes() error {
	producer := map[string]int{}
	for i, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != "" {
				producer[o] = i
			}
		}
	}
	state := make([]uint8, len(g.Nodes)) // 0 new, 1 visiting, 2 done
	sorted := make([]*Node, 0, len(g.Nodes))
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("%w: the graph has a cycle through %s", ErrInvalid, g.Nodes[i])
		case 2:
			return nil
		}
		state[i] = 1
		for _, in := range g.Nodes[i].Inputs {
			if p, ok := producer[in]; ok {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		state[i] = 2
		sorted = append(sorted, g.Nodes[i])
		return nil
	}
	for i := range g.Nodes {
		if err := visit(i); err != nil {
			return err
		}
	}
	g.Nodes = sorted
	return nil
}

func ioFromProto(vi *onnxpb.ValueInfoProto) (IO, error) {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return IO{}, fmt.Errorf("%w: only dense tensors can be inputs and outputs", ErrUnsupported)
	}
	io := IO{Name: vi.GetName(), DType: DType(tt.GetElemType())}
	if !io.DType.Known() {
		return IO{}, fmt.Errorf("%w: element type %d", ErrUnsupported, tt.GetElemType())
	}
	if tt.GetShape() == nil {
		return IO{}, fmt.Errorf("%w: the model gives no shape (not even a rank)", ErrUnsupported)
	}
	for _, d := range tt.GetShape().GetDim() {
		if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 {
			io.Shape = append(io.Shape, v.DimValue)
		} else {
			io.Shape = append(io.Shape, -1)
		}
	}
	if io.Shape == nil {
		io.Shape = []int64{}
	}
	return io, nil
}

func nodeFromProto(np *onnxpb.NodeProto, dir string) (*Node, error) {
	if d := np.GetDomain(); d != "" && d != "ai.onnx" {
		return nil, fmt.Errorf("%w: operator %s of domain %q", ErrUnsupported, np.GetOpType(), d)
	}
	if len(np.GetOutput()) == 0 {
		return nil, fmt.Errorf("%w: a node without outputs", ErrInvalid)
	}
	n := &Node{
		Name:    np.GetName(),
		Op:      np.GetOpType(),
		Inputs:  np.GetInput(),
		Outputs: np.GetOutput(),
		Attrs:   make(map[string]Attr, len(np.GetAttribute())),
	}
	for _, ap := range np.GetAttribute() {
		if ap.GetRefAttrName() != "" {
			return nil, fmt.Errorf("%w: attribute %q refers to a function attribute", ErrUnsupported, ap.GetName())
		}
		a := Attr{Kind: AttrKind(ap.GetType())}
		switch ap.GetType() {
		case onnxpb.AttributeProto_FLOAT:
			a.F = ap.GetF()
		case onnxpb.AttributeProto_INT:
			a.I = ap.GetI()
		case onnxpb.AttributeProto_STRING:
			a.S = string(ap.GetS())
		case onnxpb.AttributeProto_FLOATS:
			a.Floats = ap.GetFloats()
		case onnxpb.AttributeProto_INTS:
			a.Ints = ap.GetInts()
		case onnxpb.AttributeProto_TENSOR:
			t, err := tensorFromProto(ap.GetT(), dir)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %w", ap.GetName(), err)
			}
			a.T = t
		default:
			// Graph, sparse tensor and type attributes belong to operators
			// outside the set; Validate names the operator.
			continue
		}
		n.Attrs[ap.GetName()] = a
	}
	return n, nil
}

// tensorFromProto decodes a TensorProto into a host tensor.
func tensorFromProto(tp *onnxpb.TensorProto, dir string) (*Tensor, error) {
	if tp == nil {
		return nil, fmt.Errorf("%w: missing tensor", ErrInvalid)
	}
	t := &Tensor{DType: DType(tp.GetDataType()), Shape: append([]int64{}, tp.GetDims()...)}
	if !t.DType.Known() || t.DType.Size() == 0 {
		return nil, fmt.Errorf("%w: tensor element type %s", ErrUnsupported, t.DType)
	}
	if tp.GetSegment() != nil {
		return nil, fmt.Errorf("%w: segmented tensors", ErrUnsupported)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return nil, fmt.Errorf("%w: negative dimension in %v", ErrInvalid, t.Shape)
		}
	}
	n := t.Len()
	size := int64(t.DType.Size())
	switch {
	case tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL:
		data, err := externalData(tp, dir, n*size)
		if err != nil {
			return nil, err
		}
		t.Data = data
	case tp.RawData != nil:
		t.Data = tp.GetRawData()
	default:
		t.Data = typedData(tp, t.DType, n)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return t, nil
}

// typedData encodes the typed repeated fields (float_data, int32_data,
// ...) as raw little-endian bytes; a length mismatch is left for check.
func typedData(tp *onnxpb.TensorProto, dt DType, n int64) []byte {
	size := dt.Size()
	switch dt {
	case Float:
		vals := tp.GetFloatData()
		out := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	case Double:
		vals := tp.GetDoubleData()
		out := make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
		}
		return out
	case Int64:
		vals := tp.GetInt64Data()
		out := make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
		}
		return out
	case Uint32, Uint64:
		vals := tp.GetUint64Data()
		out := make([]byte, size*len(vals))
		for i, v := range vals {
			if size == 4 {
				binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
			} else {
				binary.LittleEndian.PutUint64(out[8*i:], v)
			}
		}
		return out
	default:
		// int32_data carries int32, int16, int8, uint16, uint8, bool, and
		// the bits of float16 and bfloat16.
		vals := tp.GetInt32Data()
		out := make([]byte, size*len(vals))
		for i, v := range vals {
			switch size {
			case 1:
				out[i] = byte(v)
			case 2:
				binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
			case 4:
				binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
			}
		}
		return out
	}
}

// externalData reads a tensor stored outside the model file. The location
// must be a relative path that stays inside dir.
func externalData(tp *onnxpb.TensorProto, dir string, want int64) ([]byte, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: external data without a model folder", ErrUnsupported)
	}
	var location string
	offset, length := int64(0), int64(-1)
	for _, kv := range tp.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			location = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil || offset < 0 {
			return nil, fmt.Errorf("%w: external data %s=%q", ErrInvalid, kv.GetKey(), kv.GetValue())
		}
	}
	clean := filepath.Clean(location)
	if location == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%w: external data location %q must be a file inside the model's folder", ErrInvalid, location)
	}
	if length >= 0 && length != want {
		return nil, fmt.Errorf("%w: external data length %d, the tensor needs %d bytes", ErrInvalid, length, want)
	}
	f, err := os.Open(filepath.Join(dir, clean))
	if err != nil {
		return nil, fmt.Errorf("external data: %w", err)
	}
	defer f.Close()
	data := make([]byte, want)
	if _, err := f.ReadAt(data, offset); err != nil {
		return nil, fmt.Errorf("external data %s at offset %d: %w", location, offset, err)
	}
	return data, nil
}

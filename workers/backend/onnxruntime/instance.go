package onnxruntime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Instance is one ORT session. Execute is called from one goroutine at a
// time, as backend.Instance requires.
type Instance struct {
	backend *Backend
	model   string
	session *ort.DynamicAdvancedSession
	// runOpts is reused by every Execute; it carries the terminate flag that
	// cancels a run whose context ends.
	runOpts     *ort.RunOptions
	inputs      []port
	outputs     []port
	inputIndex  map[string]int
	outputIndex map[string]int
	// guessShapes lets Execute preallocate outputs that ORT could allocate
	// (see runPreallocated). It is cleared the first time ORT rejects a
	// guessed shape: that model's outputs are shaped otherwise.
	guessShapes bool
	// inStages and outStages keep an ORT value per input and output for
	// small tensors (see stage).
	inStages  []stage
	outStages []stage
	closed    bool
}

var _ backend.Instance = (*Instance)(nil)

func newInstance(b *Backend, spec backend.InstanceSpec, session *ort.DynamicAdvancedSession,
	runOpts *ort.RunOptions, inputs, outputs []port) *Instance {
	index := func(ports []port) map[string]int {
		m := make(map[string]int, len(ports))
		for i, p := range ports {
			m[p.Name] = i
		}
		return m
	}
	model := spec.ModelName
	if model == "" {
		model = spec.ModelPath
	}
	return &Instance{
		backend:     b,
		model:       model,
		session:     session,
		runOpts:     runOpts,
		inputs:      inputs,
		outputs:     outputs,
		inputIndex:  index(inputs),
		outputIndex: index(outputs),
		guessShapes: true,
		inStages:    make([]stage, len(inputs)),
		outStages:   make([]stage, len(outputs)),
	}
}

// Close destroys the session.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	for _, stages := range [][]stage{in.inStages, in.outStages} {
		for i := range stages {
			stages[i].release()
		}
	}
	err := errors.Join(in.runOpts.Destroy(), in.session.Destroy())
	in.backend.instanceClosed()
	if err != nil {
		return fmt.Errorf("onnxruntime: model %q: closing: %w", in.model, err)
	}
	return nil
}

// Execute runs the model once. inputs must name every model input exactly
// once; outputs names the outputs to return, all of them when empty.
func (in *Instance) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	if in.closed {
		return nil, fmt.Errorf("onnxruntime: model %q: instance is closed", in.model)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("onnxruntime: model %q: %w", in.model, err)
	}
	wanted, err := in.wantedOutputs(outputs)
	if err != nil {
		return nil, err
	}

	inValues := make([]ort.Value, len(in.inputs))
	outValues := make([]ort.Value, len(in.outputs))
	defer destroyUnstaged(inValues, in.inStages)
	defer destroyUnstaged(outValues, in.outStages)
	if err := in.bindInputs(inputs, inValues); err != nil {
		return nil, err
	}
	if err := in.runPreallocated(ctx, inputs, inValues, outValues); err != nil {
		return nil, err
	}

	result := make([]tensor.Tensor, len(wanted))
	for i, idx := range wanted {
		t, err := outputTensor(in.outputs[idx], outValues[idx])
		if err != nil {
			return nil, fmt.Errorf("onnxruntime: model %q: output %q: %w", in.model, in.outputs[idx].Name, err)
		}
		if in.outStages[idx].holds(outValues[idx]) {
			// The next run writes into the stage's buffer.
			t.Data = bytes.Clone(t.Data)
		}
		result[i] = t
	}
	return result, nil
}

func (in *Instance) wantedOutputs(requested []string) ([]int, error) {
	if len(requested) == 0 {
		idx := make([]int, len(in.outputs))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	idx := make([]int, len(requested))
	for i, name := range requested {
		j, ok := in.outputIndex[name]
		if !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q has no output %q (it has %v)",
				in.model, name, names(in.outputs))
		}
		idx[i] = j
	}
	return idx, nil
}

// bindInputs checks each input against the model and wraps it in an ORT
// value in the session's input order.
func (in *Instance) bindInputs(inputs []tensor.Tensor, values []ort.Value) error {
	for _, t := range inputs {
		idx, ok := in.inputIndex[t.Name]
		if !ok {
			return infer.Errorf(infer.CodeInvalidArgument, "model %q has no input %q (it has %v)",
				in.model, t.Name, names(in.inputs))
		}
		if values[idx] != nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is given twice", in.model, t.Name)
		}
		p := in.inputs[idx]
		if err := checkInput(t, p); err != nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model %q: %w", in.model, err)
		}
		v, err := in.inputValue(idx, t)
		if err != nil {
			return fmt.Errorf("onnxruntime: model %q: input %q: %w", in.model, t.Name, err)
		}
		values[idx] = v
	}
	for i, v := range values {
		if v == nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is missing", in.model, in.inputs[i].Name)
		}
	}
	return nil
}

// checkInput compares a request tensor with what the model declares.
func checkInput(t tensor.Tensor, p port) error {
	if t.DataType != p.DataType {
		return fmt.Errorf("%w: input %q has datatype %s, the model expects %s", tensor.ErrInvalid, t.Name, t.DataType, p.DataType)
	}
	if err := t.Validate(); err != nil {
		return err
	}
	compatible := len(t.Shape) == len(p.Shape)
	for i := 0; compatible && i < len(p.Shape); i++ {
		compatible = p.Shape[i] < 0 || p.Shape[i] == t.Shape[i]
	}
	if !compatible {
		return fmt.Errorf("%w: input %q has shape %v, the model expects %v (-1: any size)", tensor.ErrInvalid, t.Name, t.Shape, p.Shape)
	}
	return nil
}

// inputValue gives ORT input idx, checked: a small fixed-size tensor is
// copied into the input's stage, anything else goes through newValue.
func (in *Instance) inputValue(idx int, t tensor.Tensor) (ort.Value, error) {
	p := in.inputs[idx]
	if p.DataType == tensor.Bytes || len(t.Data) > stageLimit {
		return newValue(t, p)
	}
	s := &in.inStages[idx]
	v, err := s.fit(t.Shape, len(t.Data), p.elemType)
	if err != nil {
		return nil, err
	}
	copy(s.data, t.Data)
	return v, nil
}

// newValue wraps a checked input in an ORT value. Fixed-size data is used in
// place, without converting elements.
func newValue(t tensor.Tensor, p port) (ort.Value, error) {
	shape := ort.NewShape(slices.Clone(t.Shape)...)
	if p.DataType == tensor.Bytes {
		return newStringValue(t, shape)
	}
	data := t.Data
	size := p.DataType.ElementSize()
	switch {
	case len(data) == 0:
		// ORT wants a buffer even for a tensor with no elements.
		data = make([]byte, 1)
	case uintptr(unsafe.Pointer(&data[0]))%uintptr(size) != 0:
		// Kernels may assume elements are aligned; a fresh allocation is
		// aligned to at least the element size.
		data = bytes.Clone(data)
	}
	v, err := ort.NewCustomDataTensor(shape, data, p.elemType)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func newStringValue(t tensor.Tensor, shape ort.Shape) (ort.Value, error) {
	n, _ := tensor.ElementCount(t.Shape)
	elems, err := tensor.DecodeBytes(t.Data, n)
	if err != nil {
		return nil, err
	}
	strs := make([]string, len(elems))
	for i, e := range elems {
		// ORT fills string tensors from C strings, which end at a NUL.
		if bytes.IndexByte(e, 0) >= 0 {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "%w: BYTES element %d contains a NUL byte, which ONNX Runtime string tensors cannot hold",
				backend.ErrUnsupported, i)
		}
		strs[i] = string(e)
	}
	v, err := ort.NewStringTensor(shape)
	if err != nil {
		return nil, err
	}
	if err := v.SetContents(strs); err != nil {
		v.Destroy()
		return nil, err
	}
	return v, nil
}

// runPreallocated runs the model, with ORT writing into buffers of ours the
// outputs whose shape preallocateOutputs can tell in advance. That shape is
// a guess: the model may declare it wrongly, or a free first dimension may
// not be the batch. ORT checks the shape of every buffer it is given and
// fails the run if a guess is wrong, so a failed run with guesses is run
// again with ORT allocating those outputs; if that run succeeds, the
// instance guesses no more.
func (in *Instance) runPreallocated(ctx context.Context, inputs []tensor.Tensor, inValues, outValues []ort.Value) error {
	guessed, err := in.preallocateOutputs(inputs, outValues)
	if err != nil {
		return err
	}
	err = in.run(ctx, inValues, outValues)
	if err == nil || !guessed || ctx.Err() != nil {
		return err
	}
	destroyUnstaged(outValues, in.outStages)
	clear(outValues)
	in.guessShapes = false
	if _, err := in.preallocateOutputs(inputs, outValues); err != nil {
		return err
	}
	if retryErr := in.run(ctx, inValues, outValues); retryErr != nil {
		// The guess was not the trouble.
		in.guessShapes = true
		return retryErr
	}
	in.backend.log.Info("output shapes differ from what the model declares: onnxruntime allocates them from now on",
		"model", in.model, "guessed_run_error", err)
	return nil
}

// preallocateOutputs gives each output whose shape it can tell before the
// run a buffer for ORT to write into, sparing the conversion of ORT's own
// allocation afterwards (several cgo calls and a copy per output). The shape
// is the model's, with a free first dimension taken to be the batch size.
// guessed reports whether it guessed the shape of an output ORT could have
// allocated itself.
//
// FP16 and BF16 outputs always need a buffer of ours: onnxruntime_go v1.27.0
// copies only one byte per element out of tensors ORT allocates for types it
// has no Go type for. BYTES outputs never get one: ORT owns string storage.
func (in *Instance) preallocateOutputs(inputs []tensor.Tensor, values []ort.Value) (guessed bool, err error) {
	for i, p := range in.outputs {
		half := p.DataType == tensor.FP16 || p.DataType == tensor.BF16
		if p.DataType == tensor.Bytes || (!half && !in.guessShapes) {
			continue
		}
		shape, err := in.outputShape(p, inputs)
		if err != nil {
			if !half {
				continue // ORT allocates it
			}
			return false, fmt.Errorf("onnxruntime: model %q: %w", in.model, err)
		}
		v, err := in.outputValue(i, shape)
		if err != nil {
			return false, fmt.Errorf("onnxruntime: model %q: output %q: %w", in.model, p.Name, err)
		}
		values[i] = v
		guessed = guessed || !half
	}
	return guessed, nil
}

// outputValue makes a buffer for output idx of this shape: the output's
// stage for a small tensor, else one for this run that becomes the output
// tensor's data.
func (in *Instance) outputValue(idx int, shape []int64) (ort.Value, error) {
	p := in.outputs[idx]
	size, _ := tensor.ByteSize(p.DataType, shape)
	if size <= stageLimit {
		return in.outStages[idx].fit(shape, int(size), p.elemType)
	}
	return ort.NewCustomDataTensor(ort.NewShape(shape...), make([]byte, size), p.elemType)
}

// outputShape resolves an output's declared shape; inputs are checked.
func (in *Instance) outputShape(out port, inputs []tensor.Tensor) ([]int64, error) {
	shape := slices.Clone(out.Shape)
	for i, d := range shape {
		if d >= 0 {
			continue
		}
		batch, ok := in.batchSize(inputs)
		if i != 0 || !ok {
			return nil, fmt.Errorf("%w: output %q is %s with shape %v: this backend can only return %s outputs whose only free dimension is the batch",
				backend.ErrUnsupported, out.Name, out.DataType, out.Shape, out.DataType)
		}
		shape[0] = batch
	}
	return shape, nil
}

// batchSize is the first dimension of the inputs whose first dimension the
// model leaves free, if they agree on it.
func (in *Instance) batchSize(inputs []tensor.Tensor) (int64, bool) {
	batch := int64(-1)
	for _, t := range inputs {
		if in.inputs[in.inputIndex[t.Name]].Shape[0] >= 0 {
			continue
		}
		if batch >= 0 && t.Shape[0] != batch {
			return 0, false
		}
		batch = t.Shape[0]
	}
	return batch, batch >= 0
}

// run calls ORT, terminating the run if ctx ends first.
func (in *Instance) run(ctx context.Context, inputs, outputs []ort.Value) error {
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		_ = in.runOpts.Terminate()
	})
	err := in.session.RunWithOptions(inputs, outputs, in.runOpts)
	if !stop() {
		// The terminate flag was (or is being) set: wait, then clear it for
		// the next run.
		<-terminated
		_ = in.runOpts.UnsetTerminate()
		if err != nil {
			return fmt.Errorf("onnxruntime: model %q: run stopped: %w", in.model, context.Cause(ctx))
		}
	}
	if err != nil {
		return fmt.Errorf("onnxruntime: model %q: %w", in.model, err)
	}
	return nil
}

// outputTensor copies an output out of its ORT value into Go memory that
// stays valid after the value is destroyed.
func outputTensor(p port, v ort.Value) (tensor.Tensor, error) {
	if isNil(v) {
		return tensor.Tensor{}, errors.New("onnxruntime returned no value")
	}
	if got := ort.TensorElementDataType(v.DataType()); got != p.elemType {
		return tensor.Tensor{}, fmt.Errorf("onnxruntime returned element type %s, the model declares %s", got, p.elemType)
	}
	t := tensor.Tensor{Name: p.Name, DataType: p.DataType, Shape: []int64(v.GetShape())}
	switch v := v.(type) {
	case *ort.StringTensor:
		strs, err := v.GetContents()
		if err != nil {
			return tensor.Tensor{}, err
		}
		elems := make([][]byte, len(strs))
		for i, s := range strs {
			elems[i] = []byte(s)
		}
		t.Data = tensor.EncodeBytes(elems)
	case *ort.CustomDataTensor:
		// One of ours (preallocateOutputs): Go memory already.
		size, _ := tensor.ByteSize(p.DataType, t.Shape)
		t.Data = v.GetData()[:size]
	// onnxruntime_go copies ORT-allocated outputs into Go slices; their bytes
	// are used as they are.
	case *ort.Tensor[bool]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[int8]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[int16]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[int32]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[int64]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[uint8]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[uint16]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[uint32]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[uint64]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[float32]:
		t.Data = asBytes(v.GetData())
	case *ort.Tensor[float64]:
		t.Data = asBytes(v.GetData())
	default:
		return tensor.Tensor{}, fmt.Errorf("%w: onnxruntime returned a %T", backend.ErrUnsupported, v)
	}
	return t, nil
}

// asBytes views a Go slice's elements as their little-endian bytes (the
// host's order on every platform ORT ships for).
func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(zero)))
}

// destroyUnstaged destroys the values made for one run, leaving those the
// stages keep.
func destroyUnstaged(values []ort.Value, stages []stage) {
	for i, v := range values {
		if !isNil(v) && !stages[i].holds(v) {
			v.Destroy()
		}
	}
}

// isNil also catches the typed nil pointers onnxruntime_go leaves in a Run's
// outputs when it fails to convert one.
func isNil(v ort.Value) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Pointer && r.IsNil()
}

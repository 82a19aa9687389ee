package tensorflow

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// port is one configured input or output bound to its graph tensor.
type port struct {
	name   string
	dtype  int
	kserve tensor.DataType
	out    tfOutput
}

// instance is one session of a SavedModel.
type instance struct {
	sess    *session
	inputs  map[string]port
	outputs map[string]port

	closeOnce sync.Once
	closeErr  error
}

var _ backend.Instance = (*instance)(nil)

// newInstance binds the configured IO to the graph through the serving
// signature of the MetaGraphDef the loader returned.
func newInstance(spec backend.InstanceSpec, sess *session, metaGraph []byte) (*instance, error) {
	sig, err := parseSignature(metaGraph, DefaultSignature)
	if err != nil {
		return nil, err
	}
	inst := &instance{sess: sess, inputs: map[string]port{}, outputs: map[string]port{}}
	for _, side := range []struct {
		kind  string
		cfg   []backend.IO
		sig   []sigTensor
		ports map[string]port
	}{
		{"input", spec.Inputs, sig.Inputs, inst.inputs},
		{"output", spec.Outputs, sig.Outputs, inst.outputs},
	} {
		for _, io := range side.cfg {
			p, err := bind(sess, side.kind, io, side.sig)
			if err != nil {
				return nil, err
			}
			side.ports[io.Name] = p
		}
	}
	return inst, nil
}

func bind(sess *session, kind string, io backend.IO, sig []sigTensor) (port, error) {
	for _, t := range sig {
		if t.Key != io.Name {
			continue
		}
		dt, ok := dataTypes[t.DType]
		if !ok || dt != io.DataType {
			return port{}, fmt.Errorf("%s %q is %s in the config, %s in signature %q", kind, io.Name, io.DataType, dtypeName(t.DType), DefaultSignature)
		}
		op, index, err := splitTensorName(t.TensorName)
		if err != nil {
			return port{}, fmt.Errorf("%s %q: %w", kind, io.Name, err)
		}
		out, err := sess.output(op, index)
		if err != nil {
			return port{}, fmt.Errorf("%s %q (tensor %s): %w", kind, io.Name, t.TensorName, err)
		}
		return port{name: io.Name, dtype: t.DType, kserve: dt, out: out}, nil
	}
	return port{}, fmt.Errorf("%s %q is not in signature %q", kind, io.Name, DefaultSignature)
}

// Execute feeds the inputs, runs the session and copies the outputs out.
func (i *instance) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) (result []tensor.Tensor, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make([]tfOutput, len(inputs))
	inValues := make([]tfTensor, len(inputs))
	defer func() {
		for k, t := range inValues {
			if t != nil {
				deleteTensor(t, inputs[k].DataType == tensor.Bytes)
			}
		}
	}()
	for k, t := range inputs {
		p, ok := i.inputs[t.Name]
		if !ok {
			return nil, fmt.Errorf("tensorflow: unknown input %q", t.Name)
		}
		if t.DataType != p.kserve {
			return nil, fmt.Errorf("tensorflow: input %q is %s, the model takes %s", t.Name, t.DataType, p.kserve)
		}
		if t.DataType == tensor.Bytes {
			n, err := tensor.ElementCount(t.Shape)
			if err != nil {
				return nil, fmt.Errorf("tensorflow: input %q: %w", t.Name, err)
			}
			if _, err := tensor.CountBytesElements(t.Data, n); err != nil {
				return nil, fmt.Errorf("tensorflow: input %q: %w", t.Name, err)
			}
			inValues[k] = newStringTensor(t.Shape, n, t.Data)
		} else {
			if want, err := tensor.ByteSize(t.DataType, t.Shape); err != nil || want != int64(len(t.Data)) {
				return nil, fmt.Errorf("tensorflow: input %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DataType)
			}
			inValues[k] = newTensor(p.dtype, t.Shape, t.Data)
		}
		if inValues[k] == nil {
			return nil, fmt.Errorf("tensorflow: input %q: allocating a tensor of shape %v failed", t.Name, t.Shape)
		}
		in[k] = p.out
	}
	if len(outputs) == 0 {
		return nil, errors.New("tensorflow: no output asked")
	}
	out := make([]tfOutput, len(outputs))
	ports := make([]port, len(outputs))
	for k, name := range outputs {
		p, ok := i.outputs[name]
		if !ok {
			return nil, fmt.Errorf("tensorflow: unknown output %q", name)
		}
		out[k], ports[k] = p.out, p
	}
	outValues := make([]tfTensor, len(outputs))
	if err := i.sess.run(in, inValues, out, outValues); err != nil {
		return nil, fmt.Errorf("tensorflow: run: %w", err)
	}
	defer func() {
		for _, t := range outValues {
			if t != nil {
				deleteTensor(t, false)
			}
		}
	}()
	result = make([]tensor.Tensor, len(outputs))
	for k, t := range outValues {
		dtype, shape := tensorInfo(t)
		if dtype != ports[k].dtype {
			return nil, fmt.Errorf("tensorflow: output %q came back as %s, the signature says %s", outputs[k], dtypeName(dtype), dtypeName(ports[k].dtype))
		}
		var data []byte
		if dtype == tfString {
			data = stringTensorBytes(t)
		} else {
			data = tensorBytes(t)
		}
		result[k] = tensor.Tensor{Name: outputs[k], DataType: ports[k].kserve, Shape: shape, Data: data}
	}
	return result, nil
}

// Close closes and deletes the session.
func (i *instance) Close() error {
	i.closeOnce.Do(func() {
		if err := i.sess.close(); err != nil {
			i.closeErr = fmt.Errorf("tensorflow: closing the session: %w", err)
		}
	})
	return i.closeErr
}

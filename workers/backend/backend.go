// Package backend defines the small interface every execution backend
// (onnxruntime today, cuda next) implements. As in Triton, a backend only
// loads a model and executes whole batches; queues, batching and timeouts
// belong to the scheduler.
package backend

import (
	"context"
	"errors"

	"github.com/helixflow/helixflow/workers/tensor"
)

// ErrUnsupported is wrapped when a model uses something a backend cannot run
// (an operator, a datatype, a device).
var ErrUnsupported = errors.New("unsupported by backend")

// IO describes one model input or output. Shape uses -1 for a dimension the
// model leaves free; when the model batches, Shape includes the batch dim.
type IO struct {
	Name     string
	DataType tensor.DataType
	Shape    []int64
}

// InstanceSpec is everything a backend needs to create one instance of a
// model (Triton: one instance of an instance_group).
type InstanceSpec struct {
	ModelName    string
	ModelVersion int64
	// ModelPath is the model file, e.g. <repo>/<model>/<version>/model.onnx.
	ModelPath string
	// Inputs and Outputs are the model's IO as configured, batch dim included.
	Inputs  []IO
	Outputs []IO
	// Device is "cpu", or "gpu" with GPU naming the device index.
	Device string
	GPU    int
	// Parameters carries config.pbtxt `parameters` for backend-specific tuning.
	Parameters map[string]string
	// Instances is how many instances of this model the caller creates
	// (0 means 1), so that a backend can share the cores among them.
	Instances int
	// MaxBatchSize is config.pbtxt's max_batch_size: the largest batch
	// Execute gets (0: the model does not batch), for backends that plan
	// memory per batch size.
	MaxBatchSize int
}

// Backend creates instances of models stored in files it understands.
type Backend interface {
	// Name is the backend's name as config.pbtxt's `backend` field spells it.
	Name() string
	// Inspect reads the IO the model file itself declares, for config
	// auto-completion and for checking a config.pbtxt against the model.
	Inspect(ctx context.Context, modelPath string) (inputs, outputs []IO, err error)
	// NewInstance loads one executable instance of a model.
	NewInstance(ctx context.Context, spec InstanceSpec) (Instance, error)
}

// DeclaredIO is implemented by backends whose model files do not describe
// their inputs and outputs reliably (TorchScript): config.pbtxt must declare
// them, and the model manager calls CheckDeclared with the declared IO
// (batch dim included) instead of Inspect; the backend checks it against
// what the file does say (e.g. forward()'s arguments).
type DeclaredIO interface {
	CheckDeclared(ctx context.Context, modelPath string, inputs, outputs []IO) error
}

// GPUCounter is implemented by backends that run on GPUs: how many GPUs
// the process sees, for an instance group of kind KIND_GPU that names none
// (its instances then go on every GPU, as in Triton).
type GPUCounter interface {
	GPUCount(ctx context.Context) (int, error)
}

// Instance executes batches for one model; the scheduler calls Execute from
// one goroutine at a time per instance.
type Instance interface {
	// Execute runs the model on inputs (batch dim first where the model
	// batches) and returns the named outputs, in the order asked.
	Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error)
	// Close releases the instance's resources; it is called once, after the
	// last Execute has returned.
	Close() error
}

// DecoupledInstance is an Instance of a decoupled model (Triton's
// model_transaction_policy { decoupled: true }): one request gets zero or
// more responses. The scheduler runs decoupled requests one at a time per
// instance and without batching.
type DecoupledInstance interface {
	Instance
	// ExecuteDecoupled runs the model on one request's inputs and calls send
	// with each response's outputs (those asked, in that order) as it is
	// produced. It returns after the last one; an error from send (the
	// client went away) ends it early and is returned.
	ExecuteDecoupled(ctx context.Context, inputs []tensor.Tensor, outputs []string, send func([]tensor.Tensor) error) error
}
